package tmplfuncs

import (
	"strings"
	"testing"
)

func TestFuncs(t *testing.T) {
	q, _ := quote("a\"b\n<")
	if q != `"a\"b\n<"` {
		t.Errorf("quote = %s", q)
	}
	if s := shquote("it's"); s != `'it'\''s'` {
		t.Errorf("shquote = %s", s)
	}
	if s := indent(2, "a\n\nb"); s != "  a\n\n  b" {
		t.Errorf("indent = %q", s)
	}
	if s, _ := join(",", []any{"a", 1}); s != "a,1" {
		t.Errorf("join = %q", s)
	}
	if s, _ := ToYAML(map[string]any{"b": []string{"x"}, "a": "on"}); s != "a: \"on\"\nb:\n  - x" {
		t.Errorf("ToYAML = %q", s)
	}
	if _, err := required("thing", ""); err == nil || !strings.Contains(err.Error(), "thing") {
		t.Errorf("required: %v", err)
	}
}
