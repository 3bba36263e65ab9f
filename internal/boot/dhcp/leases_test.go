package dhcp

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// smallRange serves unknown clients from a lab range of n addresses starting
// at 192.0.2.100.
func smallRange(n int) func(*Config) {
	return func(c *Config) {
		c.Unknown = UnknownServe
		c.Subnets[0].RangeEnd = netip.MustParseAddr("192.0.2.100")
		for range n - 1 {
			c.Subnets[0].RangeEnd = c.Subnets[0].RangeEnd.Next()
		}
	}
}

func clientMAC(i int) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)} }

// dora runs DISCOVER and REQUEST and returns the acknowledged address, or ""
// when the client got no offer or a NAK.
func dora(t *testing.T, e *env, mac net.HardwareAddr) string {
	t.Helper()
	offer := e.handle(t, discover(mac, osClient), labIn)
	if offer == nil {
		return ""
	}
	ack := e.handle(t, requestPkt(mac, offer.YourIPAddr.String(), serverIP, osClient), labIn)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		return ""
	}
	return ack.YourIPAddr.String()
}

func offerIP(t *testing.T, e *env, mac net.HardwareAddr) string {
	t.Helper()
	offer := e.handle(t, discover(mac, osClient), labIn)
	if offer == nil {
		return ""
	}
	return offer.YourIPAddr.String()
}

func requestType(t *testing.T, e *env, mac net.HardwareAddr, ip string) dhcpv4.MessageType {
	t.Helper()
	r := e.handle(t, requestPkt(mac, ip, netip.Addr{}, osClient), labIn) // INIT-REBOOT
	if r == nil {
		return dhcpv4.MessageTypeNone
	}
	return r.MessageType()
}

func storedLeases(t *testing.T, e *env) map[string]string {
	t.Helper()
	ls, err := e.store.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range ls {
		out[l.MAC.String()] = l.IP.String()
	}
	return out
}

func TestRangeExhaustion(t *testing.T) {
	e := newEnv(t, smallRange(3))
	for i, want := range []string{"192.0.2.100", "192.0.2.101", "192.0.2.102"} {
		if got := dora(t, e, clientMAC(i)); got != want {
			t.Fatalf("client %d got %q, want %s", i, got, want)
		}
	}
	if got := offerIP(t, e, clientMAC(3)); got != "" {
		t.Fatalf("fourth client offered %s from a full range", got)
	}
	if ev := e.rec.last(t); ev.Type != EventIgnored || ev.Reason != ReasonRangeExhausted {
		t.Errorf("event = %s %q, want ignored/%q", ev.Type, ev.Reason, ReasonRangeExhausted)
	}
	if got := requestType(t, e, clientMAC(3), "192.0.2.101"); got != dhcpv4.MessageTypeNak {
		t.Errorf("REQUEST for another client's address: %s, want NAK", got)
	}
	// Owners keep their addresses.
	if got := offerIP(t, e, clientMAC(1)); got != "192.0.2.101" {
		t.Errorf("existing client re-offered %q", got)
	}
}

func TestReservationInsideRangeIsSkipped(t *testing.T) {
	e := newEnv(t, smallRange(3))
	reserved := &Machine{MAC: clientMAC(100), IP: netip.MustParseAddr("192.0.2.100")}
	e.backend.set(reserved)

	if got := dora(t, e, clientMAC(1)); got != "192.0.2.101" {
		t.Fatalf("dynamic client got %q, want 192.0.2.101 (skipping the reservation)", got)
	}
	if got := requestType(t, e, clientMAC(2), "192.0.2.100"); got != dhcpv4.MessageTypeNak {
		t.Errorf("INIT-REBOOT for a reserved address: %s, want NAK", got)
	}
	if got := dora(t, e, reserved.MAC); got != "192.0.2.100" {
		t.Errorf("reserved machine got %q", got)
	}
	if got := dora(t, e, clientMAC(2)); got != "192.0.2.102" {
		t.Errorf("second dynamic client got %q, want 192.0.2.102", got)
	}
}

func TestReservationConflict(t *testing.T) {
	e := newEnv(t, smallRange(3))
	squatter := clientMAC(1)
	if got := dora(t, e, squatter); got != "192.0.2.100" {
		t.Fatalf("squatter got %q", got)
	}
	// The reservation appears after the address was leased.
	owner := &Machine{MAC: clientMAC(100), IP: netip.MustParseAddr("192.0.2.100")}
	e.backend.set(owner)
	if got := offerIP(t, e, owner.MAC); got != "" {
		t.Fatalf("reserved address offered while leased to another client: %s", got)
	}
	if ev := e.rec.last(t); ev.Reason != ReasonReservationConflict {
		t.Errorf("event reason = %q, want %q", ev.Reason, ReasonReservationConflict)
	}
	// The squatter's renewal is refused now the address is reserved; once it
	// moved to another address the owner gets its reservation.
	if got := requestType(t, e, squatter, "192.0.2.100"); got != dhcpv4.MessageTypeNak {
		t.Errorf("squatter renewal: %s, want NAK", got)
	}
	if got := dora(t, e, squatter); got != "192.0.2.101" {
		t.Errorf("squatter moved to %q, want 192.0.2.101", got)
	}
	if got := dora(t, e, owner.MAC); got != "192.0.2.100" {
		t.Fatalf("owner got %q after the squatter moved", got)
	}
	want := map[string]string{owner.MAC.String(): "192.0.2.100", squatter.String(): "192.0.2.101"}
	if got := storedLeases(t, e); !maps.Equal(got, want) {
		t.Errorf("stored leases = %v, want %v", got, want)
	}
}

func TestReservationConflictExpiry(t *testing.T) {
	e := newEnv(t, smallRange(3))
	squatter := clientMAC(1)
	if got := dora(t, e, squatter); got != "192.0.2.100" {
		t.Fatalf("squatter got %q", got)
	}
	owner := &Machine{MAC: clientMAC(100), IP: netip.MustParseAddr("192.0.2.100")}
	e.backend.set(owner)
	// The squatter goes silent; its lease runs out.
	e.clock.Advance(time.Hour + time.Second)
	if got := dora(t, e, owner.MAC); got != "192.0.2.100" {
		t.Fatalf("owner got %q after the squatter's lease expired", got)
	}
	if got := storedLeases(t, e); len(got) != 1 || got[owner.MAC.String()] != "192.0.2.100" {
		t.Errorf("stored leases = %v, want only the owner's", got)
	}
}

func TestLeasesSurviveRestart(t *testing.T) {
	e := newEnv(t, smallRange(4))
	if dora(t, e, clientMAC(1)) != "192.0.2.100" || dora(t, e, clientMAC(2)) != "192.0.2.101" {
		t.Fatal("setup DORA failed")
	}
	// Restart: a fresh handler on the same store. Offers are not persisted,
	// leases are.
	e.h = e.newHandler(t)
	if got := offerIP(t, e, clientMAC(3)); got != "192.0.2.102" {
		t.Errorf("new client after restart got %q, want 192.0.2.102", got)
	}
	if got := offerIP(t, e, clientMAC(1)); got != "192.0.2.100" {
		t.Errorf("client 1 after restart offered %q, want its lease 192.0.2.100", got)
	}
	if got := requestType(t, e, clientMAC(2), "192.0.2.101"); got != dhcpv4.MessageTypeAck {
		t.Errorf("client 2 INIT-REBOOT after restart: %s, want ACK", got)
	}
	if got := requestType(t, e, clientMAC(3), "192.0.2.100"); got != dhcpv4.MessageTypeNak {
		t.Errorf("client 3 asking for client 1's address: %s, want NAK", got)
	}
}

// failingStore fails List until told otherwise.
type failingStore struct {
	MemoryLeaseStore
	mu       sync.Mutex
	failList bool
	failPut  bool
}

func (s *failingStore) List(ctx context.Context) ([]Lease, error) {
	s.mu.Lock()
	fail := s.failList
	s.mu.Unlock()
	if fail {
		return nil, errors.New("disk on fire")
	}
	return s.MemoryLeaseStore.List(ctx)
}

func (s *failingStore) Put(ctx context.Context, l Lease) error {
	s.mu.Lock()
	fail := s.failPut
	s.mu.Unlock()
	if fail {
		return errors.New("disk full")
	}
	return s.MemoryLeaseStore.Put(ctx, l)
}

func TestStoreFailures(t *testing.T) {
	cfg := testConfig()
	cfg.Unknown = UnknownServe
	store := &failingStore{failList: true}
	h, err := NewHandler(cfg, newFakeBackend(), store)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if r, err := h.Handle(ctx, discover(clientMAC(1), osClient), labIn); r != nil || err == nil {
		t.Fatalf("unloadable store: reply %v err %v, want error", r, err)
	}
	store.mu.Lock()
	store.failList, store.failPut = false, true
	store.mu.Unlock()
	offer, err := h.Handle(ctx, discover(clientMAC(1), osClient), labIn)
	if err != nil || offer == nil {
		t.Fatalf("offer after the store recovered: %v %v", offer, err)
	}
	if r, err := h.Handle(ctx, requestPkt(clientMAC(1), offer.YourIPAddr.String(), serverIP, osClient), labIn); r != nil || err == nil {
		t.Fatalf("failed Put: reply %v err %v, want no ACK and an error", r, err)
	}
	if ls, _ := store.List(ctx); len(ls) != 0 {
		t.Errorf("leases = %v", ls)
	}
}

func TestLeaseExpiryReuse(t *testing.T) {
	e := newEnv(t, smallRange(1))
	first, second := clientMAC(1), clientMAC(2)
	if got := dora(t, e, first); got != "192.0.2.100" {
		t.Fatalf("first client got %q", got)
	}
	if got := offerIP(t, e, second); got != "" {
		t.Fatalf("second client offered %s while the lease is live", got)
	}
	e.clock.Advance(30 * time.Minute)
	if got := offerIP(t, e, second); got != "" {
		t.Fatalf("second client offered %s before expiry", got)
	}
	e.clock.Advance(30*time.Minute + time.Second)
	if got := dora(t, e, second); got != "192.0.2.100" {
		t.Fatalf("second client got %q after expiry, want the reused address", got)
	}
	if got := storedLeases(t, e); len(got) != 1 || got[second.String()] != "192.0.2.100" {
		t.Errorf("stored leases = %v, want only the second client's", got)
	}
	if got := requestType(t, e, first, "192.0.2.100"); got != dhcpv4.MessageTypeNak {
		t.Errorf("expired client's renewal: %s, want NAK", got)
	}
}

func TestOfferHoldExpires(t *testing.T) {
	e := newEnv(t, smallRange(1))
	if got := offerIP(t, e, clientMAC(1)); got != "192.0.2.100" {
		t.Fatalf("first offer %q", got)
	}
	if got := offerIP(t, e, clientMAC(1)); got != "192.0.2.100" {
		t.Fatalf("repeated DISCOVER moved the offer to %q", got)
	}
	if got := offerIP(t, e, clientMAC(2)); got != "" {
		t.Fatalf("held address offered to another client: %s", got)
	}
	e.clock.Advance(defaultOfferHold + time.Second)
	if got := offerIP(t, e, clientMAC(2)); got != "192.0.2.100" {
		t.Fatalf("after the hold: %q", got)
	}
	if got := storedLeases(t, e); len(got) != 0 {
		t.Errorf("offers were persisted: %v", got)
	}
}

func TestDeclineHoldExpires(t *testing.T) {
	e := newEnv(t, smallRange(1))
	mac := clientMAC(1)
	if dora(t, e, mac) != "192.0.2.100" {
		t.Fatal("setup")
	}
	e.handle(t, mustPacket(append(base(dhcpv4.MessageTypeDecline, mac),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP{192, 0, 2, 100})))...), labIn)
	if got := offerIP(t, e, clientMAC(2)); got != "" {
		t.Fatalf("declined address offered: %s", got)
	}
	e.clock.Advance(defaultDeclineHold + time.Second)
	if got := offerIP(t, e, clientMAC(2)); got != "192.0.2.100" {
		t.Fatalf("after the decline hold: %q", got)
	}
}

func TestReleaseOfOthersAddressIgnored(t *testing.T) {
	e := newEnv(t, smallRange(2))
	if dora(t, e, clientMAC(1)) != "192.0.2.100" {
		t.Fatal("setup")
	}
	e.handle(t, mustPacket(append(base(dhcpv4.MessageTypeRelease, clientMAC(2)), withCIAddr("192.0.2.100"))...), labIn)
	if got := storedLeases(t, e); got[clientMAC(1).String()] != "192.0.2.100" {
		t.Errorf("a stranger's RELEASE freed the lease: %v", got)
	}
}

func TestConcurrentAllocationsAreUnique(t *testing.T) {
	e := newEnv(t, smallRange(64))
	const clients = 64
	got := make([]string, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			// Not dora: t.Fatal must not be called off the test goroutine.
			ctx := t.Context()
			offer, err := e.h.Handle(ctx, discover(clientMAC(i), osClient), labIn)
			if err != nil || offer == nil {
				return
			}
			ack, err := e.h.Handle(ctx, requestPkt(clientMAC(i), offer.YourIPAddr.String(), serverIP, osClient), labIn)
			if err == nil && ack != nil && ack.MessageType() == dhcpv4.MessageTypeAck {
				got[i] = ack.YourIPAddr.String()
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for i, ip := range got {
		if ip == "" {
			t.Errorf("client %d got no address", i)
			continue
		}
		if j, dup := seen[ip]; dup {
			t.Errorf("clients %d and %d both got %s", j, i, ip)
		}
		seen[ip] = i
	}
}

func TestPickSubnet(t *testing.T) {
	e := newEnv(t, nil)
	noDefault := newEnv(t, func(c *Config) { c.DefaultSubnet = "" })
	tests := []struct {
		name string
		h    *Handler
		pkt  *dhcpv4.DHCPv4
		in   Inbound
		want string
	}{
		{"giaddr", e.h, discover(macUEFI, relayed), relayIn, "rack2"},
		{"giaddr unknown", e.h, discover(macUEFI, dhcpv4.WithGatewayIP(net.IP{203, 0, 113, 1})), relayIn, ""},
		{"option 118 when relayed", e.h, discover(macUEFI, relayed,
			dhcpv4.WithGeneric(dhcpv4.OptionSubnetSelection, []byte{192, 0, 2, 0})), relayIn, "lab"},
		{"ciaddr", e.h, discover(macUEFI, withCIAddr("198.51.100.7")), Inbound{}, "rack2"},
		{"interface name", e.h, discover(macUEFI), Inbound{Interface: "eth-lab"}, "lab"},
		{"interface address", e.h, discover(macUEFI),
			Inbound{Interface: "enp1s0", InterfaceAddrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.2/24")}}, "rack2"},
		{"default", e.h, discover(macUEFI), Inbound{Interface: "enp9s0"}, "lab"},
		{"no default", noDefault.h, discover(macUEFI), Inbound{Interface: "enp9s0"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.h.pickSubnet(tc.pkt, tc.in)
			got := ""
			if s != nil {
				got = s.Name
			}
			if got != tc.want {
				t.Errorf("subnet = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReservationOnWrongSubnetIgnored(t *testing.T) {
	e := newEnv(t, nil)
	// macBIOS is reserved on lab but shows up behind the rack2 relay.
	if r := e.handle(t, discover(macBIOS, biosPXE, relayed), relayIn); r != nil {
		t.Fatalf("answered:\n%s", r.Summary())
	}
	if ev := e.rec.last(t); ev.Reason != ReasonWrongSubnet || ev.Subnet != "rack2" {
		t.Errorf("event = %+v", ev)
	}
}
