package roles

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/composable-metal/terraform-provider-metal/internal/tmplfuncs"
)

// Facts are what templates know about the machine, as .machine.<key>.
type Facts struct {
	MachineID string
	Hostname  string
	// IPAddress is the machine's address without prefix length ("" when
	// it is leased and not known yet).
	IPAddress string
	MACs      []string
	BootMAC   string
	// Inventory holds inventory fields (manufacturer, model, serial_number,
	// cpu_count, memory_gib, ...).
	Inventory map[string]any
}

func (f Facts) data() map[string]any {
	inv := map[string]any{}
	for k, v := range f.Inventory {
		inv[k] = v
	}
	macs := f.MACs
	if macs == nil {
		macs = []string{}
	}
	return map[string]any{
		"id":            f.MachineID,
		"hostname":      f.Hostname,
		"ip_address":    f.IPAddress,
		"mac_addresses": macs,
		"boot_mac":      f.BootMAC,
		"inventory":     inv,
	}
}

// Selection is the roles a machine uses (names or refs) and its parameter
// values by role name, for any role of the closure.
type Selection struct {
	Roles      []string                     `json:"roles"`
	Parameters map[string]map[string]string `json:"parameters,omitempty"`
}

// TemplateError is a template that failed to render; Key names the missing
// key when that is why.
type TemplateError struct {
	Role  string
	Field string
	// Expr is the template expression that failed, e.g. .params.port.
	Expr string
	Key  string
	Err  error
}

func (e *TemplateError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("role %q: %s: %s refers to %q, which is not set (templates are strict: declare it as a parameter with a default, or set it in the machine's role_parameters)", e.Role, e.Field, e.Expr, e.Key)
	}
	return fmt.Sprintf("role %q: %s: %v", e.Role, e.Field, e.Err)
}

func (e *TemplateError) Unwrap() error { return e.Err }

// ConflictError is a file path that two roles write.
type ConflictError struct {
	Path  string
	Roles [2]string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("roles %q and %q both write %s: a file belongs to one role (move it to a role both require)", e.Roles[0], e.Roles[1], e.Path)
}

// ParameterError is a parameter value that is missing, unknown or of the
// wrong type.
type ParameterError struct {
	Role, Parameter, Reason string
}

func (e *ParameterError) Error() string {
	return fmt.Sprintf("role %q parameter %q: %s", e.Role, e.Parameter, e.Reason)
}

type templateField struct{ field, text string }

func templateFields(r Role) []templateField {
	var out []templateField
	for i, f := range r.Files {
		out = append(out,
			templateField{fmt.Sprintf("files[%d].path", i), f.Path},
			templateField{fmt.Sprintf("files[%d].content", i), f.Content})
	}
	for i, s := range r.Scripts {
		out = append(out, templateField{fmt.Sprintf("scripts[%d]", i), s})
	}
	if r.CloudConfig != "" {
		out = append(out, templateField{"cloud_config", r.CloudConfig})
	}
	if r.OnRemove != "" {
		out = append(out, templateField{"on_remove", r.OnRemove})
	}
	return out
}

// funcs is the function set role templates get: the install configs' own.
var funcs = tmplfuncs.Funcs()

func parseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Funcs(funcs).Parse(text)
}

var (
	missingKeyRE = regexp.MustCompile(`at <([^>]*)>: map has no entry for key "([^"]*)"`)
	nilValueRE   = regexp.MustCompile(`at <([^>]*)>: nil pointer evaluating`)
)

func execTemplate(role, field, text string, data map[string]any) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	t, err := parseTemplate(field, text)
	if err != nil {
		return "", &TemplateError{Role: role, Field: field, Err: err}
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		te := &TemplateError{Role: role, Field: field, Err: err}
		if m := missingKeyRE.FindStringSubmatch(err.Error()); m != nil {
			te.Expr, te.Key = m[1], m[2]
		} else if m := nilValueRE.FindStringSubmatch(err.Error()); m != nil {
			te.Expr, te.Key = m[1], m[1]
		}
		return "", te
	}
	return buf.String(), nil
}

// Params resolves a role's parameter values: defaults overridden by the
// binding, each converted to its type. A missing value, an unknown name or
// a value of the wrong type is a *ParameterError.
func Params(r Role, values map[string]string) (map[string]any, error) {
	out := map[string]any{}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := r.Parameters[n]; !ok {
			declared := make([]string, 0, len(r.Parameters))
			for d := range r.Parameters {
				declared = append(declared, d)
			}
			sort.Strings(declared)
			reason := "the role declares no parameters"
			if len(declared) > 0 {
				reason = "the role declares only " + strings.Join(declared, ", ")
			}
			return nil, &ParameterError{Role: r.Name, Parameter: n, Reason: "not a parameter of the role; " + reason}
		}
	}
	for n, p := range r.Parameters {
		v, set := values[n]
		if !set {
			if p.Default == nil {
				return nil, &ParameterError{Role: r.Name, Parameter: n, Reason: "has no default, so every machine using the role must set it in role_parameters"}
			}
			v = *p.Default
		}
		tv, err := typed(p.Type, v)
		if err != nil {
			return nil, &ParameterError{Role: r.Name, Parameter: n, Reason: err.Error()}
		}
		out[n] = tv
	}
	return out, nil
}

// Render renders the roles (in closure order) for one machine. values maps
// role name to the machine's parameter values for it; naming a role that
// is not in ordered is an error. The result is in the same order.
func Render(ordered []Role, facts Facts, values map[string]map[string]string) ([]Rendered, error) {
	in := map[string]bool{}
	for _, r := range ordered {
		in[r.Name] = true
	}
	for name := range values {
		if !in[name] {
			return nil, &ParameterError{Role: name, Parameter: "*", Reason: "role_parameters names a role the machine does not use (directly or through requires)"}
		}
	}
	machine := facts.data()
	owner := map[string]string{}
	out := make([]Rendered, 0, len(ordered))
	for _, r := range ordered {
		params, err := Params(r, values[r.Name])
		if err != nil {
			return nil, err
		}
		data := map[string]any{"machine": machine, "params": params, "role": r.Name}
		x := func(field, text string) (string, error) { return execTemplate(r.Name, field, text, data) }
		rr := Rendered{Name: r.Name, Packages: r.Packages, Scripts: make([]string, 0, len(r.Scripts))}
		for i, f := range r.Files {
			p, err := x(fmt.Sprintf("files[%d].path", i), f.Path)
			if err != nil {
				return nil, err
			}
			if err := checkPath(p); err != nil {
				return nil, &FieldError{Role: r.Name, Field: fmt.Sprintf("files[%d].path", i), Reason: err.Error()}
			}
			p = path.Clean(p)
			if prev, ok := owner[p]; ok {
				return nil, &ConflictError{Path: p, Roles: [2]string{prev, r.Name}}
			}
			owner[p] = r.Name
			c, err := x(fmt.Sprintf("files[%d].content", i), f.Content)
			if err != nil {
				return nil, err
			}
			mode := f.Mode
			if mode == "" {
				mode = "0644"
			}
			if len(mode) == 3 {
				mode = "0" + mode
			}
			// An unset owner stays unset: root:root where the agent runs
			// as root (and for cloud-init), the agent's user otherwise.
			rr.Files = append(rr.Files, File{Path: p, Content: c, Mode: mode, Owner: f.Owner})
		}
		for i, s := range r.Scripts {
			v, err := x(fmt.Sprintf("scripts[%d]", i), s)
			if err != nil {
				return nil, err
			}
			rr.Scripts = append(rr.Scripts, v)
		}
		if rr.CloudConfig, err = x("cloud_config", r.CloudConfig); err != nil {
			return nil, err
		}
		if rr.OnRemove, err = x("on_remove", r.OnRemove); err != nil {
			return nil, err
		}
		rr.Digest = renderedDigest(rr)
		out = append(out, rr)
	}
	return out, nil
}

// renderedDigest covers what the agent applies (not cloud_config, which
// only the installer reads).
func renderedDigest(r Rendered) string {
	b, _ := json.Marshal(struct {
		Files    []File   `json:"files"`
		Packages []string `json:"packages"`
		Scripts  []string `json:"scripts"`
		OnRemove string   `json:"on_remove"`
	}{r.Files, r.Packages, r.Scripts, r.OnRemove})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Revision is the digest of a rendered role set, in order.
func Revision(rendered []Rendered) string {
	h := sha256.New()
	for _, r := range rendered {
		fmt.Fprintf(h, "%s\x00%s\n", r.Name, r.Digest)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SeedState is the agent state an install config writes: every role
// applied at install, so the agent does not redo it.
func SeedState(d Desired) State {
	st := State{Revision: d.Revision, Generation: d.Generation, Roles: map[string]AppliedRole{}}
	for _, r := range d.Roles {
		files := make([]string, 0, len(r.Files))
		for _, f := range r.Files {
			files = append(files, f.Path)
		}
		st.Roles[r.Name] = AppliedRole{Digest: r.Digest, Status: StatusOK, Files: files, OnRemove: r.OnRemove}
		st.Order = append(st.Order, r.Name)
	}
	return st
}
