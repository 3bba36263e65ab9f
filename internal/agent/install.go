package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// installFailure is what the install runner recorded (see roles.InstallDir).
type installFailure struct {
	role   string
	status int
	output string
}

// result is the failed role's report entry.
func (f installFailure) result(digest string) roles.Result {
	return roles.Result{Role: f.role, Digest: digest, Action: roles.ActionApplied, Status: roles.StatusFailed,
		Output: fmt.Sprintf("%sat install: a script of role %q exited with status %d", f.output, f.role, f.status)}
}

// installDir is where the install config ran the role scripts.
func (c Config) installDir() string {
	return filepath.Join(filepath.Dir(c.StatePath), roles.InstallDir)
}

// readInstallFailure returns the failure the install runner recorded, nil
// when there is none.
func readInstallFailure(dir string) (*installFailure, error) {
	b, err := os.ReadFile(filepath.Join(dir, roles.InstallFailed))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	role, rest, _ := strings.Cut(string(b), "\n")
	status, err := strconv.Atoi(strings.TrimSpace(rest))
	if role == "" || err != nil {
		return nil, fmt.Errorf("%s: want the role name and its exit status on two lines, got %q", roles.InstallFailed, lastBytes(string(b), 200))
	}
	f := &installFailure{role: role, status: status}
	if !roles.ValidName(role) {
		return nil, fmt.Errorf("%s: %q is not a role name", roles.InstallFailed, role)
	}
	if out, err := os.ReadFile(filepath.Join(dir, role+".log")); err == nil {
		f.output = lastBytes(string(out), roles.MaxOutput-128)
	}
	return f, nil
}

// installReport turns an install-time failure into the report the install
// never sent, and the state the install really left: the failed role and
// the roles after it are recorded as failed (their scripts did not all
// run), so the next Desired of a new generation applies them again.
func installReport(state roles.State, f installFailure) (roles.Report, roles.State) {
	next := normalizeState(state)
	rep := roles.Report{Revision: next.Revision, Generation: next.Generation, Results: []roles.Result{}}
	failed := false
	for _, name := range next.Order {
		r := next.Roles[name]
		res := roles.Result{Role: name, Digest: r.Digest, Action: roles.ActionApplied, Status: roles.StatusOK}
		switch {
		case name == f.role:
			failed = true
			res = f.result(r.Digest)
		case failed:
			res.Status = roles.StatusFailed
			res.Output = fmt.Sprintf("not applied at install: role %q, which comes before it, failed", f.role)
		}
		if res.Status != roles.StatusOK {
			r.Status = roles.StatusFailed
			next.Roles[name] = r
		}
		rep.Results = append(rep.Results, res)
	}
	if !failed {
		// The role is not in the seeded state (it was removed from the
		// install config's view): report it alone.
		rep.Results = append(rep.Results, f.result(""))
	}
	return rep, next
}

// takeInstallFailure reports a role script that failed during the install,
// once: it records the corrected state and keeps the report as pending
// (delivered like any other), then marks the failure as taken. It does
// nothing when a report is already pending (it is taken on a later start).
func (a *agent) takeInstallFailure(state roles.State, pending *roles.Report) (roles.State, *roles.Report) {
	if pending != nil {
		return state, pending
	}
	dir := a.cfg.installDir()
	f, err := readInstallFailure(dir)
	if err != nil {
		a.log.Warn("ignoring an unreadable install result", "dir", dir, "error", err)
		return state, nil
	}
	if f == nil {
		return state, nil
	}
	rep, next := installReport(state, *f)
	a.log.Warn("a role failed at install", "role", f.role, "exit_status", f.status, "output", lastBytes(f.output, 2048))
	if err := savePendingReport(a.cfg.StatePath, rep); err != nil {
		a.log.Error("keeping the install report until it is delivered", "error", err)
		return state, nil
	}
	if err := SaveState(a.cfg.StatePath, next); err != nil {
		a.log.Error("saving the agent state", "error", err)
	}
	// Renamed last: a crash before this takes the failure again (the same
	// report, the same state).
	if err := os.Rename(filepath.Join(dir, roles.InstallFailed), filepath.Join(dir, roles.InstallFailed+".reported")); err != nil {
		a.log.Error("marking the install failure as reported", "error", err)
	}
	return next, &rep
}
