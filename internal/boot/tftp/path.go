package tftp

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// MaxPathLen is the longest request name accepted, in bytes.
const MaxPathLen = 255

// DefaultAllowList is used when Config.AllowList is empty: the usual iPXE
// loaders for BIOS (undionly.kpxe) and UEFI (ipxe.efi, snponly.efi, snp.efi).
var DefaultAllowList = []string{"undionly.kpxe", "ipxe.efi", "snponly.efi", "snp.efi"}

// CleanRequestPath normalises a file name from a TFTP request into a
// slash-separated path relative to the served root, or refuses it with an
// access-violation *Error.
//
// Normalisation (firmware is sloppy): backslashes become slashes, leading
// slashes are dropped ("/ipxe.efi" and "\ipxe.efi" mean "ipxe.efi"), and
// empty and "." elements are removed. Refused outright: an empty result, a
// ".." element anywhere, NUL and other control characters, invalid UTF-8,
// names longer than MaxPathLen, and anything filepath.IsLocal rejects on the
// running OS (e.g. drive letters or reserved names on Windows).
//
// The result is only a syntactic guarantee; Server additionally applies its
// allow-list and resolves the name through an os.Root so that symlinks cannot
// escape the root.
func CleanRequestPath(name string) (string, error) {
	if name == "" {
		return "", accessViolation("empty file name")
	}
	if len(name) > MaxPathLen {
		return "", accessViolation("file name too long")
	}
	if !utf8.ValidString(name) {
		return "", accessViolation("file name is not valid UTF-8")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "", accessViolation("control character in file name")
		}
	}
	name = strings.ReplaceAll(name, `\`, "/")
	elems := strings.Split(name, "/")
	kept := elems[:0]
	for _, e := range elems {
		switch e {
		case "", ".":
			continue
		case "..":
			return "", accessViolation("parent directory reference in file name")
		}
		kept = append(kept, e)
	}
	if len(kept) == 0 {
		return "", accessViolation("empty file name")
	}
	clean := strings.Join(kept, "/")
	if !filepath.IsLocal(filepath.FromSlash(clean)) {
		return "", accessViolation("file name is not local")
	}
	return clean, nil
}

// allowList holds exact names and path.Match patterns (entries containing
// any of `*?[`). A pattern's `*` never matches a slash.
type allowList struct {
	exact    map[string]struct{}
	patterns []string
}

func newAllowList(entries []string) (*allowList, error) {
	if len(entries) == 0 {
		entries = DefaultAllowList
	}
	a := &allowList{exact: make(map[string]struct{}, len(entries))}
	for _, raw := range entries {
		if strings.ContainsAny(raw, `*?[`) {
			p := strings.TrimLeft(strings.ReplaceAll(raw, `\`, "/"), "/")
			if _, err := path.Match(p, ""); err != nil {
				return nil, fmt.Errorf("tftp: allow-list pattern %q: %w", raw, err)
			}
			if strings.Contains("/"+p+"/", "/../") {
				return nil, fmt.Errorf("tftp: allow-list pattern %q: parent directory reference", raw)
			}
			a.patterns = append(a.patterns, p)
			continue
		}
		clean, err := CleanRequestPath(raw)
		if err != nil {
			return nil, fmt.Errorf("tftp: allow-list entry %q: %w", raw, err)
		}
		a.exact[clean] = struct{}{}
	}
	return a, nil
}

// allowed reports whether a name already cleaned by CleanRequestPath is on
// the list.
func (a *allowList) allowed(clean string) bool {
	if _, ok := a.exact[clean]; ok {
		return true
	}
	for _, p := range a.patterns {
		if ok, _ := path.Match(p, clean); ok {
			return true
		}
	}
	return false
}
