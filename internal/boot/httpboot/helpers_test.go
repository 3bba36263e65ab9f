package httpboot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/artifact"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
)

// fakeBackend keys machines by TokenHash. Unless revoke is set, it keeps
// returning a provisioned machine (with Provisioned=true), so tests prove
// the handler itself refuses used tokens.
type fakeBackend struct {
	mu       sync.Mutex
	byHash   map[[32]byte]*Machine
	expired  map[[32]byte]bool
	events   map[string][]Event
	revoke   bool  // MachineByToken returns ErrInvalidToken once provisioned
	fail     error // returned by MachineByToken when set
	lookups  atomic.Int64
	provided atomic.Int64 // MarkProvisioned calls
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{byHash: map[[32]byte]*Machine{}, expired: map[[32]byte]bool{}, events: map[string][]Event{}}
}

func (b *fakeBackend) add(token string, m *Machine) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.byHash[TokenHash(token)] = m
}

func (b *fakeBackend) expire(token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expired[TokenHash(token)] = true
}

func (b *fakeBackend) MachineByToken(_ context.Context, token string) (*Machine, error) {
	b.lookups.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	h := TokenHash(token)
	m, ok := b.byHash[h]
	if !ok || b.expired[h] || (b.revoke && m.Provisioned) {
		return nil, ErrInvalidToken
	}
	cp := *m
	return &cp, nil
}

func (b *fakeBackend) Record(_ context.Context, id string, e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events[id] = append(b.events[id], e)
}

func (b *fakeBackend) MarkProvisioned(_ context.Context, id string) error {
	b.provided.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.byHash {
		if m.ID == id {
			if m.Provisioned {
				return ErrInvalidToken
			}
			m.Provisioned = true
			return nil
		}
	}
	return ErrInvalidToken
}

func (b *fakeBackend) eventsOf(id string) []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Event(nil), b.events[id]...)
}

func (b *fakeBackend) stages(id string) []string {
	var s []string
	for _, e := range b.eventsOf(id) {
		s = append(s, e.Stage)
	}
	return s
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fixture is a handler over a real artifact cache with one provisioning
// machine ("m1", token tok) and a binaries directory.
type fixture struct {
	h        *Handler
	backend  *fakeBackend
	cache    *artifact.Cache
	token    string
	kernel   []byte
	initrd   []byte
	image    []byte
	logs     *syncBuffer
	binaries string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func pattern(seed string, n int) []byte {
	out := make([]byte, 0, n)
	for i := 0; len(out) < n; i++ {
		out = append(out, seed...)
		out = append(out, byte(i), byte(i>>8))
	}
	return out[:n]
}

func machineVars(kind render.Kind, kernel, initrd, image []byte) render.MachineVars {
	return render.MachineVars{
		MachineID:         "m1",
		Hostname:          "node1",
		MACs:              []string{"52:54:00:00:00:01"},
		Network:           render.Network{Address: "192.0.2.11/24", Gateway: "192.0.2.1"},
		SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3Nza test"},
		RootDevice:        "/dev/sda",
		Kind:              kind,
		Image:             render.Image{KernelSHA256: sum(kernel), InitrdSHA256: sum(initrd), ImageSHA256: sum(image)},
	}
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{
		backend: newFakeBackend(),
		kernel:  pattern("kernel", 300_000),
		initrd:  pattern("initrd", 1_000_003),
		image:   pattern("image", 2_000_000),
		logs:    &syncBuffer{},
	}
	var err error
	f.cache, err = artifact.New(filepath.Join(dir, "cache"), artifact.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range [][]byte{f.kernel, f.initrd, f.image} {
		p := filepath.Join(dir, []string{"k", "i", "img"}[i])
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := f.cache.Ensure(context.Background(), artifact.Source{URL: "file://" + p, SHA256: sum(b)}); err != nil {
			t.Fatal(err)
		}
	}
	f.binaries = filepath.Join(dir, "binaries")
	if err := os.MkdirAll(f.binaries, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.binaries, "ipxe.efi"), []byte("MZ-fake-ipxe-efi"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.token, err = NewToken()
	if err != nil {
		t.Fatal(err)
	}
	f.backend.add(f.token, &Machine{ID: "m1", Vars: machineVars(render.KindCloudInit, f.kernel, f.initrd, f.image)})
	f.h, err = New(Config{
		Backend:     f.backend,
		Artifacts:   f.cache,
		BaseURL:     "http://boot.test:8080",
		BinariesDir: f.binaries,
		Logger:      slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.h.Close() })
	return f
}

// do runs one request through the handler.
func (f *fixture) do(method, path string, body io.Reader, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://boot.test:8080"+path, body)
	req.RemoteAddr = "192.0.2.11:40000"
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func (f *fixture) path(token, rest string) string { return "/boot/" + token + "/" + rest }

// tokenRoutes are every per-token route with a valid request shape.
var tokenRoutes = []struct {
	method, rest, body string
}{
	{"GET", "script.ipxe", ""},
	{"HEAD", "script.ipxe", ""},
	{"GET", "kernel", ""},
	{"HEAD", "kernel", ""},
	{"GET", "initrd", ""},
	{"GET", "image", ""},
	{"GET", "config/user-data", ""},
	{"GET", "config/meta-data", ""},
	{"GET", "config/network-config", ""},
	{"GET", "progress/booting", ""},
	{"POST", "events", `{"stage":"installing","message":"hi"}`},
	{"POST", "provisioned", ""},
}

func bodyReader(s string) io.Reader {
	if s == "" {
		return nil
	}
	return strings.NewReader(s)
}
