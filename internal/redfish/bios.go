package redfish

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ApplyTime is a Redfish @Redfish.SettingsApplyTime / OperationApplyTime.
type ApplyTime string

const (
	ApplyImmediate                  ApplyTime = "Immediate"
	ApplyOnReset                    ApplyTime = "OnReset"
	ApplyAtMaintenanceWindowStart   ApplyTime = "AtMaintenanceWindowStart"
	ApplyInMaintenanceWindowOnReset ApplyTime = "InMaintenanceWindowOnReset"
)

// BIOSAttribute is one entry of the BIOS attribute registry.
type BIOSAttribute struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"` // Enumeration, String, Integer, Boolean, Password
	Values   []string `json:"values,omitempty"`
	ReadOnly bool     `json:"read_only,omitempty"`
	Default  string   `json:"default,omitempty"`
	Lower    *int64   `json:"lower,omitempty"`
	Upper    *int64   `json:"upper,omitempty"`
}

// BIOS is the current BIOS configuration of a system. Values are rendered
// as strings (integers in decimal, booleans as true/false).
type BIOS struct {
	Attributes map[string]string `json:"attributes"`
	// Pending are staged values that differ from the current ones.
	Pending map[string]string `json:"pending,omitempty"`
	// Registry is empty when the BMC publishes no attribute registry.
	Registry            map[string]BIOSAttribute `json:"registry,omitempty"`
	SupportedApplyTimes []string                 `json:"supported_apply_times,omitempty"`
}

// BIOSProfile is a wanted BIOS configuration.
type BIOSProfile struct {
	Attributes map[string]string `json:"attributes"`
	// ResetToDefaults: attributes the profile does not name are wanted at
	// their registry default.
	ResetToDefaults bool      `json:"reset_to_defaults,omitempty"`
	ApplyTime       ApplyTime `json:"apply_time,omitempty"` // default OnReset
	// MaintenanceWindowStart and MaintenanceWindowDuration go with the
	// maintenance-window apply times.
	MaintenanceWindowStart    time.Time     `json:"maintenance_window_start,omitzero"`
	MaintenanceWindowDuration time.Duration `json:"maintenance_window_duration,omitempty"`
}

// BIOSResult says what ApplyBIOS did.
type BIOSResult struct {
	// Changed lists the attributes that had to change (sorted).
	Changed []string `json:"changed,omitempty"`
	// Pending is true when the settings were staged for a maintenance
	// window and are not applied (nor verified) yet.
	Pending bool `json:"pending,omitempty"`
	// Rebooted is true when the host was restarted to apply them.
	Rebooted bool `json:"rebooted,omitempty"`
}

// BIOSMismatch is one attribute whose value did not stick.
type BIOSMismatch struct {
	Attribute string `json:"attribute"`
	Wanted    string `json:"wanted"`
	Actual    string `json:"actual"`
}

// BIOSMismatchError lists the attributes the BIOS did not apply. It
// matches ErrBIOSNotApplied.
type BIOSMismatchError struct {
	Mismatches []BIOSMismatch
	// Detail is what the BMC said about the apply (an iDRAC job message).
	Detail string
}

func (e *BIOSMismatchError) Error() string {
	parts := make([]string, len(e.Mismatches))
	for i, m := range e.Mismatches {
		parts[i] = fmt.Sprintf("%s: wanted %q, BIOS has %q", m.Attribute, m.Wanted, m.Actual)
	}
	out := "BIOS settings did not stick after the reboot (" + strings.Join(parts, "; ") + ")"
	if e.Detail != "" {
		out += ": the BMC said: " + e.Detail
	}
	return out
}

func (e *BIOSMismatchError) Is(target error) bool { return target == ErrBIOSNotApplied }

type biosDoc struct {
	ODataID           string                     `json:"@odata.id"`
	AttributeRegistry string                     `json:"AttributeRegistry"`
	Attributes        map[string]json.RawMessage `json:"Attributes"`
	Settings          struct {
		SettingsObject      link     `json:"SettingsObject"`
		SupportedApplyTimes []string `json:"SupportedApplyTimes"`
	} `json:"@Redfish.Settings"`
	Actions struct {
		ResetBios struct {
			Target string `json:"target"`
		} `json:"#Bios.ResetBios"`
	} `json:"Actions"`
}

type registryFileDoc struct {
	ID       string `json:"Id"`
	Registry string `json:"Registry"`
	Location []struct {
		URI string `json:"Uri"`
	} `json:"Location"`
}

type registryDoc struct {
	RegistryEntries struct {
		Attributes []struct {
			AttributeName string          `json:"AttributeName"`
			Type          string          `json:"Type"`
			ReadOnly      bool            `json:"ReadOnly"`
			DefaultValue  json.RawMessage `json:"DefaultValue"`
			LowerBound    *int64          `json:"LowerBound"`
			UpperBound    *int64          `json:"UpperBound"`
			Value         []struct {
				ValueName string `json:"ValueName"`
			} `json:"Value"`
		} `json:"Attributes"`
	} `json:"RegistryEntries"`
}

// attrString renders a raw attribute value as a string.
func attrString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		if f == float64(int64(f)) {
			return strconv.FormatInt(int64(f), 10)
		}
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return strconv.FormatBool(b)
	}
	return strings.TrimSpace(string(raw))
}

func attrStrings(m map[string]json.RawMessage) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = attrString(v)
	}
	return out
}

// BIOS reads the current attributes, staged ones and the registry.
func (c *Client) BIOS() (*BIOS, error) {
	p, err := c.SystemPath()
	if err != nil {
		return nil, err
	}
	b, _, _, err := c.readBIOS(p)
	return b, err
}

// readBIOS returns the BIOS view, the Bios document and the raw current
// attributes (for their JSON types).
func (c *Client) readBIOS(p string) (*BIOS, *biosDoc, map[string]json.RawMessage, error) {
	var doc biosDoc
	if err := c.getJSON(p+"/Bios", &doc); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, nil, &opError{kind: ErrUnsupported, msg: "the BMC exposes no BIOS resource", err: err}
		}
		return nil, nil, nil, fmt.Errorf("reading BIOS attributes: %w", err)
	}
	out := &BIOS{Attributes: attrStrings(doc.Attributes), SupportedApplyTimes: doc.Settings.SupportedApplyTimes}
	if so := doc.Settings.SettingsObject.ODataID; so != "" {
		var settings biosDoc
		if err := c.getJSON(so, &settings); err == nil {
			for k, v := range attrStrings(settings.Attributes) {
				if out.Attributes[k] != v {
					if out.Pending == nil {
						out.Pending = map[string]string{}
					}
					out.Pending[k] = v
				}
			}
		}
	}
	reg, err := c.biosRegistry(doc.AttributeRegistry)
	if err != nil {
		c.s.log.DebugContext(c.ctx, "BIOS attribute registry unavailable", "registry", doc.AttributeRegistry, "error", err.Error())
	}
	out.Registry = reg
	return out, &doc, doc.Attributes, nil
}

// biosRegistry finds the attribute registry named by Bios.AttributeRegistry
// in /redfish/v1/Registries. No registry is not an error.
func (c *Client) biosRegistry(name string) (map[string]BIOSAttribute, error) {
	if name == "" {
		return nil, nil
	}
	var coll collectionDoc
	if err := c.getJSON("/redfish/v1/Registries", &coll); err != nil {
		return nil, err
	}
	for _, m := range coll.Members {
		var l link
		if json.Unmarshal(m, &l) != nil || l.ODataID == "" {
			continue
		}
		id := l.ODataID[strings.LastIndex(strings.TrimRight(l.ODataID, "/"), "/")+1:]
		id = strings.TrimRight(id, "/")
		if id != name && !strings.HasPrefix(name, id) {
			continue
		}
		var f registryFileDoc
		if err := c.getJSON(l.ODataID, &f); err != nil {
			return nil, err
		}
		if len(f.Location) == 0 || f.Location[0].URI == "" {
			return nil, nil
		}
		var r registryDoc
		if err := c.getJSON(c.relative(f.Location[0].URI), &r); err != nil {
			return nil, err
		}
		out := map[string]BIOSAttribute{}
		for _, a := range r.RegistryEntries.Attributes {
			ba := BIOSAttribute{Name: a.AttributeName, Type: a.Type, ReadOnly: a.ReadOnly, Lower: a.LowerBound, Upper: a.UpperBound}
			if len(a.DefaultValue) > 0 && string(a.DefaultValue) != "null" {
				ba.Default = attrString(a.DefaultValue)
			}
			for _, v := range a.Value {
				ba.Values = append(ba.Values, v.ValueName)
			}
			out[a.AttributeName] = ba
		}
		return out, nil
	}
	return nil, nil
}

// ValidateBIOSProfile checks a profile against a registry: unknown and
// read-only attributes, values outside an enumeration or range, values of
// the wrong type. An empty registry validates nothing.
func ValidateBIOSProfile(reg map[string]BIOSAttribute, p BIOSProfile) error {
	if len(reg) == 0 {
		return nil
	}
	var problems []string
	for _, name := range sortedKeys(p.Attributes) {
		v := p.Attributes[name]
		a, ok := reg[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s is not a BIOS attribute of this system", name))
		case a.ReadOnly:
			problems = append(problems, fmt.Sprintf("%s is read-only", name))
		case a.Type == "Enumeration" && len(a.Values) > 0 && !slices.Contains(a.Values, v):
			problems = append(problems, fmt.Sprintf("%s = %q is not allowed (allowed: %s)", name, v, strings.Join(a.Values, ", ")))
		case a.Type == "Boolean" && v != "true" && v != "false":
			problems = append(problems, fmt.Sprintf("%s = %q is not a boolean", name, v))
		case a.Type == "Integer":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s = %q is not an integer", name, v))
			} else if (a.Lower != nil && n < *a.Lower) || (a.Upper != nil && n > *a.Upper) {
				problems = append(problems, fmt.Sprintf("%s = %d is outside %s", name, n, bounds(a)))
			}
		}
	}
	if len(problems) > 0 {
		return &opError{kind: ErrInvalidSpec, msg: "BIOS profile: " + strings.Join(problems, "; ")}
	}
	return nil
}

func bounds(a BIOSAttribute) string {
	lo, hi := "-inf", "+inf"
	if a.Lower != nil {
		lo = strconv.FormatInt(*a.Lower, 10)
	}
	if a.Upper != nil {
		hi = strconv.FormatInt(*a.Upper, 10)
	}
	return "[" + lo + ", " + hi + "]"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// wanted is the full attribute set a profile asks for.
func wantedAttributes(b *BIOS, p BIOSProfile) map[string]string {
	want := map[string]string{}
	if p.ResetToDefaults {
		for name, a := range b.Registry {
			if !a.ReadOnly && a.Default != "" && a.Type != "Password" {
				want[name] = a.Default
			}
		}
	}
	for k, v := range p.Attributes {
		want[k] = v
	}
	return want
}

// typed converts a wanted string to the JSON type the BIOS uses, from the
// registry, else from the current value's type.
func typed(reg map[string]BIOSAttribute, current map[string]json.RawMessage, name, v string) any {
	typ := reg[name].Type
	if typ == "" {
		if raw, ok := current[name]; ok {
			var x any
			if json.Unmarshal(raw, &x) == nil {
				switch x.(type) {
				case float64:
					typ = "Integer"
				case bool:
					typ = "Boolean"
				}
			}
		}
	}
	switch typ {
	case "Integer":
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	case "Boolean":
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return v
}

// Diff lists the attributes of the profile that the current BIOS does not
// have (sorted), as the provider shows drift.
func (b *BIOS) Diff(p BIOSProfile) []BIOSMismatch {
	want := wantedAttributes(b, p)
	var out []BIOSMismatch
	for _, k := range sortedKeys(want) {
		if cur, ok := b.Attributes[k]; !ok || cur != want[k] {
			out = append(out, BIOSMismatch{Attribute: k, Wanted: want[k], Actual: b.Attributes[k]})
		}
	}
	return out
}

// ApplyBIOS brings the BIOS to the profile: it stages the full wanted set
// in the settings object (not only the changed attributes, so values an
// earlier, unfinished apply left pending are sent again), reboots as the
// apply time allows, waits for the BMC's job or for the staged settings to
// be consumed, and verifies every attribute. A value that did not stick is
// a *BIOSMismatchError. Nothing is sent when the BIOS already matches.
func (c *Client) ApplyBIOS(prof BIOSProfile) (*BIOSResult, error) {
	p, err := c.SystemPath()
	if err != nil {
		return nil, err
	}
	b, doc, raw, err := c.readBIOS(p)
	if err != nil {
		return nil, err
	}
	if err := ValidateBIOSProfile(b.Registry, prof); err != nil {
		return nil, err
	}
	want := wantedAttributes(b, prof)
	res := &BIOSResult{}
	for _, m := range b.Diff(prof) {
		res.Changed = append(res.Changed, m.Attribute)
	}
	if len(res.Changed) == 0 {
		return res, nil
	}
	if prof.ResetToDefaults && len(b.Registry) == 0 && doc.Actions.ResetBios.Target != "" {
		resp, err := c.sendJSON(http.MethodPost, c.relative(doc.Actions.ResetBios.Target), map[string]any{}, nil, sendOpts{nonIdempotent: true})
		if err != nil {
			return nil, fmt.Errorf("resetting BIOS to defaults: %w", err)
		}
		drain(resp)
	}
	attrs := make(map[string]any, len(want))
	for k, v := range want {
		attrs[k] = typed(b.Registry, raw, k, v)
	}
	applyTime := prof.ApplyTime
	if applyTime == "" {
		applyTime = ApplyOnReset
	}
	settingsURI := firstNonEmpty(doc.Settings.SettingsObject.ODataID, p+"/Bios/Settings")
	sent, location, err := c.patchSettings(c.relative(settingsURI), attrs, applyTime, prof, b.SupportedApplyTimes)
	if err != nil {
		return nil, fmt.Errorf("staging BIOS settings: %w", err)
	}
	if applyTime == ApplyAtMaintenanceWindowStart || applyTime == ApplyInMaintenanceWindowOnReset {
		res.Pending = true
		return res, nil
	}
	if sent != ApplyImmediate {
		// The BMC applies at the next reset: do it now.
		snap, err := c.fetchSystem(p, "")
		if err != nil {
			return nil, err
		}
		if err := c.restart(p, snap); err != nil {
			return nil, fmt.Errorf("rebooting to apply BIOS settings: %w", err)
		}
	}
	res.Rebooted = true
	detail := ""
	if strings.Contains(location, "/Jobs/") {
		if detail, err = c.waitDellJob(location, "applying BIOS settings"); err != nil {
			return nil, err
		}
	} else if strings.Contains(location, "/TaskMonitors/") || strings.Contains(location, "/Tasks/") {
		if _, err := c.waitTask(location, "applying BIOS settings"); err != nil {
			return nil, err
		}
	}
	if err := c.waitSettingsConsumed(p, c.relative(settingsURI), want); err != nil {
		return nil, err
	}
	after, _, _, err := c.readBIOS(p)
	if err != nil {
		return nil, err
	}
	var bad []BIOSMismatch
	for _, k := range sortedKeys(want) {
		if after.Attributes[k] != want[k] {
			bad = append(bad, BIOSMismatch{Attribute: k, Wanted: want[k], Actual: after.Attributes[k]})
		}
	}
	if len(bad) > 0 {
		if detail == "Job completed successfully." {
			detail = ""
		}
		return res, &BIOSMismatchError{Mismatches: bad, Detail: detail}
	}
	return res, nil
}

// patchSettings PATCHes the settings object with the apply time the BMC
// supports. It returns the apply time actually sent ("" when none) and the
// job or task Location.
func (c *Client) patchSettings(uri string, attrs map[string]any, want ApplyTime, prof BIOSProfile, supported []string) (ApplyTime, string, error) {
	sendTime := ApplyTime("")
	switch {
	case len(supported) == 0:
		// iLO 5 and older BMCs: no @Redfish.SettingsApplyTime; the BIOS
		// applies staged settings at the next reboot.
	case slices.Contains(supported, string(want)):
		sendTime = want
	case slices.Contains(supported, string(ApplyOnReset)):
		sendTime = ApplyOnReset
	}
	build := func(at ApplyTime) map[string]any {
		body := map[string]any{"Attributes": attrs}
		if at != "" {
			a := map[string]any{"ApplyTime": string(at)}
			if !prof.MaintenanceWindowStart.IsZero() && (at == ApplyAtMaintenanceWindowStart || at == ApplyInMaintenanceWindowOnReset) {
				a["MaintenanceWindowStartTime"] = prof.MaintenanceWindowStart.UTC().Format(time.RFC3339)
				if prof.MaintenanceWindowDuration > 0 {
					a["MaintenanceWindowDurationInSeconds"] = int64(prof.MaintenanceWindowDuration.Seconds())
				}
			}
			body["@Redfish.SettingsApplyTime"] = a
		}
		return body
	}
	loc, err := c.patchWithETag(uri, build(sendTime))
	var se *StatusError
	if err != nil && sendTime != "" && errors.As(err, &se) && se.Status == http.StatusBadRequest {
		// The BMC advertised apply times it then refused: stage without.
		c.s.log.DebugContext(c.ctx, "BMC refused @Redfish.SettingsApplyTime; staging without it", "detail", se.Detail())
		sendTime = ""
		loc, err = c.patchWithETag(uri, build(""))
	}
	return sendTime, loc, err
}

// patchWithETag PATCHes with If-Match when the resource has an ETag, with
// one retry on 412 and 428 (AMI stacks require If-Match).
func (c *Client) patchWithETag(uri string, body map[string]any) (string, error) {
	etag := ""
	for attempt := 0; attempt < 3; attempt++ {
		var h map[string]string
		if etag != "" {
			h = map[string]string{"If-Match": etag}
		}
		resp, err := c.sendJSON(http.MethodPatch, uri, body, h, sendOpts{})
		if err == nil {
			drain(resp)
			return resp.Header.Get("Location"), nil
		}
		var se *StatusError
		if !errors.As(err, &se) || (se.Status != http.StatusPreconditionRequired && se.Status != http.StatusPreconditionFailed) || attempt == 2 {
			return "", err
		}
		r, gerr := c.send(http.MethodGet, uri, nil, nil, sendOpts{})
		if gerr != nil {
			return "", err
		}
		etag = r.Header.Get("ETag")
		drain(r)
		if etag == "" {
			return "", err
		}
	}
	return "", &opError{kind: ErrUnsupported, msg: "the BMC kept refusing the settings precondition"}
}

// waitSettingsConsumed polls until none of the wanted attributes is staged
// with a value other than the current one: the BIOS took or dropped them.
func (c *Client) waitSettingsConsumed(p, settingsURI string, want map[string]string) error {
	for {
		var cur, staged biosDoc
		if err := c.getJSON(p+"/Bios", &cur); err != nil {
			return err
		}
		if err := c.getJSON(settingsURI, &staged); err != nil {
			return err
		}
		c1, s1 := attrStrings(cur.Attributes), attrStrings(staged.Attributes)
		pending := false
		for k := range want {
			if v, ok := s1[k]; ok && v != c1[k] {
				pending = true
				break
			}
		}
		if !pending {
			return nil
		}
		if err := c.pollWait("waiting for the BIOS to apply staged settings", "applying BIOS settings"); err != nil {
			return err
		}
	}
}
