package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ptftp "github.com/pin/tftp/v3"
)

// failAfter bounds every wait in these tests; it is a failure deadline, never
// a synchronisation delay.
const failAfter = 20 * time.Second

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)}).Read(b)
	return b
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// recorder is an Observer that tests can wait on.
type recorder struct {
	mu     sync.Mutex
	events []Event
	ch     chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1<<16)} }

func (r *recorder) Observe(ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

// wait blocks until n more events have been observed and returns all events.
func (r *recorder) wait(t testing.TB, n int) []Event {
	t.Helper()
	deadline := time.After(failAfter)
	for range n {
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %d events", n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

type testServer struct {
	*Server
	addr   string
	root   string
	rec    *recorder
	conn   net.PacketConn
	cancel context.CancelFunc
	errc   chan error
}

// startServer serves root (a temp dir if cfg.Root is empty) on 127.0.0.1:0.
func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	if cfg.Observer == nil {
		cfg.Observer = rec
	}
	s, err := New(conn, cfg)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: s, addr: conn.LocalAddr().String(), root: cfg.Root, rec: rec, conn: conn, cancel: cancel, errc: make(chan error, 1)}
	go func() { ts.errc <- s.Serve(ctx) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop cancels Serve and returns its result (once; later calls return nil).
func (ts *testServer) stop(t testing.TB) error {
	t.Helper()
	ts.cancel()
	select {
	case err, ok := <-ts.errc:
		if ok {
			close(ts.errc)
		}
		return err
	case <-time.After(failAfter):
		t.Fatal("Serve did not return after cancel")
		return nil
	}
}

type fetchOpts struct {
	blksize int
	tsize   bool
	mode    string
}

// fetch downloads name with pin/tftp's client. size is the tsize from the
// OACK (-1 if none).
func fetch(addr, name string, o fetchOpts) (data []byte, size int64, err error) {
	c, err := ptftp.NewClient(addr)
	if err != nil {
		return nil, -1, err
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(3)
	if o.blksize > 0 {
		c.SetBlockSize(o.blksize)
	}
	c.RequestTSize(o.tsize)
	mode := o.mode
	if mode == "" {
		mode = "octet"
	}
	wt, err := c.Receive(name, mode)
	if err != nil {
		return nil, -1, err
	}
	size = -1
	if n, ok := wt.(ptftp.IncomingTransfer).Size(); ok {
		size = n
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, size, err
	}
	return buf.Bytes(), size, nil
}

// rrq builds a raw read request; opts are name, value pairs.
func rrq(name, mode string, opts ...string) []byte {
	b := []byte{0, opRRQ}
	b = append(b, name...)
	b = append(b, 0)
	b = append(b, mode...)
	b = append(b, 0)
	for _, o := range opts {
		b = append(b, o...)
		b = append(b, 0)
	}
	return b
}

// rawConn is a bare UDP client for protocol-level assertions.
type rawConn struct {
	t    testing.TB
	conn *net.UDPConn
}

func dialRaw(t testing.TB) *rawConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, conn: c}
}

func (r *rawConn) send(to string, pkt []byte) {
	r.t.Helper()
	a, err := net.ResolveUDPAddr("udp4", to)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.conn.WriteToUDP(pkt, a); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) recv() ([]byte, *net.UDPAddr) {
	r.t.Helper()
	buf := make([]byte, 70000)
	r.conn.SetReadDeadline(time.Now().Add(failAfter))
	n, from, err := r.conn.ReadFromUDP(buf)
	if err != nil {
		r.t.Fatalf("raw recv: %v", err)
	}
	return buf[:n], from
}

// errorPacket decodes an ERROR packet or fails.
func errorPacket(t testing.TB, p []byte) (ErrorCode, string) {
	t.Helper()
	if len(p) < 5 || binary.BigEndian.Uint16(p) != opERROR {
		t.Fatalf("want ERROR packet, got % x", p[:min(len(p), 32)])
	}
	return ErrorCode(binary.BigEndian.Uint16(p[2:])), strings.TrimRight(string(p[4:]), "\x00")
}

// oackOptions decodes an OACK packet or fails.
func oackOptions(t testing.TB, p []byte) map[string]string {
	t.Helper()
	if len(p) < 2 || binary.BigEndian.Uint16(p) != 6 {
		t.Fatalf("want OACK, got % x", p[:min(len(p), 32)])
	}
	f := strings.Split(strings.TrimSuffix(string(p[2:]), "\x00"), "\x00")
	m := map[string]string{}
	for i := 0; i+1 < len(f); i += 2 {
		m[f[i]] = f[i+1]
	}
	return m
}

func ack(block uint16) []byte { return []byte{0, 4, byte(block >> 8), byte(block)} }

func codeOf(err error) string {
	if err == nil {
		return "<nil>"
	}
	return fmt.Sprint(err)
}
