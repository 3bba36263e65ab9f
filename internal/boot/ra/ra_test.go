package ra

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// goldenHex reads a testdata file of hex bytes separated by white space.
func goldenHex(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildRAGolden(t *testing.T) {
	t.Parallel()
	mac, _ := net.ParseMAC("52:54:00:aa:bb:01")
	for _, c := range []struct {
		golden string
		mac    net.HardwareAddr
	}{{"ra-with-sllao.golden", mac}, {"ra-no-sllao.golden", nil}} {
		got, want := buildRA(c.mac), goldenHex(t, c.golden)
		if hex.EncodeToString(got) != hex.EncodeToString(want) {
			t.Errorf("%s:\n got % x\nwant % x", c.golden, got, want)
		}
	}
	ra := buildRA(mac)
	// The promises the package makes: no default router, no DHCPv6, no
	// prefix information option (type 3) anywhere.
	if ra[0] != 134 || ra[5]&0xc0 != 0 || ra[6] != 0 || ra[7] != 0 {
		t.Fatalf("header % x", ra[:8])
	}
	for opts := ra[16:]; len(opts) > 0; opts = opts[int(opts[1])*8:] {
		if opts[0] == 3 {
			t.Fatal("prefix information option present")
		}
	}
}

var linkLocal = netip.MustParseAddr("fe80::5054:ff:feaa:bb01")

func rs(opts ...byte) []byte { return append([]byte{133, 0, 0, 0, 0, 0, 0, 0}, opts...) }

func TestValidRS(t *testing.T) {
	t.Parallel()
	sllao := []byte{1, 1, 0x52, 0x54, 0, 0xaa, 0xbb, 1}
	for _, c := range []struct {
		name string
		p    Packet
		want bool
	}{
		{"plain", Packet{Data: rs(), Src: linkLocal, HopLimit: 255}, true},
		{"with sllao", Packet{Data: rs(sllao...), Src: linkLocal, HopLimit: 255}, true},
		{"hop limit unknown", Packet{Data: rs(), Src: linkLocal, HopLimit: -1}, true},
		{"forwarded (hop limit 64)", Packet{Data: rs(), Src: linkLocal, HopLimit: 64}, false},
		{"code 1", Packet{Data: []byte{133, 1, 0, 0, 0, 0, 0, 0}, Src: linkLocal, HopLimit: 255}, false},
		{"truncated", Packet{Data: []byte{133, 0, 0, 0}, Src: linkLocal, HopLimit: 255}, false},
		{"not an RS", Packet{Data: []byte{134, 0, 0, 0, 0, 0, 0, 0}, Src: linkLocal, HopLimit: 255}, false},
		{"zero-length option", Packet{Data: rs(1, 0, 0, 0, 0, 0, 0, 0), Src: linkLocal, HopLimit: 255}, false},
		{"option past the end", Packet{Data: rs(1, 2, 0, 0, 0, 0, 0, 0), Src: linkLocal, HopLimit: 255}, false},
		{"sllao from ::", Packet{Data: rs(sllao...), Src: netip.IPv6Unspecified(), HopLimit: 255}, false},
		{"no sllao from ::", Packet{Data: rs(), Src: netip.IPv6Unspecified(), HopLimit: 255}, true},
	} {
		if got := validRS(c.p); got != c.want {
			t.Errorf("%s: validRS = %v, want %v", c.name, got, c.want)
		}
	}
}

// fakeConn feeds packets and records writes.
type fakeConn struct {
	in       chan Packet
	mu       sync.Mutex
	writes   [][]byte
	writeErr error
	closed   chan struct{}
	once     sync.Once
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan Packet, 16), closed: make(chan struct{})}
}

func (c *fakeConn) Read() (Packet, error) {
	select {
	case p := <-c.in:
		return p, nil
	case <-c.closed:
		return Packet{}, net.ErrClosed
	}
}

func (c *fakeConn) WriteMulticast(msg []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writeErr != nil {
		return c.writeErr
	}
	c.writes = append(c.writes, msg)
	return nil
}

func (c *fakeConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

func (c *fakeConn) written() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes)
}

func TestHandleAnswersAndRateLimits(t *testing.T) {
	t.Parallel()
	c := newFakeConn()
	mac, _ := net.ParseMAC("52:54:00:aa:bb:01")
	r, err := New(Config{Conn: c, MAC: mac, IfIndex: 3, MinInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	r.handle(Packet{Data: rs(), Src: linkLocal, HopLimit: 255, IfIndex: 3}, t0)
	r.handle(Packet{Data: rs(), Src: linkLocal, HopLimit: 255, IfIndex: 3}, t0.Add(500*time.Millisecond)) // covered
	r.handle(Packet{Data: rs(), Src: linkLocal, HopLimit: 255, IfIndex: 4}, t0.Add(2*time.Second))        // other interface
	r.handle(Packet{Data: rs(), Src: linkLocal, HopLimit: 64, IfIndex: 3}, t0.Add(2*time.Second))         // invalid
	r.handle(Packet{Data: rs(), Src: linkLocal, HopLimit: 255, IfIndex: 3}, t0.Add(2*time.Second))
	if got := c.written(); got != 2 || r.Answered() != 2 {
		t.Fatalf("answers = %d (Answered %d), want 2", got, r.Answered())
	}
	if hex.EncodeToString(c.writes[0]) != hex.EncodeToString(buildRA(mac)) {
		t.Fatalf("sent % x", c.writes[0])
	}
	c.writeErr = errors.New("no link-local address yet")
	r.handle(Packet{Data: rs(), Src: linkLocal, HopLimit: 255, IfIndex: 3}, t0.Add(5*time.Second))
	if r.Answered() != 2 {
		t.Fatal("a failed send was counted")
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil {
		t.Fatal("no Conn accepted")
	}
	if _, err := New(Config{Conn: newFakeConn(), MAC: net.HardwareAddr{1, 2, 3}}); err == nil {
		t.Fatal("short MAC accepted")
	}
}

func TestServeStopsWithContext(t *testing.T) {
	t.Parallel()
	c := newFakeConn()
	r, _ := New(Config{Conn: c})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	c.in <- Packet{Data: rs(), Src: linkLocal, HopLimit: 255}
	deadline := time.Now().Add(5 * time.Second)
	for c.written() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.written() != 1 {
		t.Fatal("no answer")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not stop")
	}
}

func TestServeReportsReadErrors(t *testing.T) {
	t.Parallel()
	c := newFakeConn()
	r, _ := New(Config{Conn: c})
	_ = c.Close()
	if err := r.Serve(context.Background()); err == nil {
		t.Fatal("a read error before the context ended was swallowed")
	}
}
