package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ptftp "github.com/pin/tftp/v3"
	"golang.org/x/sync/errgroup"
)

func TestTransfersBlockSizes(t *testing.T) {
	ts := startServer(t, Config{AllowList: []string{"*.bin"}, MaxBlockSize: MaxBlockSize})
	big := randomBytes(1<<20, 1)
	writeFile(t, ts.root, "big.bin", big)
	writeFile(t, ts.root, "empty.bin", nil)
	writeFile(t, ts.root, "one.bin", []byte{42})

	for _, blk := range []int{0, 512, 1024, 1428, 1468, 8192, 65464} {
		eff := blk
		if eff == 0 {
			eff = 512
		}
		exact := randomBytes(3*eff, uint64(blk))
		name := fmt.Sprintf("exact-%d.bin", eff)
		writeFile(t, ts.root, name, exact)
		files := map[string][]byte{"big.bin": big, "empty.bin": {}, "one.bin": {42}, name: exact}
		for fname, want := range files {
			for _, tsize := range []bool{false, true} {
				t.Run(fmt.Sprintf("blksize=%d/%s/tsize=%v", blk, fname, tsize), func(t *testing.T) {
					got, size, err := fetch(ts.addr, fname, fetchOpts{blksize: blk, tsize: tsize})
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("content mismatch: got %d bytes, want %d", len(got), len(want))
					}
					// pin/tftp cannot send tsize=0 (it drops the option when
					// the value is "0"), so an empty file reports no size.
					if tsize && len(want) > 0 && size != int64(len(want)) {
						t.Fatalf("tsize = %d, want %d", size, len(want))
					}
				})
			}
		}
	}
}

// TestBlockSizeNegotiation checks the OACK and DATA sizes on the wire.
func TestBlockSizeNegotiation(t *testing.T) {
	ts := startServer(t, Config{MaxBlockSize: 1468})
	data := randomBytes(100000, 2)
	writeFile(t, ts.root, "ipxe.efi", data)

	cases := []struct {
		ask      string
		wantOACK string // "" = no blksize in OACK
		wantData int
	}{
		{"65464", "1468", 1468},
		{"1468", "1468", 1468},
		{"1024", "1024", 1024},
		{"512", "512", 512},
		{"100", "", 512}, // below 512: ignored, default used
		{"junk", "", 512},
	}
	for _, c := range cases {
		t.Run(c.ask, func(t *testing.T) {
			rc := dialRaw(t)
			rc.send(ts.addr, rrq("ipxe.efi", "octet", "blksize", c.ask, "tsize", "0"))
			p, from := rc.recv()
			opts := oackOptions(t, p)
			if opts["blksize"] != c.wantOACK {
				t.Fatalf("OACK blksize = %q, want %q (opts %v)", opts["blksize"], c.wantOACK, opts)
			}
			if opts["tsize"] != fmt.Sprint(len(data)) {
				t.Fatalf("OACK tsize = %q, want %d", opts["tsize"], len(data))
			}
			if from.String() == ts.addr {
				t.Fatal("transfer should use its own port (TID)")
			}
			rc.send(from.String(), ack(0))
			p, _ = rc.recv()
			if binary.BigEndian.Uint16(p) != 3 || binary.BigEndian.Uint16(p[2:]) != 1 {
				t.Fatalf("want DATA block 1, got % x", p[:4])
			}
			if len(p)-4 != c.wantData {
				t.Fatalf("DATA payload = %d, want %d", len(p)-4, c.wantData)
			}
			if !bytes.Equal(p[4:], data[:c.wantData]) {
				t.Fatal("DATA payload mismatch")
			}
			// Abort politely.
			rc.send(from.String(), []byte{0, opERROR, 0, 0, 'b', 'y', 'e', 0})
		})
	}
	// Without options there is no OACK: DATA block 1 comes straight away.
	rc := dialRaw(t)
	rc.send(ts.addr, rrq("ipxe.efi", "OCTET"))
	p, from := rc.recv()
	if binary.BigEndian.Uint16(p) != 3 || len(p) != 516 {
		t.Fatalf("want 512-byte DATA, got opcode %d len %d", binary.BigEndian.Uint16(p), len(p))
	}
	rc.send(from.String(), []byte{0, opERROR, 0, 0, 0})
}

func TestDefaultMaxBlockSize(t *testing.T) {
	wild, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	if got := blockSizeForAddr(wild.LocalAddr()); got != DefaultMaxBlockSize {
		t.Fatalf("wildcard: %d, want %d", got, DefaultMaxBlockSize)
	}
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	want := DefaultMaxBlockSize
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 {
			want = min(max(ifc.MTU-32, 512), MaxBlockSize)
		}
	}
	if got := blockSizeForAddr(lo); got != want {
		t.Fatalf("loopback: %d, want %d", got, want)
	}
}

func TestConcurrentFetches(t *testing.T) {
	ts := startServer(t, Config{})
	data := randomBytes(1<<20, 3)
	writeFile(t, ts.root, "ipxe.efi", data)

	const n = 50
	var g errgroup.Group
	for i := range n {
		g.Go(func() error {
			got, size, err := fetch(ts.addr, "ipxe.efi", fetchOpts{blksize: 1468, tsize: true})
			if err != nil {
				return fmt.Errorf("fetch %d: %w", i, err)
			}
			if size != int64(len(data)) || !bytes.Equal(got, data) {
				return fmt.Errorf("fetch %d: content or tsize mismatch (%d bytes, tsize %d)", i, len(got), size)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	evs := ts.rec.wait(t, n)
	for _, ev := range evs {
		if ev.Err != nil || ev.Bytes != int64(len(data)) || ev.Size != int64(len(data)) || ev.File != "ipxe.efi" {
			t.Fatalf("bad event %+v", ev)
		}
	}
	st := ts.Stats()
	if st.Transfers != n || st.Bytes != n*uint64(len(data)) || st.Errors != 0 || st.Active != 0 {
		t.Fatalf("stats %+v", st)
	}
	// All 50 transfers shared one cached descriptor.
	ts.files.mu.Lock()
	cached := len(ts.files.m)
	ts.files.mu.Unlock()
	if cached != 1 {
		t.Fatalf("%d cached files, want 1", cached)
	}
}

func TestRefusals(t *testing.T) {
	outside := t.TempDir()
	secret := writeFile(t, outside, "passwd", []byte("root:x:0:0"))
	root := t.TempDir()
	writeFile(t, root, "ipxe.efi", []byte("ipxe"))
	writeFile(t, root, "secret.txt", []byte("not allow-listed"))
	writeFile(t, root, "boot/loader.efi", []byte("loader"))
	must(t, os.Symlink(secret, filepath.Join(root, "escape-abs.efi")))
	must(t, os.Symlink("../"+filepath.Base(outside)+"/passwd", filepath.Join(root, "escape-rel.efi")))
	must(t, os.Symlink(outside, filepath.Join(root, "escdir")))
	must(t, os.Symlink("ipxe.efi", filepath.Join(root, "inside.efi")))
	must(t, os.Mkdir(filepath.Join(root, "dir.efi"), 0o755))
	// escape-rel.efi only escapes if outside is root's sibling: make it so.
	sib := filepath.Join(filepath.Dir(root), filepath.Base(outside))
	if _, err := os.Stat(sib); err != nil {
		t.Fatalf("temp dirs are not siblings: %v", err)
	}

	allow := []string{"ipxe.efi", "inside.efi", "escape-abs.efi", "escape-rel.efi", "escdir/passwd",
		"dir.efi", "snp.efi", "boot/loader.efi", "etc/passwd", "passwd"}
	ts := startServer(t, Config{Root: root, AllowList: allow})

	refused := []struct {
		name string
		code ErrorCode
	}{
		{"../etc/passwd", CodeAccessViolation},
		{"/etc/passwd", CodeFileNotFound}, // normalised to etc/passwd (allow-listed here), absent from root
		{"/etc/shadow", CodeAccessViolation},
		{`..\..\x`, CodeAccessViolation},
		{`..\` + filepath.Base(outside) + `\passwd`, CodeAccessViolation},
		{"ipxe.efi/../../etc/passwd", CodeAccessViolation},
		{"ipxe.efi/..", CodeAccessViolation},
		{"escape-abs.efi", CodeAccessViolation},
		{"escape-rel.efi", CodeAccessViolation},
		{"escdir/passwd", CodeAccessViolation},
		{"secret.txt", CodeAccessViolation},
		{"dir.efi", CodeAccessViolation},
		{"snp.efi", CodeFileNotFound},
		{"ipxe\x01.efi", CodeAccessViolation},
		{secret, CodeAccessViolation},
	}
	for _, c := range refused {
		t.Run("refuse/"+c.name, func(t *testing.T) {
			_, _, err := fetch(ts.addr, c.name, fetchOpts{tsize: true})
			want := fmt.Sprintf("code: %d,", c.code)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("fetch(%q) error = %s, want %s", c.name, codeOf(err), want)
			}
		})
	}
	evs := ts.rec.wait(t, len(refused))
	for i, ev := range evs {
		var te *Error
		if !errors.As(ev.Err, &te) || te.Code != refused[i].code {
			t.Fatalf("event %d for %q: err %v, want code %d", i, refused[i].name, ev.Err, refused[i].code)
		}
		if ev.Size != -1 || ev.Bytes != 0 || !ev.Peer.Addr().IsLoopback() {
			t.Fatalf("event %+v", ev)
		}
	}
	if !errors.Is(evs[0].Err, ErrAccessViolation) || !errors.Is(evs[1].Err, ErrFileNotFound) {
		t.Fatalf("errors.Is on sentinels failed: %v, %v", evs[0].Err, evs[1].Err)
	}

	accepted := map[string]string{
		"ipxe.efi": "ipxe", "/ipxe.efi": "ipxe", `\ipxe.efi`: "ipxe", "//./ipxe.efi": "ipxe",
		"inside.efi": "ipxe", `boot\loader.efi`: "loader", "/boot//loader.efi": "loader",
	}
	for name, want := range accepted {
		t.Run("accept/"+name, func(t *testing.T) {
			got, _, err := fetch(ts.addr, name, fetchOpts{})
			if err != nil || string(got) != want {
				t.Fatalf("fetch(%q) = %q, %v; want %q", name, got, err, want)
			}
		})
	}
	ts.rec.wait(t, len(accepted))
	st := ts.Stats()
	if st.Refused != uint64(len(refused)) || st.Transfers != uint64(len(accepted)) || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWriteRefused(t *testing.T) {
	ts := startServer(t, Config{})
	p := writeFile(t, ts.root, "ipxe.efi", []byte("original"))
	for _, name := range []string{"ipxe.efi", "snp.efi", "new.bin", "../x"} {
		c, err := ptftp.NewClient(ts.addr)
		must(t, err)
		c.SetTimeout(2 * time.Second)
		_, err = c.Send(name, "octet")
		if err == nil || !strings.Contains(err.Error(), "code=2,") {
			t.Fatalf("Send(%q) error = %s, want access violation", name, codeOf(err))
		}
	}
	evs := ts.rec.wait(t, 4)
	for _, ev := range evs {
		if !errors.Is(ev.Err, ErrAccessViolation) {
			t.Fatalf("event %+v", ev)
		}
	}
	if b, _ := os.ReadFile(p); string(b) != "original" {
		t.Fatalf("file modified: %q", b)
	}
	for _, n := range []string{"snp.efi", "new.bin"} {
		if _, err := os.Stat(filepath.Join(ts.root, n)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s created: %v", n, err)
		}
	}
}

func TestMalformedRequests(t *testing.T) {
	ts := startServer(t, Config{})
	writeFile(t, ts.root, "ipxe.efi", []byte("ipxe"))
	cases := []struct {
		name string
		pkt  []byte
		code ErrorCode
	}{
		{"mail mode", rrq("ipxe.efi", "mail"), CodeIllegalOperation},
		{"no mode", []byte("\x00\x01ipxe.efi"), CodeIllegalOperation},
		{"unterminated mode", []byte("\x00\x01ipxe.efi\x00octet"), CodeIllegalOperation},
		{"empty name", rrq("", "octet"), CodeAccessViolation},
		{"slash only", rrq("/", "octet"), CodeAccessViolation},
		{"raw WRQ", append([]byte{0, opWRQ}, "ipxe.efi\x00octet\x00"...), CodeAccessViolation},
		{"long name", rrq(strings.Repeat("a", 300), "octet"), CodeAccessViolation},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := dialRaw(t)
			rc.send(ts.addr, c.pkt)
			p, from := rc.recv()
			code, msg := errorPacket(t, p)
			if code != c.code {
				t.Fatalf("code %d (%s), want %d", code, msg, c.code)
			}
			if from.String() != ts.addr {
				t.Fatalf("refusal from %s, want listening socket %s", from, ts.addr)
			}
		})
	}
	// Stray packets (ACK, DATA, garbage) to the listening port are ignored
	// and do not disturb later requests.
	rc := dialRaw(t)
	rc.send(ts.addr, ack(1))
	rc.send(ts.addr, []byte{0, 3, 0, 1, 'x'})
	rc.send(ts.addr, []byte{9})
	rc.send(ts.addr, []byte{0, 9, 1, 2, 3})
	got, _, err := fetch(ts.addr, "ipxe.efi", fetchOpts{})
	if err != nil || string(got) != "ipxe" {
		t.Fatalf("fetch after strays: %q, %v", got, err)
	}
}

func TestNetascii(t *testing.T) {
	ts := startServer(t, Config{AllowList: []string{"boot.cfg"}})
	text := "line one\nline two\r\nlast\n"
	writeFile(t, ts.root, "boot.cfg", []byte(text))
	// On the wire netascii uses CRLF and there must be no tsize (it would be
	// the file size, not the transfer size).
	rc := dialRaw(t)
	rc.send(ts.addr, rrq("boot.cfg", "netascii", "tsize", "0"))
	p, from := rc.recv()
	if op := binary.BigEndian.Uint16(p); op != 3 {
		t.Fatalf("want DATA straight away (no OACK), got opcode %d", op)
	}
	if want := "line one\r\nline two\r\x00\r\nlast\r\n"; string(p[4:]) != want {
		t.Fatalf("wire data %q, want %q", p[4:], want)
	}
	rc.send(from.String(), ack(1))
	// pin's client converts back.
	got, _, err := fetch(ts.addr, "boot.cfg", fetchOpts{mode: "netascii"})
	if err != nil || string(got) != text {
		t.Fatalf("netascii round trip %q, %v", got, err)
	}
}

func TestObserverEvent(t *testing.T) {
	ts := startServer(t, Config{})
	data := randomBytes(5000, 4)
	writeFile(t, ts.root, "snponly.efi", data)
	if _, _, err := fetch(ts.addr, "/snponly.efi", fetchOpts{blksize: 1024}); err != nil {
		t.Fatal(err)
	}
	ev := ts.rec.wait(t, 1)[0]
	if ev.File != "snponly.efi" || ev.Size != 5000 || ev.Bytes != 5000 || ev.Err != nil || ev.Duration <= 0 {
		t.Fatalf("event %+v", ev)
	}
	if !ev.Peer.Addr().IsLoopback() || ev.Peer.Port() == 0 || !ev.Peer.Addr().Is4() {
		t.Fatalf("peer %v", ev.Peer)
	}
	st := ts.Stats()
	if st != (Stats{Transfers: 1, Bytes: 5000}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestFileReplacedIsServedFresh(t *testing.T) {
	ts := startServer(t, Config{})
	p := writeFile(t, ts.root, "ipxe.efi", []byte("version one"))
	get := func() string {
		t.Helper()
		b, _, err := fetch(ts.addr, "ipxe.efi", fetchOpts{})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := get(); got != "version one" {
		t.Fatal(got)
	}
	// Atomic replace (new inode).
	tmp := writeFile(t, ts.root, "ipxe.efi.tmp", []byte("version two, longer"))
	must(t, os.Rename(tmp, p))
	if got := get(); got != "version two, longer" {
		t.Fatal(got)
	}
	// In-place rewrite with a different size (same inode).
	must(t, os.WriteFile(p, []byte("v3"), 0o644))
	if got := get(); got != "v3" {
		t.Fatal(got)
	}
	// Deleted: file not found, and the stale descriptor is not used.
	must(t, os.Remove(p))
	if _, _, err := fetch(ts.addr, "ipxe.efi", fetchOpts{}); err == nil || !strings.Contains(err.Error(), "code: 1,") {
		t.Fatalf("deleted file: %s", codeOf(err))
	}
}

func TestLifecycle(t *testing.T) {
	t.Run("cancel", func(t *testing.T) {
		ts := startServer(t, Config{})
		if err := ts.stop(t); err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
		must(t, ts.Close())
		must(t, ts.Close())
		if err := ts.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve after Close = %v", err)
		}
		if _, err := ts.conn.WriteTo([]byte{0}, ts.conn.LocalAddr()); err == nil {
			t.Fatal("listening socket still open")
		}
	})
	t.Run("close while serving", func(t *testing.T) {
		ts := startServer(t, Config{})
		writeFile(t, ts.root, "ipxe.efi", []byte("x"))
		if _, _, err := fetch(ts.addr, "ipxe.efi", fetchOpts{}); err != nil { // Serve is running
			t.Fatal(err)
		}
		var g errgroup.Group
		for range 3 {
			g.Go(ts.Close) // concurrent, idempotent
		}
		must(t, g.Wait())
		if err := ts.stop(t); err != nil {
			t.Fatalf("Serve = %v", err)
		}
	})
	t.Run("serve twice", func(t *testing.T) {
		ts := startServer(t, Config{})
		writeFile(t, ts.root, "ipxe.efi", []byte("x"))
		if _, _, err := fetch(ts.addr, "ipxe.efi", fetchOpts{}); err != nil { // first Serve is running
			t.Fatal(err)
		}
		if err := ts.Serve(context.Background()); err == nil || errors.Is(err, ErrServerClosed) {
			t.Fatalf("second Serve = %v", err)
		}
	})
	t.Run("close before serve", func(t *testing.T) {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		must(t, err)
		s, err := New(conn, Config{Root: t.TempDir()})
		must(t, err)
		must(t, s.Close())
		must(t, s.Close())
		if err := s.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve = %v", err)
		}
		if _, err := conn.WriteTo([]byte{0}, conn.LocalAddr()); err == nil {
			t.Fatal("socket not closed")
		}
	})
	t.Run("bad config", func(t *testing.T) {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		must(t, err)
		defer conn.Close()
		for _, cfg := range []Config{
			{},
			{Root: filepath.Join(t.TempDir(), "missing")},
			{Root: t.TempDir(), MaxBlockSize: 100},
			{Root: t.TempDir(), MaxBlockSize: 70000},
			{Root: t.TempDir(), AllowList: []string{"../x"}},
			{Root: t.TempDir(), AllowList: []string{"[bad"}},
			{Root: t.TempDir(), AllowList: []string{"../*"}},
		} {
			if _, err := New(conn, cfg); err == nil {
				t.Errorf("New(%+v) succeeded", cfg)
			}
		}
		if _, err := New(nil, Config{Root: t.TempDir()}); err == nil {
			t.Error("New(nil conn) succeeded")
		}
	})
}

// TestSocketFailure: if the socket dies under the server, Serve returns the
// error instead of spinning.
func TestSocketFailure(t *testing.T) {
	ts := startServer(t, Config{})
	// Make sure Serve is reading before pulling the socket away.
	writeFile(t, ts.root, "ipxe.efi", []byte("x"))
	if _, _, err := fetch(ts.addr, "ipxe.efi", fetchOpts{}); err != nil {
		t.Fatal(err)
	}
	ts.conn.Close()
	// Serve must return on its own; cancelling here would race the failure.
	select {
	case err := <-ts.errc:
		close(ts.errc)
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve = %v, want net.ErrClosed", err)
		}
	case <-time.After(failAfter):
		t.Fatal("Serve did not return after its socket was closed")
	}
}

// blockingWriter signals its first Write and then blocks until released.
type blockingWriter struct {
	first   chan struct{}
	release chan struct{}
	once    sync.Once
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() {
		close(w.first)
		<-w.release
	})
	return w.buf.Write(p)
}

func TestShutdownAbortsTransfer(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprintf("singleport=%v", single), func(t *testing.T) {
			ts := startServer(t, Config{SinglePort: single})
			writeFile(t, ts.root, "ipxe.efi", randomBytes(1<<20, 5))

			c, err := ptftp.NewClient(ts.addr)
			must(t, err)
			c.SetTimeout(5 * time.Second)
			wt, err := c.Receive("ipxe.efi", "octet")
			must(t, err)
			w := &blockingWriter{first: make(chan struct{}), release: make(chan struct{})}
			clientErr := make(chan error, 1)
			go func() {
				_, err := wt.WriteTo(w)
				clientErr <- err
			}()
			<-w.first // block 1 received; the server waits for its ACK
			ts.cancel()
			close(w.release)
			select {
			case err := <-clientErr:
				if err == nil || !strings.Contains(err.Error(), errShuttingDown.Error()) {
					t.Fatalf("client error = %v, want shutdown abort", err)
				}
			case <-time.After(failAfter):
				t.Fatal("client not aborted")
			}
			if err := ts.stop(t); err != nil {
				t.Fatal(err)
			}
			ev := ts.rec.wait(t, 1)[0]
			if !errors.Is(ev.Err, errShuttingDown) || ev.Bytes == 0 || ev.Bytes >= 1<<20 {
				t.Fatalf("event %+v", ev)
			}
			if st := ts.Stats(); st.Failed != 1 || st.Active != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestMaxTransfers(t *testing.T) {
	ts := startServer(t, Config{MaxTransfers: 1})
	writeFile(t, ts.root, "ipxe.efi", randomBytes(100000, 8))
	c, err := ptftp.NewClient(ts.addr)
	must(t, err)
	wt, err := c.Receive("ipxe.efi", "octet")
	must(t, err)
	w := &blockingWriter{first: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := wt.WriteTo(w)
		done <- err
	}()
	<-w.first // the first transfer is running
	if _, _, err := fetch(ts.addr, "ipxe.efi", fetchOpts{}); err == nil || !strings.Contains(err.Error(), "code: 0,") {
		t.Fatalf("second transfer: %s, want busy", codeOf(err))
	}
	close(w.release)
	must(t, <-done)
	ts.rec.wait(t, 2) // refusal + first transfer; Active is 0 again
	if _, _, err := fetch(ts.addr, "ipxe.efi", fetchOpts{}); err != nil {
		t.Fatalf("after the first ended: %v", err)
	}
	ts.rec.wait(t, 1)
	if st := ts.Stats(); st.Transfers != 2 || st.Refused != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSinglePort(t *testing.T) {
	ts := startServer(t, Config{SinglePort: true, MaxBlockSize: 8192})
	data := randomBytes(256<<10, 6)
	writeFile(t, ts.root, "ipxe.efi", data)

	// All traffic comes from the listening port.
	rc := dialRaw(t)
	rc.send(ts.addr, rrq("ipxe.efi", "octet", "blksize", "8192", "tsize", "0"))
	p, from := rc.recv()
	if from.String() != ts.addr {
		t.Fatalf("OACK from %s, want %s", from, ts.addr)
	}
	if o := oackOptions(t, p); o["blksize"] != "8192" || o["tsize"] != fmt.Sprint(len(data)) {
		t.Fatalf("OACK %v", o)
	}
	rc.send(ts.addr, ack(0))
	p, from = rc.recv()
	if from.String() != ts.addr || len(p) != 8196 {
		t.Fatalf("DATA from %s len %d", from, len(p))
	}
	rc.send(ts.addr, []byte{0, opERROR, 0, 0, 0})

	var g errgroup.Group
	for range 10 {
		g.Go(func() error {
			got, _, err := fetch(ts.addr, "ipxe.efi", fetchOpts{blksize: 1468})
			if err != nil {
				return err
			}
			if !bytes.Equal(got, data) {
				return errors.New("content mismatch")
			}
			return nil
		})
	}
	must(t, g.Wait())
	if _, _, err := fetch(ts.addr, "../etc/passwd", fetchOpts{}); err == nil || !strings.Contains(err.Error(), "code: 2,") {
		t.Fatalf("traversal in single-port mode: %s", codeOf(err))
	}
	ts.rec.wait(t, 12)
	if st := ts.Stats(); st.Transfers != 10 || st.Refused != 1 || st.Failed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCleanRequestPath(t *testing.T) {
	ok := map[string]string{
		"ipxe.efi":              "ipxe.efi",
		"/ipxe.efi":             "ipxe.efi",
		"///ipxe.efi":           "ipxe.efi",
		`\ipxe.efi`:             "ipxe.efi",
		`boot\x86\wdsnbp.com`:   "boot/x86/wdsnbp.com",
		"./a/./b/":              "a/b",
		"a//b":                  "a/b",
		"pxelinux.cfg/01-aa-bb": "pxelinux.cfg/01-aa-bb",
		"..foo":                 "..foo",
		"foo..":                 "foo..",
		"é.efi":                 "é.efi",
	}
	for in, want := range ok {
		got, err := CleanRequestPath(in)
		if err != nil || got != want {
			t.Errorf("CleanRequestPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{"", "/", `\`, ".", "./", "..", "../x", "a/../b", `..\..\x`, `a\..\..\b`,
		"a\x00b", "a\nb", "a\x7fb", "\xff\xfe", strings.Repeat("x", MaxPathLen+1), "/..", "a/.."}
	for _, in := range bad {
		if got, err := CleanRequestPath(in); err == nil {
			t.Errorf("CleanRequestPath(%q) = %q, want error", in, got)
		} else if !errors.Is(err, ErrAccessViolation) {
			t.Errorf("CleanRequestPath(%q) error %v is not an access violation", in, err)
		}
	}
}

func TestAllowList(t *testing.T) {
	a, err := newAllowList([]string{"/ipxe.efi", `boot\grub.cfg`, "pxelinux.cfg/01-*", "grub/*.mod"})
	must(t, err)
	for name, want := range map[string]bool{
		"ipxe.efi": true, "boot/grub.cfg": true, "pxelinux.cfg/01-aa-bb": true,
		"pxelinux.cfg/01-aa/x": false, "grub/normal.mod": true, "grub/x/normal.mod": false,
		"undionly.kpxe": false, "IPXE.EFI": false,
	} {
		if got := a.allowed(name); got != want {
			t.Errorf("allowed(%q) = %v, want %v", name, got, want)
		}
	}
	d, err := newAllowList(nil)
	must(t, err)
	for _, n := range DefaultAllowList {
		if !d.allowed(n) {
			t.Errorf("default list misses %s", n)
		}
	}
}

func TestErrorType(t *testing.T) {
	e := &Error{Code: CodeAccessViolation, Msg: "nope"}
	if !errors.Is(e, ErrAccessViolation) || errors.Is(e, ErrFileNotFound) {
		t.Fatal("Is by code")
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", e), &Error{Code: CodeAccessViolation, Msg: "nope"}) {
		t.Fatal("Is by code and message")
	}
	if errors.Is(e, &Error{Code: CodeAccessViolation, Msg: "other"}) {
		t.Fatal("message mismatch matched")
	}
	if e.Error() != "tftp: access violation: nope" || ErrFileNotFound.Error() != "tftp: file not found" {
		t.Fatal(e.Error(), ErrFileNotFound.Error())
	}
	if ErrorCode(99).String() != "code 99" {
		t.Fatal(ErrorCode(99).String())
	}
}

// TestSinglePortPacketsAtTransferEnd: in single-port mode, packets from a
// peer whose transfer is ending (duplicate final ACKs, ACKs after an ERROR)
// must not reach the ended transfer. pin/tftp v3.2.0 alone races them with
// the transfer closing its channel: a data race under -race, a "send on
// closed channel" panic without it.
func TestSinglePortPacketsAtTransferEnd(t *testing.T) {
	ts := startServer(t, Config{SinglePort: true})
	writeFile(t, ts.root, "undionly.kpxe", []byte("one block"))
	writeFile(t, ts.root, "ipxe.efi", randomBytes(64<<10, 9))

	const rounds = 150
	var g errgroup.Group
	g.SetLimit(4)
	for i := range rounds {
		g.Go(func() error {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				return err
			}
			defer c.Close()
			srv, err := net.ResolveUDPAddr("udp4", ts.addr)
			if err != nil {
				return err
			}
			name, abort := "undionly.kpxe", i%2 == 1
			if abort {
				name = "ipxe.efi"
			}
			// Like a real client, resend the request until block 1 comes:
			// the bursts below can overflow the server's socket buffer.
			buf := make([]byte, 1024)
			for try := 0; ; try++ {
				if _, err := c.WriteToUDP(rrq(name, "octet"), srv); err != nil {
					return err
				}
				c.SetReadDeadline(time.Now().Add(time.Second))
				n, _, err := c.ReadFromUDP(buf)
				if err == nil && n >= 4 && buf[1] == 3 {
					break
				}
				if try == 10 {
					return fmt.Errorf("round %d: no DATA: %w", i, err)
				}
			}
			if abort {
				c.WriteToUDP([]byte{0, opERROR, 0, 0, 0}, srv)
			}
			for range 20 {
				c.WriteToUDP(ack(1), srv)
			}
			return nil
		})
	}
	must(t, g.Wait())
	ts.rec.wait(t, rounds)
	// The server still serves, and counted every transfer once.
	got, _, err := fetch(ts.addr, "undionly.kpxe", fetchOpts{})
	if err != nil || string(got) != "one block" {
		t.Fatalf("fetch after the storm: %q, %v", got, err)
	}
	ts.rec.wait(t, 1)
	if st := ts.Stats(); st.Transfers != rounds/2+1 || st.Failed != rounds/2 || st.Active != 0 {
		t.Fatalf("stats %+v", st)
	}
}
