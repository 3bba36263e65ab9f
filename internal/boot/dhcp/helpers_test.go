package dhcp

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var update = flag.Bool("update", false, "rewrite testdata golden files and the fuzz seed corpus")

func updating() bool { return *update || os.Getenv("UPDATE_GOLDEN") == "1" }

// Test network: everything lives in documentation ranges and is only ever
// data inside packets; nothing is sent anywhere but loopback.
var (
	serverIP   = netip.MustParseAddr("192.0.2.1")
	relayIP    = netip.MustParseAddr("198.51.100.1")
	httpBase   = "http://192.0.2.1:8080/ipxe/"
	testXID    = dhcpv4.TransactionID{0xde, 0xad, 0xbe, 0xef}
	testGUID   = append([]byte{0}, []byte("0123456789abcdef")...)
	labIfIndex = 3
	labIn      = Inbound{IfIndex: labIfIndex, Interface: "eth-lab", Peer: netip.MustParseAddrPort("0.0.0.0:68")}
	relayIn    = Inbound{IfIndex: 4, Interface: "eth-up", Peer: netip.MustParseAddrPort("198.51.100.1:67")}

	macBIOS    = mustMAC("52:54:00:00:00:01") // static 192.0.2.11
	macUEFI    = mustMAC("52:54:00:00:00:02") // dynamic on lab
	macRelayed = mustMAC("52:54:00:00:00:03") // dynamic on rack2 (relayed)
	macNoBoot  = mustMAC("52:54:00:00:00:04") // Netboot false
	macUnknown = mustMAC("52:54:00:00:00:99")
)

const secretToken = "s3cr3t-t0ken"

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func scriptURL(mac net.HardwareAddr) string {
	return fmt.Sprintf("http://192.0.2.1:8080/ipxe/script/%s?token=%s", mac, secretToken)
}

func testMachines() []*Machine {
	return []*Machine{
		{MAC: macBIOS, IP: netip.MustParseAddr("192.0.2.11"), Hostname: "node1", ScriptURL: scriptURL(macBIOS), Netboot: true},
		{MAC: macUEFI, Hostname: "node2", ScriptURL: scriptURL(macUEFI), Netboot: true},
		{MAC: macRelayed, Hostname: "node3", ScriptURL: scriptURL(macRelayed), Netboot: true},
		{MAC: macNoBoot, Hostname: "node4", ScriptURL: scriptURL(macNoBoot), Netboot: false},
	}
}

func testConfig() Config {
	return Config{
		ServerIP: serverIP,
		Subnets: []Subnet{
			{
				Name:       "lab",
				Prefix:     netip.MustParsePrefix("192.0.2.0/24"),
				RangeStart: netip.MustParseAddr("192.0.2.100"),
				RangeEnd:   netip.MustParseAddr("192.0.2.199"),
				Routers:    []netip.Addr{netip.MustParseAddr("192.0.2.1")},
				DNS:        []netip.Addr{netip.MustParseAddr("192.0.2.53")},
				NTP:        []netip.Addr{netip.MustParseAddr("192.0.2.123")},
				DomainName: "lab.example",
				LeaseTime:  time.Hour,
				Interface:  "eth-lab",
			},
			{
				Name:       "rack2",
				Prefix:     netip.MustParsePrefix("198.51.100.0/24"),
				RangeStart: netip.MustParseAddr("198.51.100.10"),
				RangeEnd:   netip.MustParseAddr("198.51.100.20"),
				Routers:    []netip.Addr{relayIP},
				DNS:        []netip.Addr{netip.MustParseAddr("192.0.2.53")},
				DomainName: "rack2.lab.example",
				LeaseTime:  30 * time.Minute,
			},
		},
		DefaultSubnet: "lab",
		Boot:          BootConfig{HTTPBaseURL: httpBase},
	}
}

// fakeBackend is an in-memory Backend.
type fakeBackend struct {
	mu          sync.Mutex
	machines    map[string]*Machine
	lookups     []LookupRequest
	discoveries []Discovery
	lookupErr   error
	// block, when set, makes Lookup wait for it to close; entered is
	// signalled first.
	block   chan struct{}
	entered chan struct{}
}

func newFakeBackend(ms ...*Machine) *fakeBackend {
	b := &fakeBackend{machines: map[string]*Machine{}}
	for _, m := range ms {
		b.machines[string(m.MAC)] = m
	}
	return b
}

func (b *fakeBackend) Lookup(ctx context.Context, req LookupRequest) (*Machine, error) {
	b.mu.Lock()
	b.lookups = append(b.lookups, req)
	block, entered, lerr := b.block, b.entered, b.lookupErr
	m := b.machines[string(req.MAC)]
	b.mu.Unlock()
	if block != nil {
		entered <- struct{}{}
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if lerr != nil {
		return nil, lerr
	}
	if m == nil {
		return nil, fmt.Errorf("mac %s: %w", req.MAC, ErrUnknownMachine)
	}
	c := *m
	return &c, nil
}

func (b *fakeBackend) RecordDiscovery(_ context.Context, d Discovery) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.discoveries = append(b.discoveries, d)
	return nil
}

func (b *fakeBackend) ReservedBy(_ context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.machines {
		if m.IP == ip {
			return m.MAC, nil
		}
	}
	return nil, nil
}

func (b *fakeBackend) set(m *Machine) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.machines[string(m.MAC)] = m
}

func (b *fakeBackend) lastLookup(t *testing.T) LookupRequest {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.lookups) == 0 {
		t.Fatal("backend was not asked")
	}
	return b.lookups[len(b.lookups)-1]
}

// recorder is an Observer keeping every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
	ch     chan Event // optional
}

func (r *recorder) Observe(_ context.Context, e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	ch := r.ch
	r.mu.Unlock()
	if ch != nil {
		ch <- e
	}
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

func (r *recorder) last(t *testing.T) Event {
	t.Helper()
	ev := r.all()
	if len(ev) == 0 {
		t.Fatal("no event observed")
	}
	return ev[len(ev)-1]
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a Handler with fakes around it.
type env struct {
	h       *Handler
	backend *fakeBackend
	store   *MemoryLeaseStore
	rec     *recorder
	clock   *fakeClock
	cfg     Config
	ctx     context.Context
}

func newEnv(t testing.TB, mutate func(*Config)) *env {
	t.Helper()
	e := &env{backend: newFakeBackend(testMachines()...), store: &MemoryLeaseStore{}, rec: &recorder{}, clock: newFakeClock(), ctx: t.Context()}
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	cfg.Observer = e.rec
	cfg.Now = e.clock.Now
	e.cfg = cfg
	e.h = e.newHandler(t)
	return e
}

// newBenchEnv is newEnv without the recording observer, which would grow
// without bound.
func newBenchEnv(b *testing.B, mutate func(*Config)) *env {
	e := newEnv(b, mutate)
	e.cfg.Observer = nil
	e.h = e.newHandler(b)
	return e
}

// newHandler makes another handler on the same backend and store, as after a
// restart.
func (e *env) newHandler(t testing.TB) *Handler {
	t.Helper()
	h, err := NewHandler(e.cfg, e.backend, e.store)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	return h
}

func (e *env) handle(t testing.TB, req *dhcpv4.DHCPv4, in Inbound) *dhcpv4.DHCPv4 {
	t.Helper()
	reply, err := e.h.Handle(t.Context(), req, in)
	if err != nil {
		t.Fatalf("Handle(%s): %v", req.MessageType(), err)
	}
	return reply
}

// Packet builders ---------------------------------------------------------

func mustPacket(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	p, err := dhcpv4.New(mods...)
	if err != nil {
		panic(err)
	}
	// Round-trip through the wire format so tests see what a server sees.
	p, err = dhcpv4.FromBytes(p.ToBytes())
	if err != nil {
		panic(err)
	}
	return p
}

func base(mt dhcpv4.MessageType, mac net.HardwareAddr) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithTransactionID(testXID),
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithRequestedOptions(
			dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionDomainName, dhcpv4.OptionHostName, dhcpv4.OptionTFTPServerName,
			dhcpv4.OptionBootfileName),
	}
}

func discover(mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return mustPacket(append(base(dhcpv4.MessageTypeDiscover, mac), mods...)...)
}

// request builds a SELECTING-state REQUEST for ip from server sid.
func requestPkt(mac net.HardwareAddr, ip string, sid netip.Addr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m := base(dhcpv4.MessageTypeRequest, mac)
	m = append(m, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip))))
	if sid.IsValid() {
		m = append(m, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ipOf(sid))))
	}
	return mustPacket(append(m, mods...)...)
}

func withFirmware(vendorClass string, arch iana.Arch) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptClassIdentifier(vendorClass))
		d.UpdateOption(dhcpv4.OptClientArch(arch))
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(94), []byte{1, 3, 16}))
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, testGUID))
	}
}

var (
	biosPXE  = withFirmware("PXEClient:Arch:00000:UNDI:002001", iana.INTEL_X86PC)
	uefiPXE  = withFirmware("PXEClient:Arch:00007:UNDI:003016", iana.EFI_X86_64)
	uefiHTTP = withFirmware("HTTPClient:Arch:00016:UNDI:003001", iana.EFI_X86_64_HTTP)
	armPXE   = withFirmware("PXEClient:Arch:00011:UNDI:003000", iana.EFI_ARM64)
	armHTTP  = withFirmware("HTTPClient:Arch:00019:UNDI:003000", iana.EFI_ARM64_HTTP)
)

// ipxe is iPXE's own DHCP: PXEClient vendor class, user class "iPXE" and
// option 175 with feature flags.
func ipxe(d *dhcpv4.DHCPv4) {
	uefiPXE(d)
	d.UpdateOption(dhcpv4.OptUserClass("iPXE"))
	d.UpdateOption(dhcpv4.OptGeneric(optIPXE, []byte{19, 1, 1, 16, 1, 2}))
}

func osClient(d *dhcpv4.DHCPv4) {
	d.UpdateOption(dhcpv4.OptClassIdentifier("MSFT 5.0"))
	d.UpdateOption(dhcpv4.OptHostName("localhost"))
}

var relayAgentInfo = dhcpv4.OptRelayAgentInfo(
	dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("Ethernet1/7")),
	dhcpv4.OptGeneric(dhcpv4.AgentRemoteIDSubOption, []byte("tor-7")),
)

func relayed(d *dhcpv4.DHCPv4) {
	d.GatewayIPAddr = ipOf(relayIP)
	d.HopCount = 1
	d.UpdateOption(relayAgentInfo)
}

func withCIAddr(ip string) dhcpv4.Modifier {
	return dhcpv4.WithClientIP(net.ParseIP(ip).To4())
}

// Golden files ----------------------------------------------------------------

func summary(p *dhcpv4.DHCPv4) string {
	if p == nil {
		return "<no reply>\n"
	}
	return p.Summary()
}

func checkGolden(t *testing.T, name string, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if updating() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (regenerate with go test -update or UPDATE_GOLDEN=1): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("reply differs from %s (-want +got):\n%s", path, diff)
	}
}
