package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// fileSystem is the part of *os.Root the agent uses, with names relative to
// the root. A Root other than "/" is an *os.Root, so no name, ".." or
// symbolic link reaches outside it (os.Root refuses absolute symbolic
// links too). Root "/" is the host itself: there is nothing to escape, and
// absolute symbolic links such as /var/run must keep working.
type fileSystem interface {
	MkdirAll(name string, perm os.FileMode) error
	OpenFile(name string, flag int, perm os.FileMode) (*os.File, error)
	Rename(oldname, newname string) error
	Remove(name string) error
}

// hostFS is the host's file system under dir.
type hostFS struct{ dir string }

func (h hostFS) p(name string) string { return filepath.Join(h.dir, name) }

func (h hostFS) MkdirAll(name string, perm os.FileMode) error { return os.MkdirAll(h.p(name), perm) }
func (h hostFS) OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(h.p(name), flag, perm)
}
func (h hostFS) Rename(oldname, newname string) error { return os.Rename(h.p(oldname), h.p(newname)) }
func (h hostFS) Remove(name string) error             { return os.Remove(h.p(name)) }

// openRoot opens the file system the agent writes into.
func openRoot(root string) (fileSystem, func(), error) {
	if filepath.Clean(root) == string(filepath.Separator) {
		return hostFS{dir: string(filepath.Separator)}, func() {}, nil
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, func() {}, fmt.Errorf("root directory: %w", err)
	}
	return r, func() { _ = r.Close() }, nil
}

// cleanPath checks a path a role names and returns it cleaned. It must be
// absolute and free of ".." components: it is joined under Root.
func cleanPath(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("empty file path")
	case strings.ContainsRune(p, 0):
		return "", fmt.Errorf("file path %q contains a NUL byte", p)
	case !strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("file path %q is not absolute", p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return "", fmt.Errorf("file path %q has a .. component", p)
		}
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("file path %q is the root directory", p)
	}
	return c, nil
}

// relName is a cleaned path as a name relative to Root.
func relName(clean string) string { return filepath.FromSlash(strings.TrimPrefix(clean, "/")) }

// parseMode parses an octal mode such as "0644" (default 0644). Set-user-ID,
// set-group-ID and sticky bits are kept.
func parseMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0o644, nil
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("mode %q: want octal, e.g. 0644", s)
	}
	m := os.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m, nil
}

// ownership is what to chown a file to.
type ownership struct {
	uid, gid int
	chown    bool
}

// resolveOwner resolves a File.Owner (user[:group], names or numeric IDs,
// against the running system's user database) for an agent running with
// euid and egid:
//
//   - As root, the file is chowned to the owner; no owner means root:root.
//   - Not as root (tests, or an agent deliberately run unprivileged), no
//     owner means the agent's own user (no chown); an owner that is the
//     agent's user and group needs no chown; the agent's user with another
//     group is chowned (the kernel allows groups the user is in); any other
//     user is an error naming the owner, since only root can give files
//     away.
//
// A user without a group means the user's primary group.
func resolveOwner(spec string, euid, egid int) (ownership, error) {
	if spec == "" {
		if euid == 0 {
			return ownership{uid: 0, gid: 0, chown: true}, nil
		}
		return ownership{}, nil
	}
	name, group, hasGroup := strings.Cut(spec, ":")
	if name == "" || (hasGroup && group == "") {
		return ownership{}, fmt.Errorf("owner %q: want user[:group]", spec)
	}
	var o ownership
	var u *user.User
	if id, err := strconv.Atoi(name); err == nil && id >= 0 {
		o.uid = id
		if !hasGroup {
			if u, err = user.LookupId(name); err != nil {
				return ownership{}, fmt.Errorf("owner %q: no group given and uid %d has no user entry to take its primary group from", spec, id)
			}
		}
	} else {
		if u, err = user.Lookup(name); err != nil {
			return ownership{}, fmt.Errorf("owner %q: %w", spec, err)
		}
		if o.uid, err = strconv.Atoi(u.Uid); err != nil {
			return ownership{}, fmt.Errorf("owner %q: uid %q is not numeric", spec, u.Uid)
		}
	}
	gidStr := group
	if !hasGroup {
		gidStr = u.Gid
	} else if _, err := strconv.Atoi(group); err != nil {
		g, err := user.LookupGroup(group)
		if err != nil {
			return ownership{}, fmt.Errorf("owner %q: %w", spec, err)
		}
		gidStr = g.Gid
	}
	gid, err := strconv.Atoi(gidStr)
	if err != nil || gid < 0 {
		return ownership{}, fmt.Errorf("owner %q: gid %q is not numeric", spec, gidStr)
	}
	o.gid = gid
	switch {
	case euid == 0:
		o.chown = true
	case o.uid != euid:
		return ownership{}, fmt.Errorf("owner %q: only root can give a file to another user (the agent runs as uid %d)", spec, euid)
	default:
		o.chown = o.gid != egid
	}
	return o, nil
}

// preparedFile is a validated roles.File.
type preparedFile struct {
	path    string // cleaned, absolute (as recorded in the state)
	content string
	mode    os.FileMode
	owner   ownership
}

func prepareFile(f roles.File, euid, egid int) (preparedFile, error) {
	p, err := cleanPath(f.Path)
	if err != nil {
		return preparedFile{}, err
	}
	mode, err := parseMode(f.Mode)
	if err != nil {
		return preparedFile{}, fmt.Errorf("file %s: %w", p, err)
	}
	o, err := resolveOwner(f.Owner, euid, egid)
	if err != nil {
		return preparedFile{}, fmt.Errorf("file %s: %w", p, err)
	}
	return preparedFile{path: p, content: f.Content, mode: mode, owner: o}, nil
}

// writeFile writes f under fsys atomically: parents are created with mode
// 0755, the content goes to a temporary file in the same directory, which
// gets its owner and mode before it is renamed over the path.
func writeFile(fsys fileSystem, f preparedFile) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("file %s: %w", f.path, err)
		}
	}()
	name := relName(f.path)
	dir := filepath.Dir(name)
	if dir != "." {
		if err := fsys.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+filepath.Base(name)+".metal-agent-"+hex.EncodeToString(rnd[:]))
	fh, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = fh.Close()
			_ = fsys.Remove(tmp)
		}
	}()
	if _, err := fh.WriteString(f.content); err != nil {
		return err
	}
	if f.owner.chown {
		if err := fh.Chown(f.owner.uid, f.owner.gid); err != nil {
			return err
		}
	}
	// After chown, which clears set-user-ID bits.
	if err := fh.Chmod(f.mode); err != nil {
		return err
	}
	if err := fh.Sync(); err != nil {
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	if err := fsys.Rename(tmp, name); err != nil {
		return err
	}
	ok = true
	return nil
}

// removeFile removes a file a role wrote; one already gone is fine.
// Directories the role's files needed are left in place.
func removeFile(fsys fileSystem, p string) error {
	c, err := cleanPath(p)
	if err != nil {
		return err
	}
	if err := fsys.Remove(relName(c)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", c, err)
	}
	return nil
}
