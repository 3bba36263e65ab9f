package tftp

import (
	"errors"
	"io/fs"
	"os"
	"sync"
)

// fileCache shares one open *os.File per served name between concurrent
// transfers (reads use ReadAt, so they don't share an offset). An entry is
// reused while a fresh Stat through the root still reports the same file,
// size and modification time; a replaced or rewritten file gets a new entry
// and the old descriptor is closed when its last transfer ends. At most one
// descriptor per allow-listed name stays open while idle.
type fileCache struct {
	root *os.Root

	mu     sync.Mutex
	m      map[string]*cachedFile
	closed bool
}

type cachedFile struct {
	f     *os.File
	info  fs.FileInfo
	refs  int
	stale bool
}

var errNotRegular = errors.New("not a regular file")

func newFileCache(root *os.Root) *fileCache {
	return &fileCache{root: root, m: make(map[string]*cachedFile)}
}

func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// stat resolves name inside the root (following symlinks that stay inside)
// and requires a regular file.
func (c *fileCache) stat(name string) (fs.FileInfo, error) {
	fi, err := c.root.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errNotRegular}
	}
	return fi, nil
}

// acquire returns an open handle for name; release it with c.release.
func (c *fileCache) acquire(name string) (*cachedFile, error) {
	fi, err := c.stat(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, os.ErrClosed
	}
	if e := c.m[name]; e != nil && sameFile(e.info, fi) {
		e.refs++
		c.mu.Unlock()
		return e, nil
	}
	c.mu.Unlock()

	f, err := c.root.OpenFile(name, openFlags, 0)
	if err != nil {
		return nil, err
	}
	ofi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if !ofi.Mode().IsRegular() {
		_ = f.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: errNotRegular}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = f.Close()
		return nil, os.ErrClosed
	}
	if e := c.m[name]; e != nil {
		if sameFile(e.info, ofi) { // another transfer won the race
			_ = f.Close()
			e.refs++
			return e, nil
		}
		e.stale = true
		if e.refs == 0 {
			_ = e.f.Close()
		}
	}
	e := &cachedFile{f: f, info: ofi, refs: 1}
	c.m[name] = e
	return e, nil
}

func (c *fileCache) release(e *cachedFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.refs == 0 && (e.stale || c.closed) {
		_ = e.f.Close()
	}
}

// close closes idle descriptors now and busy ones when their transfer ends.
func (c *fileCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	for name, e := range c.m {
		if e.refs == 0 && !e.stale {
			_ = e.f.Close()
		}
		delete(c.m, name)
	}
}
