// Package tmplfuncs is the function set every template of the project gets
// (install configs and role content), so both template kinds agree.
package tmplfuncs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

// Funcs is the whole function set templates get, in addition to
// text/template's builtins. Every function is pure.
//
//	quote v          JSON string literal of v (also a valid YAML double-quoted scalar)
//	shquote v        POSIX shell single-quoted v
//	join sep list    strings.Join over a list of strings (or values)
//	indent n s       s with every non-empty line indented by n spaces
//	nindent n s      "\n" + indent n s
//	toYAML v         YAML (block style, 2-space indent, no trailing newline)
//	toJSON v         compact JSON (no HTML escaping)
//	b64enc s         standard base64
//	dataURL s        RFC 2397 data URL (base64), as Ignition sources use
//	required name v  v, or an error naming name when v is empty
//	default d v      v, or d when v is empty
func Funcs() template.FuncMap {
	return template.FuncMap{
		"quote":    quote,
		"shquote":  shquote,
		"join":     join,
		"indent":   indent,
		"nindent":  func(n int, s string) string { return "\n" + indent(n, s) },
		"toYAML":   ToYAML,
		"toJSON":   toJSON,
		"b64enc":   func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"dataURL":  func(s string) string { return "data:;base64," + base64.StdEncoding.EncodeToString([]byte(s)) },
		"required": required,
		"default":  dflt,
	}
}

func str(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func quote(v any) (string, error) {
	b, err := JSONMarshal(str(v))
	return string(b), err
}

func shquote(v any) string {
	return "'" + strings.ReplaceAll(str(v), "'", `'\''`) + "'"
}

func join(sep string, list any) (string, error) {
	switch l := list.(type) {
	case []string:
		return strings.Join(l, sep), nil
	case nil:
		return "", nil
	}
	rv := reflect.ValueOf(list)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return "", fmt.Errorf("join: %T is not a list", list)
	}
	parts := make([]string, rv.Len())
	for i := range parts {
		parts[i] = str(rv.Index(i).Interface())
	}
	return strings.Join(parts, sep), nil
}

func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

// ToYAML renders v as block-style YAML with a 2-space indent and no
// trailing newline.
func ToYAML(v any) (string, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func toJSON(v any) (string, error) {
	b, err := JSONMarshal(v)
	return string(b), err
}

// JSONMarshal is json.Marshal without HTML escaping.
func JSONMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func empty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() == 0
	case reflect.Bool:
		return !rv.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int() == 0
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

func required(name string, v any) (any, error) {
	if empty(v) {
		return nil, fmt.Errorf("required value %s is empty", name)
	}
	return v, nil
}

func dflt(d, v any) any {
	if empty(v) {
		return d
	}
	return v
}
