package tftp

import (
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRequestPath checks CleanRequestPath's invariants: any accepted name is
// a clean, local, slash-separated relative path without "..", NUL, control
// characters or backslashes; cleaning is idempotent; and the same name with
// extra leading slashes or backslash separators cleans to the same result.
// Seed corpus: testdata/fuzz/FuzzRequestPath.
func FuzzRequestPath(f *testing.F) {
	for _, s := range []string{"ipxe.efi", "/ipxe.efi", `\boot\x86\wdsnbp.com`, "../etc/passwd", "a/./b//c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		clean, err := CleanRequestPath(name)
		if err != nil {
			if !errors.Is(err, ErrAccessViolation) {
				t.Fatalf("%q: error %v is not an access violation", name, err)
			}
			if clean != "" {
				t.Fatalf("%q: non-empty result %q with error", name, clean)
			}
			return
		}
		if clean == "" || len(clean) > len(name) || len(clean) > MaxPathLen {
			t.Fatalf("%q -> %q: bad length", name, clean)
		}
		if !utf8.ValidString(clean) || strings.ContainsAny(clean, "\\\x00") || strings.HasPrefix(clean, "/") || strings.HasSuffix(clean, "/") {
			t.Fatalf("%q -> %q: bad characters or slashes", name, clean)
		}
		for _, r := range clean {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("%q -> %q: control character", name, clean)
			}
		}
		for _, e := range strings.Split(clean, "/") {
			if e == "" || e == "." || e == ".." {
				t.Fatalf("%q -> %q: element %q", name, clean, e)
			}
		}
		if path.Clean(clean) != clean || !filepath.IsLocal(filepath.FromSlash(clean)) || !filepath.IsLocal(clean) {
			t.Fatalf("%q -> %q: not clean and local", name, clean)
		}
		if again, err := CleanRequestPath(clean); err != nil || again != clean {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", name, clean, again, err)
		}
		if len(name) < MaxPathLen {
			variant := "/" + strings.ReplaceAll(name, "/", `\`)
			if v, err := CleanRequestPath(variant); err != nil || v != clean {
				t.Fatalf("%q -> %q but %q -> %q, %v", name, clean, variant, v, err)
			}
		}
	})
}
