// Package artifact is a content-addressed cache of boot artifacts (kernels,
// initrds, disk images), verified by sha256.
//
// Layout under the cache directory:
//
//	sha256/<64 hex>   verified artifacts, read-only, named by their sum
//	tmp/              downloads in progress (same file system, so the final
//	                  rename is atomic)
//
// A file under sha256/ only ever appears through an atomic rename after its
// content has been hashed and fsynced, so its name is its checksum. Files are
// served only by sum ([Cache.Open]), never by a caller-supplied path.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Source says where an artifact comes from and what it must hash to.
type Source struct {
	// URL is http://, https:// or file:// (an absolute local path, host
	// empty or "localhost").
	URL string
	// SHA256 is the expected sum, 64 hex digits (an optional "sha256:"
	// prefix is accepted). Required for http(s); for file:// it may be
	// empty, and then the file's own sum is used.
	SHA256 string
}

// Artifact is a verified file in the cache.
type Artifact struct {
	Path   string
	Size   int64
	SHA256 string
}

// Errors returned by Ensure, Lookup and Open (match with errors.Is).
var (
	ErrMissingChecksum   = errors.New("artifact: a sha256 is required for remote sources")
	ErrInvalidChecksum   = errors.New("artifact: sha256 must be 64 hex digits")
	ErrUnsupportedSource = errors.New("artifact: unsupported source URL")
	// ErrNotCached also matches fs.ErrNotExist.
	ErrNotCached = fmt.Errorf("artifact: not in cache: %w", fs.ErrNotExist)
	ErrTooLarge  = errors.New("artifact: larger than the cache's size limit")
)

// ChecksumMismatchError is returned when the content does not hash to the
// expected sum. Nothing is stored.
type ChecksumMismatchError struct {
	URL  string // password and query redacted
	Want string
	Got  string
}

func (e *ChecksumMismatchError) Error() string {
	return fmt.Sprintf("artifact: checksum mismatch for %s: want sha256 %s, got %s", e.URL, e.Want, e.Got)
}

// HTTPStatusError is returned when a download does not answer 200.
type HTTPStatusError struct {
	URL        string // password and query redacted
	StatusCode int
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("artifact: GET %s: HTTP %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
}

// Options configures a Cache. All fields are optional.
type Options struct {
	// Client downloads http(s) sources; nil means http.DefaultClient.
	// Put timeouts on the Transport (dial, TLS, response header), not an
	// overall Client.Timeout, which would cap large images.
	Client *http.Client
	// Logger receives debug and info logs; nil discards.
	Logger *slog.Logger
	// MaxSize caps one artifact in bytes; 0 means no limit.
	MaxSize int64
}

// Cache is safe for concurrent use, also by several processes sharing the
// directory (entries are created by atomic rename).
type Cache struct {
	dir     string
	objects string
	tmp     string
	client  *http.Client
	log     *slog.Logger
	maxSize int64

	mu    sync.Mutex
	calls map[string]*call
}

// call is one download shared by every Ensure waiting for the same key.
// It runs on its own context, cancelled only when every waiter has gone.
type call struct {
	done    chan struct{}
	art     Artifact
	err     error
	waiters int
	cancel  context.CancelFunc
}

// New opens (creating if needed) a cache in dir. Leftover temporary files of
// an earlier process are removed.
func New(dir string, opts Options) (*Cache, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	c := &Cache{
		dir:     abs,
		objects: filepath.Join(abs, "sha256"),
		tmp:     filepath.Join(abs, "tmp"),
		client:  opts.Client,
		log:     opts.Logger,
		maxSize: opts.MaxSize,
		calls:   map[string]*call{},
	}
	if c.client == nil {
		c.client = http.DefaultClient
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{c.objects, c.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("artifact: %w", err)
		}
	}
	if old, err := os.ReadDir(c.tmp); err == nil {
		for _, e := range old {
			_ = os.Remove(filepath.Join(c.tmp, e.Name()))
		}
	}
	return c, nil
}

// Dir is the cache directory (absolute).
func (c *Cache) Dir() string { return c.dir }

// NormalizeSHA256 lower-cases a sum and strips an optional "sha256:"
// prefix; it fails with ErrInvalidChecksum unless 64 hex digits remain.
func NormalizeSHA256(s string) (string, error) {
	s = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "sha256:"))
	if len(s) != 64 {
		return "", ErrInvalidChecksum
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && (s[i] < 'a' || s[i] > 'f') {
			return "", ErrInvalidChecksum
		}
	}
	return s, nil
}

// path is the object path of a normalized sum.
func (c *Cache) path(sum string) string { return filepath.Join(c.objects, sum) }

// Lookup returns the cached artifact with this sum, or ErrNotCached.
func (c *Cache) Lookup(sum string) (Artifact, error) {
	sum, err := NormalizeSHA256(sum)
	if err != nil {
		return Artifact{}, err
	}
	fi, err := os.Stat(c.path(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return Artifact{}, ErrNotCached
	}
	if err != nil {
		return Artifact{}, fmt.Errorf("artifact: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Artifact{}, fmt.Errorf("artifact: %s is not a regular file", c.path(sum))
	}
	return Artifact{Path: c.path(sum), Size: fi.Size(), SHA256: sum}, nil
}

// Open opens the cached artifact with this sum for reading (the boot
// service's HTTP handler serves from it). ErrNotCached if absent.
func (c *Cache) Open(sum string) (*os.File, error) {
	a, err := c.Lookup(sum)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(a.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotCached
	}
	return f, err
}

// Ensure makes the source's content available in the cache and returns it.
// A sum already cached returns at once without touching the source.
// Concurrent calls for the same sum (or the same file URL without a sum)
// share one download. Cancelling ctx abandons this call; the download itself
// stops when no caller is waiting for it any more.
func (c *Cache) Ensure(ctx context.Context, src Source) (Artifact, error) {
	u, err := url.Parse(src.URL)
	if err != nil {
		return Artifact{}, fmt.Errorf("%w: %w", ErrUnsupportedSource, err)
	}
	var want string
	if src.SHA256 != "" {
		if want, err = NormalizeSHA256(src.SHA256); err != nil {
			return Artifact{}, err
		}
	}
	var key string
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return Artifact{}, fmt.Errorf("%w: %s has no host", ErrUnsupportedSource, display(u))
		}
		if want == "" {
			return Artifact{}, fmt.Errorf("%w (%s)", ErrMissingChecksum, display(u))
		}
		key = want
	case "file":
		if (u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(filepath.FromSlash(u.Path)) {
			return Artifact{}, fmt.Errorf("%w: file URL %q must be file:///absolute/path", ErrUnsupportedSource, src.URL)
		}
		key = want
		if key == "" {
			key = "file:" + filepath.Clean(filepath.FromSlash(u.Path))
		}
	default:
		return Artifact{}, fmt.Errorf("%w: scheme %q (want http, https or file)", ErrUnsupportedSource, u.Scheme)
	}
	if want != "" {
		if a, err := c.Lookup(want); err == nil {
			return a, nil
		}
	}
	return c.do(ctx, key, func(ctx context.Context) (Artifact, error) {
		if want != "" { // another process may have finished it meanwhile
			if a, err := c.Lookup(want); err == nil {
				return a, nil
			}
		}
		if u.Scheme == "file" {
			return c.fromFile(ctx, u, want)
		}
		return c.download(ctx, u, want)
	})
}

func (c *Cache) do(ctx context.Context, key string, fn func(context.Context) (Artifact, error)) (Artifact, error) {
	c.mu.Lock()
	cl, ok := c.calls[key]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cl = &call{done: make(chan struct{}), cancel: cancel}
		c.calls[key] = cl
		go func() {
			cl.art, cl.err = fn(fctx)
			cancel()
			c.mu.Lock()
			if c.calls[key] == cl {
				delete(c.calls, key)
			}
			c.mu.Unlock()
			close(cl.done)
		}()
	}
	cl.waiters++
	c.mu.Unlock()

	select {
	case <-cl.done:
		return cl.art, cl.err
	case <-ctx.Done():
		c.mu.Lock()
		cl.waiters--
		if cl.waiters == 0 {
			// Nobody wants it any more: stop it, and let the next caller
			// start afresh rather than join a cancelled download.
			cl.cancel()
			if c.calls[key] == cl {
				delete(c.calls, key)
			}
		}
		c.mu.Unlock()
		return Artifact{}, ctx.Err()
	}
}

func (c *Cache) download(ctx context.Context, u *url.URL, want string) (Artifact, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Artifact{}, err
	}
	c.log.Info("downloading artifact", "url", display(u), "sha256", want)
	resp, err := c.client.Do(req)
	if err != nil {
		return Artifact{}, fmt.Errorf("artifact: GET %s: %w", display(u), redactErr(err))
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return Artifact{}, &HTTPStatusError{URL: display(u), StatusCode: resp.StatusCode}
	}
	if c.maxSize > 0 && resp.ContentLength > c.maxSize {
		return Artifact{}, fmt.Errorf("%w: %s is %d bytes", ErrTooLarge, display(u), resp.ContentLength)
	}
	return c.store(ctx, resp.Body, display(u), want)
}

// display is u for messages and logs: the password and the query (which
// often carries a signature, as in presigned object-store URLs) are
// redacted.
func display(u *url.URL) string {
	v := *u
	if v.RawQuery != "" {
		v.RawQuery = "REDACTED"
	}
	v.Fragment, v.RawFragment = "", ""
	return v.Redacted()
}

// redactErr keeps a *url.Error from repeating the unredacted URL.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (c *Cache) fromFile(ctx context.Context, u *url.URL, want string) (Artifact, error) {
	p := filepath.Clean(filepath.FromSlash(u.Path))
	f, err := os.Open(p)
	if err != nil {
		return Artifact{}, fmt.Errorf("artifact: %w", err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return Artifact{}, fmt.Errorf("artifact: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Artifact{}, fmt.Errorf("%w: %s is not a regular file", ErrUnsupportedSource, p)
	}
	if c.maxSize > 0 && fi.Size() > c.maxSize {
		return Artifact{}, fmt.Errorf("%w: %s is %d bytes", ErrTooLarge, p, fi.Size())
	}
	// Copied, not hard-linked: a link would share the inode, so a later
	// edit of the source would silently change a content-addressed entry.
	return c.store(ctx, f, u.String(), want)
}

// store copies r into a temporary file while hashing, verifies, fsyncs and
// renames it to its content address.
func (c *Cache) store(ctx context.Context, r io.Reader, name, want string) (_ Artifact, err error) {
	tmp, err := os.CreateTemp(c.tmp, "part-*")
	if err != nil {
		return Artifact{}, fmt.Errorf("artifact: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	src := io.Reader(&ctxReader{ctx: ctx, r: r})
	if c.maxSize > 0 {
		src = io.LimitReader(src, c.maxSize+1)
	}
	n, err := io.Copy(io.MultiWriter(tmp, h), src)
	if err != nil {
		return Artifact{}, fmt.Errorf("artifact: reading %s: %w", name, err)
	}
	if c.maxSize > 0 && n > c.maxSize {
		return Artifact{}, fmt.Errorf("%w: %s exceeds %d bytes", ErrTooLarge, name, c.maxSize)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		c.log.Warn("artifact checksum mismatch", "url", name, "want", want, "got", got)
		return Artifact{}, &ChecksumMismatchError{URL: name, Want: want, Got: got}
	}
	if err := tmp.Chmod(0o444); err != nil {
		return Artifact{}, fmt.Errorf("artifact: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return Artifact{}, fmt.Errorf("artifact: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Artifact{}, fmt.Errorf("artifact: %w", err)
	}
	dst := c.path(got)
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return Artifact{}, fmt.Errorf("artifact: %w", err)
	}
	if d, err := os.Open(c.objects); err == nil { // persist the rename
		_ = d.Sync()
		_ = d.Close()
	}
	c.log.Info("artifact cached", "url", name, "sha256", got, "bytes", n)
	return Artifact{Path: dst, Size: n, SHA256: got}, nil
}

// ctxReader stops a copy when its context is done (file sources; HTTP
// bodies already do).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
