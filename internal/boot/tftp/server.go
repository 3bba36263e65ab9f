// Package tftp is a read-only TFTP server for network boot loaders, built on
// github.com/pin/tftp/v3.
//
// It serves regular files from one root directory, and only names on an
// allow-list. Write requests are refused with an access violation. Names are
// normalised by CleanRequestPath (leading slashes and backslashes are
// accepted, ".." is not) and opened through an os.Root, so symlinks cannot
// escape the root. Refusals are answered with the proper TFTP error code
// (1 file not found, 2 access violation, 4 illegal operation).
//
// Supported options: blksize (RFC 2348, 512 up to Config.MaxBlockSize, at
// most 65464) and tsize (RFC 2349). The RFC 2349 timeout option and RFC 7440
// windowsize are not negotiated (pin/tftp v3.2.0 has neither); the server's
// own retransmission timeout is Config.Timeout.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	ptftp "github.com/pin/tftp/v3"
)

// Defaults applied by New for zero Config fields.
const (
	DefaultTimeout = 2 * time.Second
	DefaultRetries = 5
	// DefaultMaxBlockSize is used when the listening address is a wildcard or
	// its interface cannot be found: Ethernet MTU 1500 - IPv4 20 - UDP 8 - TFTP 4.
	DefaultMaxBlockSize = 1468
	// MaxBlockSize is the largest blksize RFC 2348 allows.
	MaxBlockSize = 65464
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("tftp: server closed")

var errShuttingDown = errors.New("server shutting down")

// Config configures a Server. Only Root is required.
type Config struct {
	// Root is the directory files are served from.
	Root string
	// AllowList names the files that may be fetched, relative to Root with
	// "/" separators. Entries containing `*`, `?` or `[` are path.Match
	// patterns (a `*` does not match "/"; backslash escapes are not
	// supported). Empty means DefaultAllowList.
	AllowList []string
	// Timeout is the retransmission timeout for one unacknowledged packet.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// Retries is how many times a packet is sent before the transfer is
	// abandoned. Zero means DefaultRetries.
	Retries int
	// MaxBlockSize caps the negotiated blksize (512..65464). Zero derives it
	// from the MTU of the interface that owns the listening address (minus
	// 32 bytes of IPv4+UDP+TFTP headers, 52 for IPv6), or DefaultMaxBlockSize
	// for a wildcard address. Clients that do not ask for blksize get 512.
	MaxBlockSize int
	// MaxTransfers caps concurrent transfers; further requests are refused
	// (code 0, "server busy") until one ends. The check is approximate under
	// bursts. Zero means unlimited. Each transfer holds a goroutine and, in
	// multi-port mode, a socket until done or Timeout*Retries after its peer
	// goes silent.
	MaxTransfers int
	// SinglePort serves every transfer from the listening socket instead of
	// one ephemeral port per transfer (RFC 1350 TIDs). Useful behind NAT or
	// strict firewalls; slower under load. Replies then always leave from
	// the listening address. pin/tftp allocates a MaxBlockSize+4 buffer per
	// received packet in this mode, so keep MaxBlockSize near the MTU.
	SinglePort bool
	// Logger receives debug/info logs; nil discards.
	Logger *slog.Logger
	// Observer, if set, is told about every finished transfer and every
	// refused request.
	Observer Observer
}

// Event describes one finished transfer or refused request.
type Event struct {
	Peer netip.AddrPort
	// File is the cleaned request name, or the raw name if it could not be
	// cleaned.
	File string
	// Size is the size of the served file, or -1 if it was never opened.
	Size int64
	// Bytes is the number of file bytes handed to the network.
	Bytes int64
	// Err is nil for a complete transfer. Refusals are *Error values
	// (errors.Is(ev.Err, ErrAccessViolation) etc.).
	Err error
	// Duration runs from the start of the transfer (or refusal) to its end.
	Duration time.Duration
}

// Observer receives events. Observe is called synchronously from the serving
// goroutines, concurrently, and must return quickly; it must not call Close.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f(ev).
func (f ObserverFunc) Observe(ev Event) { f(ev) }

// Stats is a snapshot of a server's counters.
type Stats struct {
	Transfers uint64 // transfers that completed
	Failed    uint64 // transfers that started but did not complete
	Refused   uint64 // requests refused before any data was sent
	Errors    uint64 // Failed + Refused
	Bytes     uint64 // file bytes sent by all transfers, complete or not
	Active    int64  // transfers in progress
}

const (
	stateIdle = iota
	stateServing
	stateClosed
)

// Server is a read-only TFTP server. Create it with New, run it with Serve,
// stop it by cancelling Serve's context or with Close.
type Server struct {
	log      *slog.Logger
	obs      Observer
	conn     net.PacketConn
	fconn    *filterConn
	root     *os.Root
	files    *fileCache
	allow    *allowList
	maxBlock int
	maxXfers int64
	pin      *ptftp.Server

	mu       sync.Mutex
	state    int
	stopping chan struct{} // closed when shutdown begins
	stopOnce sync.Once
	done     chan struct{} // closed when resources are released

	fatalOnce sync.Once
	fatal     chan struct{}
	fatalErr  error

	transfers, failed, refused, bytes atomic.Uint64
	active                            atomic.Int64
}

// New returns a server that will serve on conn, a UDP socket (for example
// from net.ListenPacket("udp4", "192.0.2.1:69")). On success the server owns
// conn and closes it when it stops; on error the caller still owns it.
func New(conn net.PacketConn, cfg Config) (*Server, error) {
	if conn == nil {
		return nil, errors.New("tftp: nil PacketConn")
	}
	if cfg.Root == "" {
		return nil, errors.New("tftp: Config.Root is required")
	}
	allow, err := newAllowList(cfg.AllowList)
	if err != nil {
		return nil, err
	}
	maxBlock := cfg.MaxBlockSize
	if maxBlock == 0 {
		maxBlock = blockSizeForAddr(conn.LocalAddr())
	}
	if maxBlock < 512 || maxBlock > MaxBlockSize {
		return nil, fmt.Errorf("tftp: MaxBlockSize %d outside 512..%d", maxBlock, MaxBlockSize)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	retries := cfg.Retries
	if retries <= 0 {
		retries = DefaultRetries
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("tftp: open root: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:      log.With("component", "tftp"),
		obs:      cfg.Observer,
		conn:     conn,
		root:     root,
		files:    newFileCache(root),
		allow:    allow,
		maxBlock: maxBlock,
		maxXfers: int64(max(cfg.MaxTransfers, 0)),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
		fatal:    make(chan struct{}),
	}
	s.fconn = &filterConn{PacketConn: conn, s: s, singlePort: cfg.SinglePort, buf: make([]byte, 65536),
		ended: make(map[netip.AddrPort]time.Time)}

	p := ptftp.NewServer(s.readHandler, nil)
	p.SetTimeout(timeout)
	p.SetRetries(retries)
	// Retransmit exactly every Timeout (the library default adds up to 1s of
	// random sleep before each retry).
	p.SetBackoff(func(int) time.Duration { return 0 })
	// The MTU probe needs a bare *net.UDPConn; blksize is clamped by
	// filterConn instead.
	p.SetBlockSizeNegotiation(false)
	if maxBlock > 512 {
		p.SetBlockSize(maxBlock)
	}
	if cfg.SinglePort {
		p.EnableSinglePort() // after SetBlockSize: it sizes the read buffer
		p.SetHook(endHook{s.fconn})
	}
	s.pin = p
	return s, nil
}

// blockSizeForAddr derives a blksize cap from the MTU of the interface that
// owns addr.
func blockSizeForAddr(addr net.Addr) int {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua.IP == nil || ua.IP.IsUnspecified() {
		return DefaultMaxBlockSize
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return DefaultMaxBlockSize
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.Equal(ua.IP) {
				continue
			}
			overhead := 20 + 8 + 4
			if ua.IP.To4() == nil {
				overhead = 40 + 8 + 4
			}
			return min(max(ifc.MTU-overhead, 512), MaxBlockSize)
		}
	}
	return DefaultMaxBlockSize
}

// Addr returns the listening address.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Serve serves requests until ctx is done, Close is called, or the socket
// fails. It returns nil after a requested stop, once in-flight transfers have
// ended: live peers are aborted at their next block, unresponsive ones after
// at most Timeout*Retries. Serve may be called only once.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	switch s.state {
	case stateClosed:
		s.mu.Unlock()
		return ErrServerClosed
	case stateServing:
		s.mu.Unlock()
		return errors.New("tftp: Serve called twice")
	}
	s.state = stateServing
	s.mu.Unlock()
	defer s.release()

	s.log.Info("tftp serving", "addr", s.conn.LocalAddr().String(), "max_blksize", s.maxBlock)
	errc := make(chan error, 1)
	go func() { errc <- s.pin.Serve(s.fconn) }()

	var err error
	select {
	case <-ctx.Done():
	case <-s.stopping:
	case <-s.fatal:
		err = fmt.Errorf("tftp: socket failed: %w", s.fatalErr)
	case err = <-errc:
		// pin/tftp gave up before we asked it to (bad local address).
		s.stop()
		return err
	}
	s.stop()
	s.pin.Shutdown()
	<-errc
	s.log.Info("tftp stopped", "addr", s.conn.LocalAddr().String())
	return err
}

func (s *Server) stop() { s.stopOnce.Do(func() { close(s.stopping) }) }

// release frees the socket, cached files and root once.
func (s *Server) release() {
	_ = s.conn.Close()
	s.files.close()
	_ = s.root.Close()
	close(s.done)
}

// Close stops the server and waits for Serve to return. It is idempotent and
// safe to call concurrently, before, during or after Serve. It must not be
// called from an Observer.
func (s *Server) Close() error {
	s.mu.Lock()
	prev := s.state
	s.state = stateClosed
	s.mu.Unlock()
	s.stop()
	if prev == stateIdle {
		s.release()
	}
	<-s.done
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Transfers: s.transfers.Load(),
		Failed:    s.failed.Load(),
		Refused:   s.refused.Load(),
		Bytes:     s.bytes.Load(),
		Active:    s.active.Load(),
	}
	st.Errors = st.Failed + st.Refused
	return st
}

// connFailed is called by filterConn on a non-timeout read error. Outside
// shutdown it records the error and blocks until Serve starts stopping, so
// pin/tftp's accept loop (which retries read errors forever) doesn't spin.
func (s *Server) connFailed(err error) {
	select {
	case <-s.stopping:
		return
	default:
	}
	s.fatalOnce.Do(func() {
		s.fatalErr = err
		close(s.fatal)
	})
	<-s.stopping
}

func (s *Server) observe(ev Event) {
	if s.obs != nil {
		s.obs.Observe(ev)
	}
}

// refuse answers a request with an ERROR packet from the listening socket
// and records the refusal.
func (s *Server) refuse(peer *net.UDPAddr, file string, e *Error) {
	pkt := make([]byte, 0, 5+len(e.Msg))
	pkt = append(pkt, 0, opERROR, byte(e.Code>>8), byte(e.Code))
	pkt = append(pkt, e.Msg...)
	pkt = append(pkt, 0)
	if _, err := s.conn.WriteTo(pkt, peer); err != nil {
		s.log.Debug("tftp: sending error failed", "peer", peer.String(), "err", err)
	}
	s.refused.Add(1)
	s.log.Info("tftp request refused", "peer", peer.String(), "file", file, "code", uint16(e.Code), "reason", e.Msg)
	s.observe(Event{Peer: addrPort(peer), File: file, Size: -1, Err: e})
}

func addrPort(a *net.UDPAddr) netip.AddrPort {
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// openError maps an error from resolving a name in the root to a TFTP error.
func openError(err error) *Error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &Error{Code: CodeFileNotFound, Msg: "file not found"}
	case errors.Is(err, errNotRegular):
		return accessViolation("not a regular file")
	default:
		// Permission denied, symlink escaping the root, and anything else.
		return accessViolation("access denied")
	}
}

// readHandler runs one transfer; pin/tftp calls it in its own goroutine with
// the name already cleaned and checked by filterConn.
func (s *Server) readHandler(name string, rf io.ReaderFrom) error {
	start := time.Now()
	s.active.Add(1)
	// pin/tftp always hands read handlers an OutgoingTransfer.
	ot, _ := rf.(ptftp.OutgoingTransfer)
	var peer net.UDPAddr
	if ot != nil {
		peer = ot.RemoteAddr()
	}
	ev := Event{Peer: addrPort(&peer), File: name, Size: -1}

	finish := func(err error) error {
		s.active.Add(-1)
		ev.Err = err
		ev.Duration = time.Since(start)
		s.bytes.Add(uint64(ev.Bytes))
		if err != nil {
			s.failed.Add(1)
			s.log.Info("tftp transfer failed", "peer", ev.Peer.String(), "file", name,
				"bytes", ev.Bytes, "size", ev.Size, "duration", ev.Duration, "err", err)
		} else {
			s.transfers.Add(1)
			s.log.Debug("tftp transfer done", "peer", ev.Peer.String(), "file", name,
				"bytes", ev.Bytes, "duration", ev.Duration)
		}
		s.observe(ev)
		return err
	}

	// Defence in depth: filterConn already did both checks.
	clean, err := CleanRequestPath(name)
	if err != nil || clean != name || !s.allow.allowed(clean) {
		return finish(accessViolation("access denied"))
	}
	cf, err := s.files.acquire(clean)
	if err != nil {
		s.log.Debug("tftp open failed", "file", clean, "err", err)
		return finish(openError(err))
	}
	defer s.files.release(cf)
	ev.Size = cf.info.Size()
	// Only takes effect if the client asked for tsize (never for netascii:
	// filterConn strips it there because the size would differ).
	if ot != nil {
		ot.SetSize(ev.Size)
	}
	r := &transferReader{r: io.NewSectionReader(cf.f, 0, ev.Size), stop: s.stopping}
	_, err = rf.ReadFrom(r)
	s.fconn.transferClosed(ev.Peer) // pin/tftp closed the transfer in ReadFrom
	ev.Bytes = r.n
	return finish(err)
}

// transferReader counts bytes and aborts the transfer when the server stops.
// It deliberately does not implement io.Seeker: tsize is set explicitly, and
// pin/tftp's seek path can end a transfer without calling the hook filterConn
// relies on in single-port mode.
type transferReader struct {
	r    io.Reader
	n    int64
	stop <-chan struct{}
}

func (t *transferReader) Read(p []byte) (int, error) {
	select {
	case <-t.stop:
		return 0, errShuttingDown
	default:
	}
	n, err := t.r.Read(p)
	t.n += int64(n)
	return n, err
}
