// Package roles resolves and renders roles: composable layers of machine
// configuration (files, packages, ordered scripts, a cloud-config fragment,
// an on_remove script) with dependencies. A machine is the sum of its
// roles' transitive closure, applied in dependency order.
//
// The package is pure: the engine keeps the catalog and machine facts, the
// install config and the agent consume what Render returns.
package roles

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,62})$`)
	paramRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	modeRE  = regexp.MustCompile(`^0?[0-7]{3,4}$`)
	ownerRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)
)

// ErrInvalid marks a role definition or binding that cannot be used.
var ErrInvalid = errors.New("invalid role")

// FieldError names the field of a role (or binding) that is wrong.
type FieldError struct {
	Role string
	// Field is the attribute path as users write it, e.g. files[1].mode.
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("role %q: %s: %s", e.Role, e.Field, e.Reason)
}

func (e *FieldError) Unwrap() error { return ErrInvalid }

// ValidName reports whether s can name a role (lower-case letters, digits,
// '-' and '_', at most 63 characters, starting with a letter or digit).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ParseRef splits a role reference: "name" or "name@digest" (what
// metal_role's ref attribute holds, so a content change reaches machines).
func ParseRef(ref string) (name, digest string) {
	name, digest, _ = strings.Cut(ref, "@")
	return name, digest
}

// Ref is a role's reference: its name and the first 12 hex digits of its
// definition digest.
func Ref(r Role) string { return r.Name + "@" + DefinitionDigest(r)[:12] }

// DefinitionDigest is the sha256 (hex) of a role's definition.
func DefinitionDigest(r Role) string {
	b, _ := json.Marshal(r) // maps marshal with sorted keys
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Validate checks a role on its own (names, paths, modes, owners,
// parameter types and defaults, template syntax).
func Validate(r Role) error {
	fe := func(field, format string, args ...any) error {
		return &FieldError{Role: r.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if !ValidName(r.Name) {
		return fe("name", "%q is not a valid role name: use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit", r.Name)
	}
	for i, req := range r.Requires {
		n, _ := ParseRef(req)
		if !ValidName(n) {
			return fe(fmt.Sprintf("requires[%d]", i), "%q is not a role name or reference", req)
		}
		if n == r.Name {
			return fe(fmt.Sprintf("requires[%d]", i), "a role cannot require itself")
		}
	}
	for name, p := range r.Parameters {
		field := "parameters." + name
		if !paramRE.MatchString(name) {
			return fe(field, "parameter names must match %s so templates can use .params.%s", paramRE, name)
		}
		if !slices.Contains(ParameterTypes(), p.Type) {
			return fe(field+".type", "%q is not one of %s", p.Type, strings.Join(ParameterTypes(), ", "))
		}
		if p.Default != nil {
			if _, err := typed(p.Type, *p.Default); err != nil {
				return fe(field+".default", "%v", err)
			}
		}
	}
	seen := map[string]int{}
	for i, f := range r.Files {
		field := fmt.Sprintf("files[%d]", i)
		if !strings.Contains(f.Path, "{{") {
			if err := checkPath(f.Path); err != nil {
				return fe(field+".path", "%v", err)
			}
			if j, dup := seen[path.Clean(f.Path)]; dup {
				return fe(field+".path", "%s is also written by files[%d]", f.Path, j)
			}
			seen[path.Clean(f.Path)] = i
		}
		if f.Mode != "" && !modeRE.MatchString(f.Mode) {
			return fe(field+".mode", "%q is not an octal file mode such as \"0644\"", f.Mode)
		}
		if f.Owner != "" && !ownerRE.MatchString(f.Owner) {
			return fe(field+".owner", "%q is not user or user:group", f.Owner)
		}
	}
	for i, p := range r.Packages {
		if strings.TrimSpace(p) == "" || strings.ContainsAny(p, " \t\n;&|$`") {
			return fe(fmt.Sprintf("packages[%d]", i), "%q is not a package name", p)
		}
	}
	if r.CloudConfig != "" && !strings.HasPrefix(r.CloudConfig, "#cloud-config") {
		return fe("cloud_config", "must start with #cloud-config")
	}
	for _, t := range templateFields(r) {
		if _, err := parseTemplate(t.field, t.text); err != nil {
			return fe(t.field, "template: %v", err)
		}
	}
	return nil
}

func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		return fmt.Errorf("%q contains a .. component", p)
	}
	if strings.HasSuffix(p, "/") || path.Clean(p) == "/" {
		return fmt.Errorf("%q names a directory, not a file", p)
	}
	return nil
}

// typed converts a parameter value to its type, for templates.
func typed(typ, v string) (any, error) {
	switch typ {
	case TypeNumber:
		if i, err := strconv.ParseInt(v, 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", v)
		}
		return f, nil
	case TypeBool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not a bool (true or false)", v)
		}
		return b, nil
	}
	return v, nil
}

// CycleError is a dependency cycle; Path starts and ends with the same role.
type CycleError struct{ Path []string }

func (e *CycleError) Error() string {
	return "roles form a dependency cycle: " + strings.Join(e.Path, " -> ")
}

// MissingError is a role that is not in the catalog.
type MissingError struct {
	Role string
	// RequiredBy is the role that requires it ("" when a machine asked
	// for it directly).
	RequiredBy string
}

func (e *MissingError) Error() string {
	if e.RequiredBy == "" {
		return fmt.Sprintf("role %q does not exist", e.Role)
	}
	return fmt.Sprintf("role %q requires role %q, which does not exist", e.RequiredBy, e.Role)
}

// Closure returns the roles named by selected and everything they require,
// each after the roles it requires. Among roles with no order between them
// the selection order (then requires order) is kept, so the result is
// deterministic.
func Closure(catalog map[string]Role, selected []string) ([]Role, error) {
	const (
		visiting = 1
		done     = 2
	)
	mark := map[string]int{}
	var out []Role
	var stack []string
	var visit func(name, by string) error
	visit = func(name, by string) error {
		switch mark[name] {
		case done:
			return nil
		case visiting:
			i := slices.Index(stack, name)
			return &CycleError{Path: append(slices.Clone(stack[i:]), name)}
		}
		r, ok := catalog[name]
		if !ok {
			return &MissingError{Role: name, RequiredBy: by}
		}
		mark[name] = visiting
		stack = append(stack, name)
		for _, req := range r.Requires {
			n, _ := ParseRef(req)
			if err := visit(n, name); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		mark[name] = done
		out = append(out, r)
		return nil
	}
	for _, s := range selected {
		n, _ := ParseRef(s)
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CheckCatalog finds cycles and missing requirements across a whole
// catalog (what adding or changing a role must not introduce).
func CheckCatalog(catalog map[string]Role) error {
	names := make([]string, 0, len(catalog))
	for n := range catalog {
		names = append(names, n)
	}
	sort.Strings(names)
	_, err := Closure(catalog, names)
	return err
}

// Dependents lists the roles of catalog that require name, sorted.
func Dependents(catalog map[string]Role, name string) []string {
	var out []string
	for n, r := range catalog {
		for _, req := range r.Requires {
			if rn, _ := ParseRef(req); rn == name {
				out = append(out, n)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}
