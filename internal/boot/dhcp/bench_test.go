package dhcp

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// benchConfig serves unknown clients from a /16 so benchmarks can use fresh
// MACs.
func benchConfig(c *Config) {
	c.Unknown = UnknownServe
	c.Boot.UnknownScriptURL = "http://192.0.2.1:8080/discover.ipxe"
	c.Subnets = []Subnet{{
		Name:       "bench",
		Prefix:     netip.MustParsePrefix("10.0.0.0/16"),
		RangeStart: netip.MustParseAddr("10.0.0.10"),
		RangeEnd:   netip.MustParseAddr("10.0.255.250"),
		Routers:    []netip.Addr{netip.MustParseAddr("10.0.0.1")},
		DNS:        []netip.Addr{netip.MustParseAddr("10.0.0.53")},
	}}
	c.DefaultSubnet = ""
}

func benchMAC(i int) net.HardwareAddr {
	return net.HardwareAddr{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

// BenchmarkHandleDiscover is the per-packet cost of answering a known UEFI
// PXE client's DISCOVER: parse, lookup, re-offer, build, serialise.
func BenchmarkHandleDiscover(b *testing.B) {
	e := newBenchEnv(b, nil)
	wire := discover(macUEFI, uefiPXE).ToBytes()
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		req, err := dhcpv4.FromBytes(wire)
		if err != nil {
			b.Fatal(err)
		}
		reply, err := e.h.Handle(ctx, req, labIn)
		if err != nil || reply == nil {
			b.Fatal("no offer", err)
		}
		_ = reply.ToBytes()
	}
}

// BenchmarkDORA is a full DISCOVER-OFFER-REQUEST-ACK (and RELEASE, so the
// range never fills) for a fresh MAC each iteration, through the handler.
func BenchmarkDORA(b *testing.B) {
	e := newBenchEnv(b, benchConfig)
	ctx := b.Context()
	in := Inbound{Interface: "eth0", Peer: netip.MustParseAddrPort("0.0.0.0:68")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		mac := benchMAC(i)
		offer, err := e.h.Handle(ctx, discover(mac, ipxe), in)
		if err != nil || offer == nil {
			b.Fatal("no offer", err)
		}
		ack, err := e.h.Handle(ctx, requestPkt(mac, offer.YourIPAddr.String(), serverIP, ipxe), in)
		if err != nil || ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
			b.Fatal("no ack", err)
		}
		_, _ = e.h.Handle(ctx, mustPacket(append(base(dhcpv4.MessageTypeRelease, mac),
			dhcpv4.WithClientIP(ack.YourIPAddr))...), in)
	}
}

// BenchmarkDORALoopback runs DORA against a Server over 127.0.0.1, one client
// per goroutine, and reports completed DORAs per second.
func BenchmarkDORALoopback(b *testing.B) {
	e := newBenchEnv(b, benchConfig)
	s, addr := newTestServer(b, e, func(sc *ServerConfig) { sc.QueueSize = 4096 })
	startServer(b, s)
	var next atomic.Int64
	start := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Error(err)
			return
		}
		defer func() { _ = c.Close() }()
		buf := make([]byte, 1500)
		roundTrip := func(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
			if _, err := c.WriteTo(req.ToBytes(), addr); err != nil {
				return nil
			}
			if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
				return nil
			}
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return nil
			}
			p, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				return nil
			}
			return p
		}
		for pb.Next() {
			mac := benchMAC(int(next.Add(1)))
			offer := roundTrip(discover(mac, uefiPXE))
			if offer == nil {
				b.Error("no offer")
				return
			}
			ack := roundTrip(requestPkt(mac, offer.YourIPAddr.String(), serverIP, uefiPXE))
			if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
				b.Error("no ack")
				return
			}
			// Fire-and-forget RELEASE keeps the range from filling.
			rel := mustPacket(append(base(dhcpv4.MessageTypeRelease, mac), dhcpv4.WithClientIP(ack.YourIPAddr))...)
			if _, err := c.WriteTo(rel.ToBytes(), addr); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "dora/s")
	if st := s.Stats(); st.Dropped > 0 {
		b.Logf("dropped %d packets", st.Dropped)
	}
}
