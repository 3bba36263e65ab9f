package httpboot

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/artifact"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
)

func (b *fakeBackend) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.byHash {
		m.Provisioned = false
	}
	clear(b.events)
}

// FuzzRoutes: any method, path, token and body. The handler must not
// panic, and must never answer 2xx on a per-machine route unless the
// request carries the valid token.
func FuzzRoutes(f *testing.F) {
	fx := newFixture(f)
	f.Add("GET", "script.ipxe", true, "", []byte(nil))
	f.Add("GET", "script.ipxe", false, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", []byte(nil))
	f.Add("POST", "events", true, "", []byte(`{"stage":"x","message":"m"}`))
	f.Add("POST", "events", false, "../../etc", []byte(`{"stage":"x"}`))
	f.Add("HEAD", "kernel", true, "", []byte(nil))
	f.Add("GET", "config/user-data", false, "%2e%2e", []byte(nil))
	f.Add("POST", "provisioned", false, "binaries", []byte("a=b"))
	f.Add("GET", "progress/booting", true, "", []byte(nil))
	f.Add("GET", "../../binaries/ipxe.efi", false, "x", []byte(nil))

	f.Fuzz(func(t *testing.T, method, rest string, useValid bool, token string, body []byte) {
		if useValid {
			token = fx.token
		}
		req, err := http.NewRequest(method, "http://boot.test/boot/"+token+"/"+rest, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.RemoteAddr = "192.0.2.99:1"
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		defer fx.backend.reset()

		if rec.Code < 200 || rec.Code > 299 {
			return
		}
		p := req.URL.Path
		if p == "/boot/local.ipxe" || strings.HasPrefix(p, "/boot/binaries/") || strings.HasPrefix(p, "/boot/by-mac/") {
			return // public routes
		}
		segs := strings.Split(req.URL.EscapedPath(), "/")
		if len(segs) < 3 {
			t.Fatalf("%s %q: %d outside the token tree", method, req.URL.EscapedPath(), rec.Code)
		}
		seen, err := url.PathUnescape(segs[2])
		if err != nil || !TokensEqual(seen, fx.token) {
			t.Fatalf("%s %q (token %q): %d without the valid token", method, req.URL.EscapedPath(), seen, rec.Code)
		}
	})
}

// BenchmarkServeArtifact serves a 64 MiB image over loopback.
func BenchmarkServeArtifact(b *testing.B) {
	const size = 64 << 20
	dir := b.TempDir()
	src := filepath.Join(dir, "image")
	content := pattern("benchmark", size)
	if err := os.WriteFile(src, content, 0o644); err != nil {
		b.Fatal(err)
	}
	cache, err := artifact.New(filepath.Join(dir, "cache"), artifact.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cache.Ensure(context.Background(), artifact.Source{URL: "file://" + src}); err != nil {
		b.Fatal(err)
	}
	backend := newFakeBackend()
	tok, _ := NewToken()
	backend.add(tok, &Machine{ID: "bench", Vars: machineVars(render.KindImage, []byte("k"), []byte("i"), content)})
	h, err := New(Config{Backend: backend, Artifacts: cache})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := srv.Client()
	u := srv.URL + "/boot/" + tok + "/image"

	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err != nil || n != size {
			b.Fatalf("read %d bytes: %v", n, err)
		}
		backend.reset()
	}
}
