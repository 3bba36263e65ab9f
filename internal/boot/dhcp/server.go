package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/net/ipv4"
)

// ErrServerClosed is returned by Serve when the server was closed before.
var ErrServerClosed = errors.New("dhcp: server closed")

// Default ports.
const (
	ServerPort    = 67   // DHCP server and relay agents
	ClientPort    = 68   // DHCP clients
	PXEServerPort = 4011 // PXE boot server (proxyDHCP REQUEST/INFORM)
)

// ServerConfig wires a Handler to sockets.
type ServerConfig struct {
	// Conn receives DHCP on port 67. Required. Production code should use
	// a socket bound to 0.0.0.0:67 (server4.NewIPv4UDPConn sets
	// SO_BROADCAST and, given an interface, SO_BINDTODEVICE); NewServer
	// enables SO_BROADCAST where it can. Tests pass 127.0.0.1:0.
	Conn net.PacketConn
	// PXEConn, when set, receives PXE boot-server requests on port 4011;
	// replies are unicast to the sender.
	PXEConn net.PacketConn
	Handler *Handler
	// Workers handle packets concurrently (default max(4, GOMAXPROCS)).
	// QueueSize bounds the packets waiting for a worker (default 1024);
	// packets arriving at a full queue are dropped and counted.
	Workers   int
	QueueSize int
	// ClientPort (default 68) and RelayPort (default 67) are the
	// destination ports of replies to clients and to relay agents.
	ClientPort int
	RelayPort  int
	// ReplyToSender sends every reply to the request's source address and
	// port instead of following RFC 2131 (giaddr, ciaddr, broadcast). For
	// tests and benchmarks on loopback, where clients listen on ephemeral
	// ports and nothing must be broadcast.
	ReplyToSender bool
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	// Received counts parsed requests by message type (MessageTypeNone for
	// packets without option 53); Sent counts replies by message type.
	Received map[dhcpv4.MessageType]uint64
	Sent     map[dhcpv4.MessageType]uint64
	// Malformed packets did not parse. Dropped found the queue full.
	// Unanswered were handled without a reply (unknown client, not for
	// us, RELEASE...). Errors are backend or lease-store failures.
	// SendErrors are failed socket writes.
	Malformed  uint64
	Dropped    uint64
	Unanswered uint64
	Errors     uint64
	SendErrors uint64
}

type counters struct {
	received, sent                                     [256]atomic.Uint64
	malformed, dropped, unanswered, errors, sendErrors atomic.Uint64
}

// packet is a datagram waiting for a worker.
type packet struct {
	buf     *[]byte
	n       int
	ifIndex int
	src     netip.AddrPort
	pxe     bool
}

// Server reads DHCP requests from its sockets and has a bounded pool of
// workers answer them through the Handler.
type Server struct {
	cfg   ServerConfig
	h     *Handler
	log   *slog.Logger
	conn  *ipv4.PacketConn
	pxe   *ipv4.PacketConn
	queue chan packet
	bufs  sync.Pool
	ifs   ifaceCache
	stats counters

	serving   atomic.Bool
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// enqueued is a test hook called after each packet was queued or
	// dropped.
	enqueued func(dropped bool)
}

const readBufferSize = 4096

// NewServer validates cfg and prepares the sockets. It does not start
// reading: call Serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Conn == nil {
		return nil, invalid("server needs Conn")
	}
	if cfg.Handler == nil {
		return nil, invalid("server needs Handler")
	}
	if cfg.Handler.boot.PXEBootServer && cfg.PXEConn == nil {
		return nil, invalid("BootConfig.PXEBootServer is set but PXEConn is nil: firmware would look for a boot server on port 4011")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = max(4, runtime.GOMAXPROCS(0))
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.ClientPort == 0 {
		cfg.ClientPort = ClientPort
	}
	if cfg.RelayPort == 0 {
		cfg.RelayPort = ServerPort
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:   cfg,
		h:     cfg.Handler,
		log:   cfg.Logger,
		queue: make(chan packet, cfg.QueueSize),
		bufs:  sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }},
	}
	s.conn = s.wrap(cfg.Conn, "dhcp")
	if cfg.PXEConn != nil {
		s.pxe = s.wrap(cfg.PXEConn, "pxe")
	} else if cfg.Handler.Mode() == ModeProxy {
		s.log.Warn("proxyDHCP without a port 4011 conn: UEFI firmware that asks the boot server will get no answer")
	}
	return s, nil
}

// wrap adds the control messages that tell the ingress interface of each
// packet. Without them (non-UDP conns, some platforms) the server still
// works, but cannot pick a subnet by interface or pin broadcasts to one.
func (s *Server) wrap(c net.PacketConn, name string) *ipv4.PacketConn {
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		s.log.Warn("ingress interface unknown: control messages unavailable", slog.String("conn", name), slog.Any("error", err))
	}
	if err := enableBroadcast(c); err != nil {
		s.log.Warn("cannot enable SO_BROADCAST; broadcast replies will fail", slog.String("conn", name), slog.Any("error", err))
	}
	return pc
}

// Serve reads and answers requests until ctx ends or Close is called, then
// closes the sockets, waits for the workers and returns nil. It returns an
// error if a socket fails, and ErrServerClosed if the server was closed
// before.
func (s *Server) Serve(ctx context.Context) error {
	if s.closed.Load() {
		return ErrServerClosed
	}
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("dhcp: Serve called twice")
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()

	var workers sync.WaitGroup
	for range s.cfg.Workers {
		workers.Go(func() {
			for p := range s.queue {
				s.process(ctx, p)
			}
		})
	}
	var readers sync.WaitGroup
	errs := make([]error, 2)
	readers.Go(func() { errs[0] = s.readLoop(s.conn, false) })
	if s.pxe != nil {
		readers.Go(func() { errs[1] = s.readLoop(s.pxe, true) })
	}
	readers.Wait()
	close(s.queue)
	workers.Wait()
	return errors.Join(errs...)
}

// Close closes the sockets, which makes Serve return. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		errs := []error{s.cfg.Conn.Close()}
		if s.cfg.PXEConn != nil {
			errs = append(errs, s.cfg.PXEConn.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Received:   map[dhcpv4.MessageType]uint64{},
		Sent:       map[dhcpv4.MessageType]uint64{},
		Malformed:  s.stats.malformed.Load(),
		Dropped:    s.stats.dropped.Load(),
		Unanswered: s.stats.unanswered.Load(),
		Errors:     s.stats.errors.Load(),
		SendErrors: s.stats.sendErrors.Load(),
	}
	for i := range s.stats.received {
		if v := s.stats.received[i].Load(); v > 0 {
			st.Received[dhcpv4.MessageType(i)] = v
		}
		if v := s.stats.sent[i].Load(); v > 0 {
			st.Sent[dhcpv4.MessageType(i)] = v
		}
	}
	return st
}

// readLoop reads datagrams and queues them, never blocking on a busy pool.
func (s *Server) readLoop(pc *ipv4.PacketConn, pxe bool) error {
	for {
		bp, ok := s.bufs.Get().(*[]byte)
		if !ok {
			b := make([]byte, readBufferSize)
			bp = &b
		}
		n, cm, src, err := pc.ReadFrom(*bp)
		if err != nil {
			s.bufs.Put(bp)
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			_ = s.Close()
			return fmt.Errorf("dhcp: reading: %w", err)
		}
		p := packet{buf: bp, n: n, pxe: pxe}
		if cm != nil {
			p.ifIndex = cm.IfIndex
		}
		if ua, ok := src.(*net.UDPAddr); ok {
			ap := ua.AddrPort()
			p.src = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		select {
		case s.queue <- p:
			if s.enqueued != nil {
				s.enqueued(false)
			}
		default:
			s.stats.dropped.Add(1)
			s.bufs.Put(bp)
			if s.enqueued != nil {
				s.enqueued(true)
			}
		}
	}
}

// process handles one datagram on a worker.
func (s *Server) process(ctx context.Context, p packet) {
	defer s.bufs.Put(p.buf)
	if s.closed.Load() {
		return
	}
	req, err := dhcpv4.FromBytes((*p.buf)[:p.n])
	if err != nil {
		s.stats.malformed.Add(1)
		s.log.Debug("malformed packet", slog.String("peer", p.src.String()), slog.Any("error", err))
		return
	}
	s.stats.received[req.MessageType()].Add(1)
	in := Inbound{IfIndex: p.ifIndex, Peer: p.src, PXEPort: p.pxe}
	if p.ifIndex > 0 {
		in.Interface, in.InterfaceAddrs = s.ifs.lookup(p.ifIndex)
	}
	reply, err := s.h.Handle(ctx, req, in)
	if err != nil {
		s.stats.errors.Add(1)
	}
	if reply == nil {
		s.stats.unanswered.Add(1)
		return
	}
	dst, ifIndex := replyDestination(req, reply, in, s.cfg.ClientPort, s.cfg.RelayPort, s.cfg.ReplyToSender)
	var cm *ipv4.ControlMessage
	if ifIndex > 0 {
		cm = &ipv4.ControlMessage{IfIndex: ifIndex}
	}
	pc := s.conn
	if p.pxe {
		pc = s.pxe
	}
	if _, err := pc.WriteTo(reply.ToBytes(), cm, dst); err != nil {
		s.stats.sendErrors.Add(1)
		if !s.closed.Load() {
			s.log.Warn("sending reply failed", slog.String("mac", req.ClientHWAddr.String()),
				slog.String("xid", req.TransactionID.String()), slog.String("peer", dst.String()), slog.Any("error", err))
		}
		return
	}
	s.stats.sent[reply.MessageType()].Add(1)
}

// replyDestination applies RFC 2131 4.1: replies go to the relay (giaddr:67)
// when relayed, to ciaddr when the client has an address (not for NAKs),
// else are broadcast on the ingress interface. Port 4011 answers go back to
// the sender. The int is the interface index to pin the send to (0: any).
func replyDestination(req, reply *dhcpv4.DHCPv4, in Inbound, clientPort, relayPort int, toSender bool) (*net.UDPAddr, int) {
	if in.PXEPort || toSender {
		return net.UDPAddrFromAddrPort(in.Peer), 0
	}
	if gi := addrOf(req.GatewayIPAddr); gi.IsValid() {
		return &net.UDPAddr{IP: ipOf(gi), Port: relayPort}, 0
	}
	if reply.MessageType() != dhcpv4.MessageTypeNak {
		if ci := addrOf(req.ClientIPAddr); ci.IsValid() {
			return &net.UDPAddr{IP: ipOf(ci), Port: clientPort}, 0
		}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: clientPort}, in.IfIndex
}

// ifaceCache maps interface indexes to names and addresses.
type ifaceCache struct {
	mu sync.Mutex
	m  map[int]ifaceInfo
}

type ifaceInfo struct {
	name    string
	addrs   []netip.Prefix
	fetched time.Time
}

const ifaceCacheTTL = 30 * time.Second

func (c *ifaceCache) lookup(index int) (string, []netip.Prefix) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if info, ok := c.m[index]; ok && time.Since(info.fetched) < ifaceCacheTTL {
		return info.name, info.addrs
	}
	info := ifaceInfo{fetched: time.Now()}
	if ifi, err := net.InterfaceByIndex(index); err == nil {
		info.name = ifi.Name
		if addrs, err := ifi.Addrs(); err == nil {
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok {
					ones, _ := ipn.Mask.Size()
					if ip := addrOf(ipn.IP); ip.IsValid() {
						info.addrs = append(info.addrs, netip.PrefixFrom(ip, ones))
					}
				}
			}
		}
	}
	if c.m == nil {
		c.m = map[int]ifaceInfo{}
	}
	c.m[index] = info
	return info.name, info.addrs
}
