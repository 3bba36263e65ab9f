package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// server serves content at /blob and counts GETs.
func server(t *testing.T, content []byte, gate chan struct{}) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/blob" {
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		if gate != nil {
			<-gate
		}
		_, _ = w.Write(content)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func newCache(t *testing.T, client *http.Client) *Cache {
	t.Helper()
	c, err := New(t.TempDir(), Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnsureDownloads(t *testing.T) {
	content := bytes.Repeat([]byte("kernel"), 100000)
	srv, hits := server(t, content, nil)
	c := newCache(t, srv.Client())
	want := sum(content)

	a, err := c.Ensure(t.Context(), Source{URL: srv.URL + "/blob", SHA256: "sha256:" + strings.ToUpper(want)})
	if err != nil {
		t.Fatal(err)
	}
	if a.SHA256 != want || a.Size != int64(len(content)) || a.Path != filepath.Join(c.Dir(), "sha256", want) {
		t.Fatalf("artifact = %+v", a)
	}
	got, err := os.ReadFile(a.Path)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("cached content differs (%v)", err)
	}
	if fi, _ := os.Stat(a.Path); fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("cached file is writable: %v", fi.Mode())
	}

	// Cached: no second download.
	if _, err := c.Ensure(t.Context(), Source{URL: srv.URL + "/blob", SHA256: want}); err != nil {
		t.Fatal(err)
	}
	if h := hits.Load(); h != 1 {
		t.Errorf("server hits = %d, want 1", h)
	}
	if tmp, _ := os.ReadDir(filepath.Join(c.Dir(), "tmp")); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}

	f, err := c.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if _, err := c.Open(strings.Repeat("0", 64)); !errors.Is(err, ErrNotCached) {
		t.Errorf("Open(absent) = %v, want ErrNotCached", err)
	}
	for _, bad := range []string{"../../etc/passwd", want[:63], strings.Repeat("g", 64), "/" + want[1:]} {
		if _, err := c.Open(bad); !errors.Is(err, ErrInvalidChecksum) {
			t.Errorf("Open(%q) = %v, want ErrInvalidChecksum", bad, err)
		}
	}
}

func TestEnsureChecksumMismatch(t *testing.T) {
	content := []byte("not what you expected")
	srv, _ := server(t, content, nil)
	c := newCache(t, srv.Client())
	wrong := sum([]byte("expected"))
	_, err := c.Ensure(t.Context(), Source{URL: srv.URL + "/blob", SHA256: wrong})
	var mm *ChecksumMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("err = %v, want *ChecksumMismatchError", err)
	}
	if mm.Want != wrong || mm.Got != sum(content) || mm.URL != srv.URL+"/blob" {
		t.Errorf("mismatch = %+v", mm)
	}
	for _, s := range []string{srv.URL + "/blob", wrong, sum(content)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q does not name %s", err, s)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(c.Dir(), "sha256")); len(entries) != 0 {
		t.Errorf("mismatched content stored: %v", entries)
	}
	if tmp, _ := os.ReadDir(filepath.Join(c.Dir(), "tmp")); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func TestEnsureRemoteNeedsChecksum(t *testing.T) {
	srv, hits := server(t, []byte("x"), nil)
	c := newCache(t, srv.Client())
	if _, err := c.Ensure(t.Context(), Source{URL: srv.URL + "/blob"}); !errors.Is(err, ErrMissingChecksum) {
		t.Errorf("err = %v, want ErrMissingChecksum", err)
	}
	if _, err := c.Ensure(t.Context(), Source{URL: srv.URL + "/blob", SHA256: "abc"}); !errors.Is(err, ErrInvalidChecksum) {
		t.Errorf("err = %v, want ErrInvalidChecksum", err)
	}
	for _, u := range []string{"ftp://x/y", "file://otherhost/etc/passwd", "file:relative", "http:///nohost"} {
		if _, err := c.Ensure(t.Context(), Source{URL: u, SHA256: sum(nil)}); !errors.Is(err, ErrUnsupportedSource) {
			t.Errorf("Ensure(%s) = %v, want ErrUnsupportedSource", u, err)
		}
	}
	if hits.Load() != 0 {
		t.Error("server contacted")
	}
}

func TestEnsureHTTPStatus(t *testing.T) {
	srv, _ := server(t, nil, nil)
	c := newCache(t, srv.Client())
	u := strings.Replace(srv.URL, "http://", "http://user:secret@", 1) + "/missing?X-Signature=topsecret"
	_, err := c.Ensure(t.Context(), Source{URL: u, SHA256: sum(nil)})
	var se *HTTPStatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Fatalf("err = %v, want HTTP 404", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error leaks the password or the signed query: %v", err)
	}
}

func TestEnsureConcurrentDedupe(t *testing.T) {
	content := bytes.Repeat([]byte("initrd"), 50000)
	gate := make(chan struct{})
	srv, hits := server(t, content, gate)
	c := newCache(t, srv.Client())
	src := Source{URL: srv.URL + "/blob", SHA256: sum(content)}

	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			a, err := c.Ensure(t.Context(), src)
			if err == nil && a.Size != int64(len(content)) {
				err = errors.New("wrong size")
			}
			errs <- err
		})
	}
	// Let every caller join the in-flight download before it completes.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		w := 0
		if cl := c.calls[src.SHA256]; cl != nil {
			w = cl.waiters
		}
		c.mu.Unlock()
		if w == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if h := hits.Load(); h != 1 {
		t.Errorf("server hits = %d, want 1", h)
	}
}

func TestEnsureCancelledWaiterDoesNotBreakOthers(t *testing.T) {
	content := []byte("shared")
	gate := make(chan struct{})
	srv, _ := server(t, content, gate)
	c := newCache(t, srv.Client())
	src := Source{URL: srv.URL + "/blob", SHA256: sum(content)}

	ctx1, cancel1 := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() { _, err := c.Ensure(ctx1, src); first <- err }()
	second := make(chan error, 1)
	for {
		c.mu.Lock()
		cl := c.calls[src.SHA256]
		c.mu.Unlock()
		if cl != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	go func() { _, err := c.Ensure(t.Context(), src); second <- err }()
	for {
		c.mu.Lock()
		w := c.calls[src.SHA256].waiters
		c.mu.Unlock()
		if w == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel1()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v", err)
	}
	close(gate)
	if err := <-second; err != nil {
		t.Errorf("remaining caller failed after another one gave up: %v", err)
	}
}

func TestEnsureFileURL(t *testing.T) {
	content := []byte("local initrd contents")
	src := filepath.Join(t.TempDir(), "initrd.img")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCache(t, nil)

	// Without a sum: computed.
	a, err := c.Ensure(t.Context(), Source{URL: "file://" + src})
	if err != nil {
		t.Fatal(err)
	}
	if a.SHA256 != sum(content) || a.Size != int64(len(content)) {
		t.Fatalf("artifact = %+v", a)
	}
	// A copy, not a link: changing the source does not change the entry.
	if err := os.WriteFile(src, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(a.Path); !bytes.Equal(got, content) {
		t.Error("cache entry follows its source")
	}
	// With a matching sum: served from the cache.
	if b, err := c.Ensure(t.Context(), Source{URL: "file://localhost" + src, SHA256: sum(content)}); err != nil || b != a {
		t.Errorf("cached file: %+v %v", b, err)
	}
	// With a wrong sum: typed mismatch.
	var mm *ChecksumMismatchError
	if _, err := c.Ensure(t.Context(), Source{URL: "file://" + src, SHA256: sum([]byte("nope"))}); !errors.As(err, &mm) || mm.Got != sum([]byte("changed")) {
		t.Errorf("err = %v, want mismatch naming the file's sum", err)
	}
	if _, err := c.Ensure(t.Context(), Source{URL: "file://" + filepath.Dir(src)}); !errors.Is(err, ErrUnsupportedSource) {
		t.Errorf("directory: err = %v", err)
	}
}

func TestMaxSize(t *testing.T) {
	content := bytes.Repeat([]byte("x"), 1000)
	srv, _ := server(t, content, nil)
	c, err := New(t.TempDir(), Options{Client: srv.Client(), MaxSize: 999})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ensure(t.Context(), Source{URL: srv.URL + "/blob", SHA256: sum(content)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("err = %v, want ErrTooLarge", err)
	}
}
