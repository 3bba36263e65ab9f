package machinesim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/artifact"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/dhcp"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/httpboot"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
)

// Everything runs on 127.0.0.0/8. Addresses in configs (192.0.2.x) are
// only data the "installed system" would configure.

const ioTimeout = 10 * time.Second

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func pattern(seed string, n int) []byte {
	out := make([]byte, 0, n)
	for i := 0; len(out) < n; i++ {
		out = append(out, seed...)
		out = append(out, byte(i), byte(i>>8))
	}
	return out[:n]
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
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

// labMachine is one registered machine of the lab.
type labMachine struct {
	id          string
	mac         net.HardwareAddr
	ip          netip.Addr // DHCP reservation
	token       string
	action      httpboot.Action
	vars        render.MachineVars
	provisioned bool
	// scriptToken, when set, is put in the DHCP script URL instead of the
	// real token (a machine pointed at a wrong URL).
	scriptToken string
	allowed     []netip.Prefix
}

// lab is the boot service the provider would run: a real dhcp.Server and
// httpboot.Handler on loopback over one in-memory backend, and a temporary
// artifact cache.
type lab struct {
	t        *testing.T
	base     string
	dhcpAddr *net.UDPAddr
	cache    *artifact.Cache
	logs     *syncBuffer // boot service logs
	mlogs    *syncBuffer // machine logs (see logger)

	kernel, initrd, image []byte

	mu       sync.Mutex
	machines map[string]*labMachine // by id
	events   map[string][]httpboot.Event
	lookups  []dhcp.LookupRequest
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{
		t:        t,
		logs:     &syncBuffer{},
		mlogs:    &syncBuffer{},
		kernel:   pattern("kernel", 200_003),
		initrd:   pattern("initrd", 500_001),
		image:    pattern("image", 1_000_000),
		machines: map[string]*labMachine{},
		events:   map[string][]httpboot.Event{},
	}
	slogger := slog.New(slog.NewTextHandler(l.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	dir := t.TempDir()
	var err error
	l.cache, err = artifact.New(filepath.Join(dir, "cache"), artifact.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range [][]byte{l.kernel, l.initrd, l.image} {
		p := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := l.cache.Ensure(t.Context(), artifact.Source{URL: "file://" + p, SHA256: sum(b)}); err != nil {
			t.Fatal(err)
		}
	}

	// HTTP: the handler needs the base URL, the base URL the listener.
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	l.base = srv.URL
	hb, err := httpboot.New(httpboot.Config{Backend: l, Artifacts: l.cache, BaseURL: l.base, Logger: slogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hb.Close() })
	h = hb

	// DHCP on 127.0.0.1, one subnet: 127.0.0.0/8.
	dh, err := dhcp.NewHandler(dhcp.Config{
		ServerIP: netip.MustParseAddr("127.0.0.1"),
		Subnets: []dhcp.Subnet{{
			Name:       "lo",
			Prefix:     netip.MustParsePrefix("127.0.0.0/8"),
			RangeStart: netip.MustParseAddr("127.0.0.100"),
			RangeEnd:   netip.MustParseAddr("127.0.0.199"),
			Routers:    []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			DNS:        []netip.Addr{netip.MustParseAddr("127.0.0.53")},
			DomainName: "lab.test",
		}},
		Logger: slogger,
	}, l, &dhcp.MemoryLeaseStore{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := dhcp.NewServer(dhcp.ServerConfig{Conn: conn, Handler: dh, ReplyToSender: true, Workers: 2, Logger: slogger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ds.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dhcp Serve: %v", err)
		}
	})
	l.dhcpAddr = conn.LocalAddr().(*net.UDPAddr)
	return l
}

// canBind reports whether this host can use a as a local address (Linux:
// all of 127.0.0.0/8).
func canBind(a netip.Addr) bool {
	c, err := net.ListenPacket("udp4", netip.AddrPortFrom(a, 0).String())
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// vars are the rendering inputs of a lab machine.
func (l *lab) vars(id string, mac net.HardwareAddr, kind render.Kind) render.MachineVars {
	return render.MachineVars{
		MachineID:         id,
		Hostname:          id + ".example.com",
		MACs:              []string{mac.String()},
		Network:           render.Network{Address: "192.0.2.17/24", Gateway: "192.0.2.1", DNS: []string{"192.0.2.53"}, SearchDomains: []string{"example.com"}},
		SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbNbLvPpWJbC6hD7yD5n0dkS9eK1tV3k0S3dp3L0pXW admin@example.com"},
		RootDevice:        "/dev/sda",
		Kind:              kind,
		Image:             render.Image{KernelSHA256: sum(l.kernel), InitrdSHA256: sum(l.initrd), ImageSHA256: sum(l.image)},
	}
}

// provision registers (or re-provisions) a machine to install kind with a
// fresh token. The token is bound to the reserved address when this host
// can dial from it.
func (l *lab) provision(id string, mac net.HardwareAddr, ip netip.Addr, kind render.Kind) *labMachine {
	l.t.Helper()
	tok, err := httpboot.NewToken()
	if err != nil {
		l.t.Fatal(err)
	}
	lm := &labMachine{id: id, mac: mac, ip: ip, token: tok, vars: l.vars(id, mac, kind)}
	if ip.IsValid() && canBind(ip) {
		lm.allowed = []netip.Prefix{netip.PrefixFrom(ip, 32)}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.machines[id] = lm
	return lm
}

// deprovision points a machine at the wipe script with a fresh token.
func (l *lab) deprovision(id string) {
	l.t.Helper()
	tok, err := httpboot.NewToken()
	if err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lm := l.machines[id]
	lm.token, lm.action, lm.provisioned = tok, httpboot.ActionWipe, false
}

func (l *lab) machine(id string) labMachine {
	l.mu.Lock()
	defer l.mu.Unlock()
	return *l.machines[id]
}

func (l *lab) stages(id string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events[id] {
		out = append(out, e.Stage)
	}
	return out
}

func (l *lab) eventList(id string) []httpboot.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]httpboot.Event(nil), l.events[id]...)
}

// secrets are every token handed out, for leak checks.
func (l *lab) secrets() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.machines {
		out = append(out, m.token)
	}
	return out
}

// logger is a debug logger for machines, into l.mlogs.
func (l *lab) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l.mlogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// noLeaks fails if a token shows up in the machine logs or in s.
func (l *lab) noLeaks(t *testing.T, texts ...string) {
	t.Helper()
	all := append(texts, l.mlogs.String())
	for _, tok := range l.secrets() {
		for _, s := range all {
			if strings.Contains(s, tok) {
				t.Fatalf("token leaked into %q", s)
			}
		}
	}
}

// dhcp.Backend ------------------------------------------------------------------

func (l *lab) Lookup(_ context.Context, req dhcp.LookupRequest) (*dhcp.Machine, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lookups = append(l.lookups, req)
	for _, m := range l.machines {
		if bytes.Equal(m.mac, req.MAC) {
			out := &dhcp.Machine{MAC: m.mac, IP: m.ip, Hostname: m.id, Netboot: true}
			switch {
			case m.provisioned:
				out.ScriptURL = httpboot.ByMACScriptURL(l.base, m.mac.String())
			case m.scriptToken != "":
				out.ScriptURL = httpboot.ScriptURL(l.base, m.scriptToken)
			default:
				out.ScriptURL = httpboot.ScriptURL(l.base, m.token)
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", req.MAC, dhcp.ErrUnknownMachine)
}

func (l *lab) RecordDiscovery(context.Context, dhcp.Discovery) error { return nil }

func (l *lab) ReservedBy(_ context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.machines {
		if m.ip == ip {
			return m.mac, nil
		}
	}
	return nil, nil
}

func (l *lab) lastLookup() dhcp.LookupRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lookups[len(l.lookups)-1]
}

// httpboot.Backend --------------------------------------------------------------

func (l *lab) MachineByToken(_ context.Context, token string) (*httpboot.Machine, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.machines {
		if httpboot.TokensEqual(m.token, token) && !m.provisioned {
			return &httpboot.Machine{ID: m.id, Action: m.action, Vars: m.vars, AllowedSources: m.allowed}, nil
		}
	}
	return nil, httpboot.ErrInvalidToken
}

func (l *lab) Record(_ context.Context, id string, e httpboot.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events[id] = append(l.events[id], e)
}

func (l *lab) MarkProvisioned(_ context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.machines[id]
	if m == nil || m.provisioned {
		return httpboot.ErrInvalidToken
	}
	m.provisioned = true
	return nil
}

// rendered is what the boot service serves a machine for config name.
func (l *lab) rendered(t *testing.T, id, name string) []byte {
	t.Helper()
	lm := l.machine(id)
	v := lm.vars
	v.Token, v.BaseURL = lm.token, l.base
	b, err := render.Config(v, name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func asStageError(t *testing.T, err error) *StageError {
	t.Helper()
	var se *StageError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *StageError", err, err)
	}
	return se
}
