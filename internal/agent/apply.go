package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// applier is one Apply.
type applier struct {
	cfg     Config
	desired roles.Desired
	fsys    fileSystem
	fsErr   error
	scratch string // where scripts are written
	euid    int
	egid    int

	pm         packageManager
	pmErr      error
	pmResolved bool

	// cur is what is on the machine now, as the work goes on.
	cur map[string]roles.AppliedRole
}

// Apply brings the machine to desired, starting from state (what the agent
// applied before), and returns the report and the new state. It needs no
// network. In order:
//
//  1. Roles in state but not in desired are removed, in reverse application
//     order: their on_remove script runs, then the files they wrote are
//     deleted unless a desired role (or another role still recorded) writes
//     them too. A failed on_remove keeps the role recorded, with status
//     failed and its files in place, so the next Desired retries the
//     removal.
//  2. Desired roles are applied in order. A role recorded with the same
//     digest and status ok is unchanged. Otherwise its files are written,
//     its packages installed and its scripts run in order; files its
//     previous version wrote and no role writes any more are deleted. When
//     a role fails, the roles after it that need work are not applied (they
//     may depend on it) and are reported failed too. A failed role is
//     recorded with status failed, so any later Desired (a new generation)
//     retries it even when its digest did not change.
//
// Scripts (and on_remove) are written to a private temporary directory
// under the state file's directory (the system temporary directory when it
// does not exist: /tmp is often mounted noexec) and run with METAL_ROLE,
// METAL_ROOT, METAL_MACHINE_ID and DEBIAN_FRONTEND=noninteractive set,
// Root as working directory and stdin from /dev/null. When ctx ends, a
// running script is killed with its process group and the roles not yet
// reached are reported failed ("not applied").
//
// The new state carries desired's revision and generation.
func Apply(ctx context.Context, cfg Config, desired roles.Desired, state roles.State) (roles.Report, roles.State) {
	cfg = cfg.withDefaults()
	old := normalizeState(state)
	ap := &applier{cfg: cfg, desired: desired, euid: os.Geteuid(), egid: os.Getegid(), cur: old.Roles}
	var closeRoot func()
	ap.fsys, closeRoot, ap.fsErr = openRoot(cfg.Root)
	defer closeRoot()
	ap.scratch = filepath.Dir(cfg.StatePath)
	if fi, err := os.Stat(ap.scratch); err != nil || !fi.IsDir() {
		ap.scratch = ""
	}

	rep := roles.Report{Revision: desired.Revision, Generation: desired.Generation, Results: []roles.Result{}}
	want := map[string]bool{}
	for _, r := range desired.Roles {
		want[r.Name] = true
	}

	// 1. Removals, last applied first.
	var kept []string
	for i := len(old.Order) - 1; i >= 0; i-- {
		name := old.Order[i]
		if want[name] {
			continue
		}
		res := ap.remove(ctx, name)
		rep.Results = append(rep.Results, res)
		if res.Status != roles.StatusOK {
			kept = append(kept, name)
		}
	}
	slices.Reverse(kept)

	// 2. Desired roles, in order.
	seen := map[string]bool{}
	stopped := ""
	order := kept
	for _, r := range desired.Roles {
		if seen[r.Name] {
			rep.Results = append(rep.Results, roles.Result{Role: r.Name, Digest: r.Digest, Action: roles.ActionApplied,
				Status: roles.StatusFailed, Output: fmt.Sprintf("role %q is listed twice in the desired roles", r.Name)})
			continue
		}
		seen[r.Name] = true
		prev, had := ap.cur[r.Name]
		var res roles.Result
		switch {
		case had && prev.Digest == r.Digest && prev.Status == roles.StatusOK:
			res = roles.Result{Role: r.Name, Digest: r.Digest, Action: roles.ActionUnchanged, Status: roles.StatusOK}
		case stopped != "":
			res = roles.Result{Role: r.Name, Digest: r.Digest, Action: roles.ActionApplied, Status: roles.StatusFailed,
				Output: fmt.Sprintf("not applied: role %q, which comes before it, failed", stopped)}
		case ctx.Err() != nil:
			res = roles.Result{Role: r.Name, Digest: r.Digest, Action: roles.ActionApplied, Status: roles.StatusFailed,
				Output: "not applied: the agent is stopping (" + ctx.Err().Error() + ")"}
		default:
			res = ap.apply(ctx, r)
			if res.Status != roles.StatusOK {
				stopped = r.Name
			}
		}
		rep.Results = append(rep.Results, res)
		if _, ok := ap.cur[r.Name]; ok {
			order = append(order, r.Name)
		}
	}

	next := roles.State{Revision: desired.Revision, Generation: desired.Generation, Roles: ap.cur, Order: order}
	return rep, normalizeState(next)
}

// claimed is the set of paths that roles other than except write or wrote:
// every desired role's files and every recorded role's files.
func (ap *applier) claimed(except string) map[string]bool {
	m := map[string]bool{}
	for _, r := range ap.desired.Roles {
		if r.Name == except {
			continue
		}
		for _, f := range r.Files {
			if p, err := cleanPath(f.Path); err == nil {
				m[p] = true
			}
		}
	}
	for name, r := range ap.cur {
		if name == except {
			continue
		}
		for _, p := range r.Files {
			if c, err := cleanPath(p); err == nil {
				m[c] = true
			}
		}
	}
	return m
}

// deleteFiles deletes paths not in keep and returns those it could not
// delete, with the error.
func (ap *applier) deleteFiles(paths []string, keep map[string]bool, out *tail) ([]string, error) {
	var left []string
	var first error
	for _, p := range paths {
		if c, err := cleanPath(p); err == nil && keep[c] {
			continue
		}
		err := ap.fsErr
		if err == nil {
			err = removeFile(ap.fsys, p)
		}
		if err != nil {
			left = append(left, p)
			out.note("%v", err)
			if first == nil {
				first = err
			}
		}
	}
	return left, first
}

// remove takes a role that is no longer desired off the machine.
func (ap *applier) remove(ctx context.Context, name string) roles.Result {
	prev := ap.cur[name]
	res := roles.Result{Role: name, Digest: prev.Digest, Action: roles.ActionRemoved, Status: roles.StatusOK}
	out := &tail{}
	fail := func(err error) roles.Result {
		out.note("%s", err)
		prev.Status = roles.StatusFailed
		ap.cur[name] = prev
		res.Status = roles.StatusFailed
		res.Output = out.String()
		return res
	}
	if prev.OnRemove != "" {
		if err := ap.runScript(ctx, name, prev.OnRemove, out); err != nil {
			return fail(fmt.Errorf("on_remove failed: %s", exitText(err)))
		}
	}
	left, err := ap.deleteFiles(prev.Files, ap.claimed(name), out)
	if err != nil {
		prev.Files = left
		return fail(errors.New("removing the role's files failed"))
	}
	delete(ap.cur, name)
	res.Output = out.String()
	return res
}

// apply applies one desired role that needs work.
func (ap *applier) apply(ctx context.Context, r roles.Rendered) roles.Result {
	prev, had := ap.cur[r.Name]
	res := roles.Result{Role: r.Name, Digest: r.Digest, Action: roles.ActionApplied, Status: roles.StatusOK}
	out := &tail{}
	var written []string
	fail := func(err error) roles.Result {
		out.note("%s", err)
		files := slices.Clone(prev.Files)
		for _, p := range written {
			if !slices.Contains(files, p) {
				files = append(files, p)
			}
		}
		ap.cur[r.Name] = roles.AppliedRole{Digest: r.Digest, Status: roles.StatusFailed, Files: files, OnRemove: r.OnRemove}
		res.Status = roles.StatusFailed
		res.Output = out.String()
		return res
	}

	files := make([]preparedFile, 0, len(r.Files))
	for _, f := range r.Files {
		pf, err := prepareFile(f, ap.euid, ap.egid)
		if err != nil {
			return fail(err)
		}
		files = append(files, pf)
	}
	if err := validatePackages(r.Packages); err != nil {
		return fail(err)
	}
	if len(files) > 0 && ap.fsErr != nil {
		return fail(ap.fsErr)
	}
	for _, f := range files {
		if err := writeFile(ap.fsys, f); err != nil {
			return fail(err)
		}
		if !slices.Contains(written, f.path) {
			written = append(written, f.path)
		}
	}
	if len(r.Packages) > 0 {
		if err := ap.installPackages(ctx, r.Packages, out); err != nil {
			return fail(err)
		}
	}
	for i, s := range r.Scripts {
		if err := ap.runScript(ctx, r.Name, s, out); err != nil {
			return fail(fmt.Errorf("script %d of %d failed: %s", i+1, len(r.Scripts), exitText(err)))
		}
	}

	// Files the previous version wrote that nothing writes any more.
	var stale []string
	if had {
		for _, p := range prev.Files {
			if !slices.Contains(written, p) {
				stale = append(stale, p)
			}
		}
	}
	keep := ap.claimed(r.Name)
	for _, p := range written {
		keep[p] = true
	}
	left, err := ap.deleteFiles(stale, keep, out)
	if err != nil {
		written = append(written, left...)
		return fail(errors.New("removing files the role no longer writes failed"))
	}
	ap.cur[r.Name] = roles.AppliedRole{Digest: r.Digest, Status: roles.StatusOK, Files: written, OnRemove: r.OnRemove}
	res.Output = out.String()
	return res
}
