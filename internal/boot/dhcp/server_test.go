package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// All socket tests run on 127.0.0.1 only.

const ioTimeout = 5 * time.Second

func listenLoopback(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func loopbackName(t testing.TB) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			return i.Name
		}
	}
	t.Skip("no loopback interface")
	return ""
}

// startServer runs s.Serve until the test ends (or stop is called) and checks
// it returns nil. After stop returns, all workers are done, so Stats is final.
func startServer(t testing.TB, s *Server) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(ioTimeout):
				t.Error("Serve did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newTestServer(t testing.TB, e *env, mutate func(*ServerConfig)) (*Server, *net.UDPAddr) {
	t.Helper()
	conn := listenLoopback(t)
	sc := ServerConfig{Conn: conn, Handler: e.h, ReplyToSender: true, Workers: 2}
	if mutate != nil {
		mutate(&sc)
	}
	s, err := NewServer(sc)
	if err != nil {
		t.Fatal(err)
	}
	return s, conn.LocalAddr().(*net.UDPAddr)
}

// exchange sends req to addr and reads one reply, with a deadline.
func exchange(t testing.TB, c *net.UDPConn, addr net.Addr, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, net.Addr) {
	t.Helper()
	send(t, c, addr, req.ToBytes())
	return receive(t, c)
}

func send(t testing.TB, c *net.UDPConn, addr net.Addr, b []byte) {
	t.Helper()
	if _, err := c.WriteTo(b, addr); err != nil {
		t.Fatal(err)
	}
}

func receive(t testing.TB, c *net.UDPConn) (*dhcpv4.DHCPv4, net.Addr) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	p, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return p, from
}

// TestLoopbackDORA runs a full DISCOVER-OFFER-REQUEST-ACK with the
// insomniacslk nclient4 client against a Server on 127.0.0.1.
func TestLoopbackDORA(t *testing.T) {
	lo := loopbackName(t)
	e := newEnv(t, nil)
	e.rec.ch = make(chan Event, 16)
	s, addr := newTestServer(t, e, nil)
	stop := startServer(t, s)

	client, err := nclient4.NewWithConn(listenLoopback(t), macUEFI,
		nclient4.WithServerAddr(addr), nclient4.WithTimeout(ioTimeout), nclient4.WithRetry(1))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Close() }()
	ctx, cancel := context.WithTimeout(t.Context(), 3*ioTimeout)
	defer cancel()
	lease, err := client.Request(ctx, ipxe)
	if err != nil {
		t.Fatalf("DORA: %v", err)
	}
	for name, p := range map[string]*dhcpv4.DHCPv4{"offer": lease.Offer, "ack": lease.ACK} {
		if got := p.YourIPAddr.String(); got != "192.0.2.100" {
			t.Errorf("%s yiaddr = %s, want 192.0.2.100", name, got)
		}
		if p.BootFileName != scriptURL(macUEFI) {
			t.Errorf("%s boot file = %q, want the script URL", name, p.BootFileName)
		}
		if !p.ServerIdentifier().Equal(net.IP{192, 0, 2, 1}) {
			t.Errorf("%s server id = %s", name, p.ServerIdentifier())
		}
	}
	if lease.ACK.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("final message %s", lease.ACK.MessageType())
	}

	for _, want := range []EventType{EventOffer, EventAck} {
		select {
		case ev := <-e.rec.ch:
			if ev.Type != want || ev.Interface != lo || ev.IP.String() != "192.0.2.100" || ev.Client != ClientIPXE {
				t.Errorf("event = %s on %q ip %s client %s, want %s on %q", ev.Type, ev.Interface, ev.IP, ev.Client, want, lo)
			}
		case <-ctx.Done():
			t.Fatalf("no %s event", want)
		}
	}
	stop()
	st := s.Stats()
	if st.Received[dhcpv4.MessageTypeDiscover] != 1 || st.Received[dhcpv4.MessageTypeRequest] != 1 ||
		st.Sent[dhcpv4.MessageTypeOffer] != 1 || st.Sent[dhcpv4.MessageTypeAck] != 1 || st.Dropped != 0 {
		t.Errorf("stats = %+v", st)
	}
	if ls, _ := e.store.List(ctx); len(ls) != 1 {
		t.Errorf("leases = %v", ls)
	}
}

// TestLoopbackRFCDestinations follows the RFC 2131 reply rules (no
// ReplyToSender) where they stay on loopback: a relay at 127.0.0.1 and a
// renewing client whose ciaddr is 127.0.0.1, with the ports overridden.
func TestLoopbackRFCDestinations(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Subnets = append(c.Subnets, Subnet{
			Name:   "loop",
			Prefix: netip.MustParsePrefix("127.0.0.0/8"),
			// One address, the client's own, so replies to ciaddr reach it.
			RangeStart: netip.MustParseAddr("127.0.0.1"),
			RangeEnd:   netip.MustParseAddr("127.0.0.1"),
		})
		c.Unknown = UnknownServe
	})
	client := listenLoopback(t)
	port := client.LocalAddr().(*net.UDPAddr).Port
	s, addr := newTestServer(t, e, func(sc *ServerConfig) {
		sc.ReplyToSender = false
		sc.ClientPort = port
		sc.RelayPort = port
	})
	startServer(t, s)

	mac := clientMAC(7)
	offer, _ := exchange(t, client, addr, discover(mac, dhcpv4.WithGatewayIP(net.IP{127, 0, 0, 1}),
		dhcpv4.WithOption(relayAgentInfo)))
	if offer.YourIPAddr.String() != "127.0.0.1" || !offer.GatewayIPAddr.Equal(net.IP{127, 0, 0, 1}) ||
		!offer.Options.Has(dhcpv4.OptionRelayAgentInformation) {
		t.Fatalf("relayed offer:\n%s", offer.Summary())
	}
	ack, _ := exchange(t, client, addr, requestPkt(mac, "127.0.0.1", serverIP, dhcpv4.WithGatewayIP(net.IP{127, 0, 0, 1})))
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("relayed request: %s", ack.MessageType())
	}
	renew := mustPacket(append(base(dhcpv4.MessageTypeRequest, mac), withCIAddr("127.0.0.1"))...)
	renewed, _ := exchange(t, client, addr, renew)
	if renewed.MessageType() != dhcpv4.MessageTypeAck || !renewed.ClientIPAddr.Equal(net.IP{127, 0, 0, 1}) {
		t.Fatalf("renewal:\n%s", renewed.Summary())
	}
}

// TestLoopbackProxyAndBootServer runs proxyDHCP on port 67 and the PXE boot
// server on a second socket.
func TestLoopbackProxyAndBootServer(t *testing.T) {
	e := newEnv(t, proxyMode)
	pxe := listenLoopback(t)
	s, addr := newTestServer(t, e, func(sc *ServerConfig) { sc.PXEConn = pxe })
	stop := startServer(t, s)
	client := listenLoopback(t)

	offer, _ := exchange(t, client, addr, discover(macUEFI, uefiPXE))
	if offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.Equal(net.IPv4zero) ||
		offer.ClassIdentifier() != "PXEClient" || offer.BootFileName != "ipxe.efi" {
		t.Fatalf("proxy offer:\n%s", offer.Summary())
	}
	req := mustPacket(append(base(dhcpv4.MessageTypeRequest, macUEFI), uefiPXE, withCIAddr("192.0.2.77"))...)
	ack, from := exchange(t, client, pxe.LocalAddr(), req)
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "ipxe.efi" || ack.ClassIdentifier() != "PXEClient" {
		t.Fatalf("boot server ack:\n%s", ack.Summary())
	}
	if from.String() != pxe.LocalAddr().String() {
		t.Errorf("4011 answer came from %s, want the PXE socket %s", from, pxe.LocalAddr())
	}
	// A plain DISCOVER to the boot-server port is not answered; the next
	// REQUEST still is, so the socket keeps serving.
	send(t, client, pxe.LocalAddr(), discover(macUEFI, uefiPXE).ToBytes())
	if again, _ := exchange(t, client, pxe.LocalAddr(), req); again.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("second boot server request: %s", again.MessageType())
	}
	stop()
	if st := s.Stats(); st.Unanswered != 1 || st.Sent[dhcpv4.MessageTypeAck] != 2 {
		t.Errorf("stats = %+v", st)
	}
}

// TestQueueFullDrops blocks the only worker and fills the one-slot queue.
func TestQueueFullDrops(t *testing.T) {
	e := newEnv(t, nil)
	e.backend.block = make(chan struct{})
	e.backend.entered = make(chan struct{}, 4)
	s, addr := newTestServer(t, e, func(sc *ServerConfig) { sc.Workers = 1; sc.QueueSize = 1 })
	enqueued := make(chan bool, 8)
	s.enqueued = func(dropped bool) { enqueued <- dropped }
	startServer(t, s)
	client := listenLoopback(t)

	wait := func(what string, ch <-chan bool, want bool) {
		t.Helper()
		select {
		case got := <-ch:
			if got != want {
				t.Fatalf("%s: dropped = %v, want %v", what, got, want)
			}
		case <-time.After(ioTimeout):
			t.Fatalf("%s: reader did not report", what)
		}
	}
	send(t, client, addr, discover(macUEFI, uefiPXE).ToBytes())
	wait("first", enqueued, false)
	select {
	case <-e.backend.entered: // the worker is now stuck in Lookup
	case <-time.After(ioTimeout):
		t.Fatal("worker never called the backend")
	}
	send(t, client, addr, discover(macBIOS, biosPXE).ToBytes())
	wait("second (queued)", enqueued, false)
	send(t, client, addr, discover(macBIOS, biosPXE).ToBytes())
	wait("third (dropped)", enqueued, true)
	send(t, client, addr, discover(macBIOS, biosPXE).ToBytes())
	wait("fourth (dropped)", enqueued, true)
	if st := s.Stats(); st.Dropped != 2 {
		t.Errorf("dropped = %d, want 2", st.Dropped)
	}
	close(e.backend.block)
	for range 2 {
		if r, _ := receive(t, client); r.MessageType() != dhcpv4.MessageTypeOffer {
			t.Errorf("reply %s", r.MessageType())
		}
	}
}

func TestMalformedCounted(t *testing.T) {
	e := newEnv(t, nil)
	s, addr := newTestServer(t, e, func(sc *ServerConfig) { sc.Workers = 1 })
	startServer(t, s)
	client := listenLoopback(t)
	send(t, client, addr, []byte("definitely not DHCP"))
	// One worker handles packets in order: once this is answered the junk
	// was processed.
	if r, _ := exchange(t, client, addr, discover(macUEFI, uefiPXE)); r.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("reply %s", r.MessageType())
	}
	if st := s.Stats(); st.Malformed != 1 || st.Received[dhcpv4.MessageTypeDiscover] != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestServerLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	s, _ := newTestServer(t, e, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Serve did not return after cancel")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Serve: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Serve(t.Context()); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close = %v, want ErrServerClosed", err)
	}

	// Close (not ctx) stops a running Serve, and a second Serve is refused.
	s2, _ := newTestServer(t, e, nil)
	done2 := make(chan error, 1)
	go func() { done2 <- s2.Serve(t.Context()) }()
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done2:
		if err != nil && !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve after Close = %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Serve did not return after Close")
	}
}

func TestNewServerValidation(t *testing.T) {
	e := newEnv(t, nil)
	conn := listenLoopback(t)
	if _, err := NewServer(ServerConfig{Handler: e.h}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil conn: %v", err)
	}
	if _, err := NewServer(ServerConfig{Conn: conn}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil handler: %v", err)
	}
	e4011 := newEnv(t, func(c *Config) { c.Boot.PXEBootServer = true })
	if _, err := NewServer(ServerConfig{Conn: conn, Handler: e4011.h}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("PXEBootServer without PXEConn: %v", err)
	}
}

func TestReplyDestination(t *testing.T) {
	offer := func(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		return mustPacket(append(base(dhcpv4.MessageTypeOffer, macUEFI), mods...)...)
	}
	nak := mustPacket(base(dhcpv4.MessageTypeNak, macUEFI)...)
	peer := netip.MustParseAddrPort("192.0.2.77:3000")
	tests := []struct {
		name       string
		req, reply *dhcpv4.DHCPv4
		in         Inbound
		toSender   bool
		want       string
		wantIf     int
	}{
		{"broadcast on ingress interface", discover(macUEFI), offer(), Inbound{IfIndex: 5, Peer: peer}, false, "255.255.255.255:1068", 5},
		{"relay", discover(macUEFI, relayed), offer(), Inbound{IfIndex: 5, Peer: peer}, false, "198.51.100.1:1067", 0},
		{"relayed nak still to relay", discover(macUEFI, relayed, withCIAddr("192.0.2.9")), nak, Inbound{Peer: peer}, false, "198.51.100.1:1067", 0},
		{"ciaddr", discover(macUEFI, withCIAddr("192.0.2.9")), offer(), Inbound{IfIndex: 5, Peer: peer}, false, "192.0.2.9:1068", 0},
		{"nak with ciaddr broadcasts", discover(macUEFI, withCIAddr("192.0.2.9")), nak, Inbound{IfIndex: 5, Peer: peer}, false, "255.255.255.255:1068", 5},
		{"pxe port to sender", discover(macUEFI, withCIAddr("192.0.2.9")), offer(), Inbound{Peer: peer, PXEPort: true}, false, "192.0.2.77:3000", 0},
		{"reply to sender", discover(macUEFI, relayed), offer(), Inbound{IfIndex: 5, Peer: peer}, true, "192.0.2.77:3000", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst, ifIndex := replyDestination(tc.req, tc.reply, tc.in, 1068, 1067, tc.toSender)
			if dst.String() != tc.want || ifIndex != tc.wantIf {
				t.Errorf("destination = %s on if %d, want %s on if %d", dst, ifIndex, tc.want, tc.wantIf)
			}
		})
	}
}
