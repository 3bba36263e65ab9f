package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// LoadState reads the agent's state. A missing file is an empty state (a
// fresh machine); a file that does not parse is an error naming it.
func LoadState(path string) (roles.State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return roles.State{Roles: map[string]roles.AppliedRole{}}, nil
	}
	if err != nil {
		return roles.State{}, fmt.Errorf("agent state: %w", err)
	}
	var s roles.State
	if err := json.Unmarshal(b, &s); err != nil {
		return roles.State{}, fmt.Errorf("agent state %s is corrupt (%w); move it aside to re-apply every role", path, err)
	}
	return normalizeState(s), nil
}

// SaveState writes the agent's state atomically with mode 0600.
func SaveState(path string, s roles.State) error {
	b, err := json.MarshalIndent(normalizeState(s), "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	return nil
}

// normalizeState copies s so that Roles is non-nil and Order lists every
// role exactly once (a seeded state may omit Order: the rest follow in
// name order).
func normalizeState(s roles.State) roles.State {
	out := roles.State{Revision: s.Revision, Generation: s.Generation, Roles: make(map[string]roles.AppliedRole, len(s.Roles))}
	for name, r := range s.Roles {
		r.Files = slices.Clone(r.Files)
		out.Roles[name] = r
	}
	seen := map[string]bool{}
	for _, name := range s.Order {
		if _, ok := out.Roles[name]; ok && !seen[name] {
			seen[name] = true
			out.Order = append(out.Order, name)
		}
	}
	var rest []string
	for name := range out.Roles {
		if !seen[name] {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	out.Order = append(out.Order, rest...)
	return out
}

func pendingReportPath(statePath string) string { return statePath + ".report" }

func savePendingReport(statePath string, rep roles.Report) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	return writeFileAtomic(pendingReportPath(statePath), b)
}

func loadPendingReport(statePath string) (*roles.Report, error) {
	p := pendingReportPath(statePath)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rep roles.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		_ = os.Remove(p)
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &rep, nil
}

func removePendingReport(statePath string) error {
	err := os.Remove(pendingReportPath(statePath))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// writeFileAtomic writes b to path (mode 0600) through a temporary file in
// the same directory, renamed over path once synced.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
