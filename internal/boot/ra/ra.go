// Package ra is a minimal IPv6 Router Advertisement responder for the
// provisioning interface.
//
// iPXE configures IPv6 alongside DHCPv4 and waits for a Router Advertisement
// before it considers the interface configured; on a segment where nothing
// answers its Router Solicitations that wait is about 16 seconds on every
// boot. This responder answers each solicitation with an advertisement that
// says "there is no IPv6 router and nothing to configure here": router
// lifetime 0 (not a default router), M=0 and O=0 (no DHCPv6) and no prefix
// information (no SLAAC). iPXE's IPv6 configuration then finishes at once,
// and hosts that do use IPv6 learn nothing from it that they would act on.
//
// The advertisement is sent to the all-nodes group ff02::1 from the
// interface's link-local address with hop limit 255 (RFC 4861 6.2.6 allows
// the multicast answer; it needs no neighbour resolution). Solicitations
// that fail RFC 4861 6.1.1 validation (hop limit other than 255, code other
// than 0, truncated) are ignored, and answers are rate limited.
//
// The socket is a raw ICMPv6 socket (golang.org/x/net/icmp and ipv6), which
// needs CAP_NET_RAW; Listen says so when it is missing. Tests inject a Conn.
package ra

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// Packet is one received ICMPv6 message.
type Packet struct {
	// Data is the ICMPv6 message (type, code, checksum, body).
	Data []byte
	// Src is the sender's address.
	Src netip.Addr
	// IfIndex is the interface it arrived on (0 when unknown).
	IfIndex int
	// HopLimit is the IPv6 hop limit it arrived with (-1 when unknown).
	HopLimit int
}

// Conn is the ICMPv6 socket the responder uses. Listen returns the real
// one; tests pass their own.
type Conn interface {
	// Read blocks for the next packet. After Close it returns an error.
	Read() (Packet, error)
	// WriteMulticast sends an ICMPv6 message to ff02::1 on the interface
	// with hop limit 255 (the kernel fills in the checksum).
	WriteMulticast(msg []byte) error
	Close() error
}

// Config configures a Responder.
type Config struct {
	// Conn is the socket; required (see Listen).
	Conn Conn
	// MAC is the interface's hardware address, sent as the source
	// link-layer address option; nil omits the option.
	MAC net.HardwareAddr
	// IfIndex, when not 0, drops packets that arrived on another interface.
	IfIndex int
	// MinInterval is the least time between two advertisements; a
	// solicitation within it of the last answer is covered by that answer.
	// Default 200ms: a burst of booting machines gets one RA per interval.
	MinInterval time.Duration
	// Logger receives debug logs of answers and warnings of send errors.
	Logger *slog.Logger
}

// Responder answers Router Solicitations on one interface.
type Responder struct {
	cfg Config
	ra  []byte
	log *slog.Logger

	mu       sync.Mutex
	lastSent time.Time
	answered uint64
}

// New checks cfg and builds the advertisement once.
func New(cfg Config) (*Responder, error) {
	if cfg.Conn == nil {
		return nil, errors.New("ra: Config.Conn is required (see ra.Listen)")
	}
	if cfg.MAC != nil && len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("ra: MAC %s is not a 6-byte Ethernet address", cfg.MAC)
	}
	if cfg.MinInterval == 0 {
		cfg.MinInterval = 200 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Responder{cfg: cfg, ra: buildRA(cfg.MAC), log: log}, nil
}

// Answered counts the advertisements sent.
func (r *Responder) Answered() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answered
}

// Serve answers solicitations until ctx ends, then closes the Conn and
// returns nil. A read error other than the close is returned.
func (r *Responder) Serve(ctx context.Context) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		_ = r.cfg.Conn.Close()
	}()
	for {
		p, err := r.cfg.Conn.Read()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ra: reading: %w", err)
		}
		r.handle(p, time.Now())
	}
}

// handle answers one packet if it is a valid solicitation.
func (r *Responder) handle(p Packet, now time.Time) {
	if !validRS(p) || (r.cfg.IfIndex != 0 && p.IfIndex != 0 && p.IfIndex != r.cfg.IfIndex) {
		return
	}
	r.mu.Lock()
	if !r.lastSent.IsZero() && now.Sub(r.lastSent) < r.cfg.MinInterval {
		r.mu.Unlock()
		return
	}
	r.lastSent = now
	r.mu.Unlock()
	if err := r.cfg.Conn.WriteMulticast(r.ra); err != nil {
		r.log.Warn("sending a router advertisement failed", "error", err.Error())
		return
	}
	r.mu.Lock()
	r.answered++
	r.mu.Unlock()
	r.log.Debug("answered a router solicitation", "from", p.Src.String())
}

// validRS applies RFC 4861 6.1.1 to a received message.
func validRS(p Packet) bool {
	if len(p.Data) < 8 || p.Data[0] != byte(ipv6.ICMPTypeRouterSolicitation) || p.Data[1] != 0 {
		return false
	}
	if p.HopLimit >= 0 && p.HopLimit != 255 {
		return false
	}
	// Options: each has a non-zero length; an unspecified source must not
	// carry a source link-layer address option.
	opts := p.Data[8:]
	for len(opts) > 0 {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return false
		}
		if opts[0] == optSourceLinkLayer && p.Src.IsUnspecified() {
			return false
		}
		opts = opts[int(opts[1])*8:]
	}
	return true
}

const (
	optSourceLinkLayer = 1
	// curHopLimit is the hop limit hosts should use (RFC 4861 default 64).
	curHopLimit = 64
)

// buildRA returns the ICMPv6 Router Advertisement (checksum 0: the kernel
// computes it for raw ICMPv6 sockets): cur hop limit 64, M=0, O=0, router
// lifetime 0, reachable time and retrans timer unspecified, and the source
// link-layer address option when mac is set. No prefix information.
func buildRA(mac net.HardwareAddr) []byte {
	body := make([]byte, 12, 20)
	body[0] = curHopLimit
	body[1] = 0                               // M=0, O=0, no other flags
	binary.BigEndian.PutUint16(body[2:4], 0)  // router lifetime: not a default router
	binary.BigEndian.PutUint32(body[4:8], 0)  // reachable time: unspecified
	binary.BigEndian.PutUint32(body[8:12], 0) // retrans timer: unspecified
	if len(mac) == 6 {
		body = append(body, optSourceLinkLayer, 1)
		body = append(body, mac...)
	}
	m := icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Code: 0, Body: &icmp.RawBody{Data: body}}
	b, err := m.Marshal(nil) // nil pseudo header: checksum left 0
	if err != nil {
		panic("ra: marshalling a fixed message: " + err.Error())
	}
	return b
}

// ErrNeedsCapNetRaw is returned by Listen when the process may not open
// raw sockets.
var ErrNeedsCapNetRaw = errors.New("ra: answering router solicitations needs a raw ICMPv6 socket: run as root or grant CAP_NET_RAW (setcap cap_net_raw+ep on the binary)")

// icmpConn is the real Conn: a raw ICMPv6 socket bound to one interface.
type icmpConn struct {
	pc  *ipv6.PacketConn
	raw net.PacketConn
	ifi *net.Interface
}

var allNodes = &net.IPAddr{IP: net.ParseIP("ff02::1")}

// Listen opens a raw ICMPv6 socket on interface ifname that receives only
// Router Solicitations (joined to ff02::2 there) and sends with hop limit
// 255. It needs CAP_NET_RAW.
func Listen(ifname string) (Conn, *net.Interface, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, nil, fmt.Errorf("ra: interface %q: %w", ifname, err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = bindToDevice(int(fd), ifname) }); err != nil {
			return err
		}
		return serr
	}}
	raw, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, nil, fmt.Errorf("%w: %w", ErrNeedsCapNetRaw, err)
		}
		return nil, nil, fmt.Errorf("ra: opening an ICMPv6 socket on %s: %w", ifname, err)
	}
	pc := ipv6.NewPacketConn(raw)
	fail := func(what string, err error) (Conn, *net.Interface, error) {
		_ = raw.Close()
		return nil, nil, fmt.Errorf("ra: %s on %s: %w", what, ifname, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := pc.SetICMPFilter(&f); err != nil {
		return fail("setting the ICMPv6 filter", err)
	}
	if err := pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true); err != nil {
		return fail("enabling control messages", err)
	}
	if err := pc.JoinGroup(ifi, &net.IPAddr{IP: net.ParseIP("ff02::2")}); err != nil {
		return fail("joining ff02::2 (is IPv6 enabled on the interface?)", err)
	}
	if err := pc.SetMulticastInterface(ifi); err != nil {
		return fail("choosing the multicast interface", err)
	}
	if err := pc.SetMulticastHopLimit(255); err != nil {
		return fail("setting the multicast hop limit", err)
	}
	if err := pc.SetMulticastLoopback(false); err != nil {
		return fail("disabling multicast loopback", err)
	}
	return &icmpConn{pc: pc, raw: raw, ifi: ifi}, ifi, nil
}

func (c *icmpConn) Read() (Packet, error) {
	buf := make([]byte, 1500)
	n, cm, src, err := c.pc.ReadFrom(buf)
	if err != nil {
		return Packet{}, err
	}
	p := Packet{Data: append([]byte(nil), buf[:n]...), HopLimit: -1}
	if cm != nil {
		p.IfIndex, p.HopLimit = cm.IfIndex, cm.HopLimit
	}
	if ia, ok := src.(*net.IPAddr); ok {
		if a, ok := netip.AddrFromSlice(ia.IP); ok {
			p.Src = a
		}
	}
	return p, nil
}

func (c *icmpConn) WriteMulticast(msg []byte) error {
	cm := &ipv6.ControlMessage{HopLimit: 255, IfIndex: c.ifi.Index}
	_, err := c.pc.WriteTo(msg, cm, &net.IPAddr{IP: allNodes.IP, Zone: c.ifi.Name})
	return err
}

func (c *icmpConn) Close() error { return c.raw.Close() }
