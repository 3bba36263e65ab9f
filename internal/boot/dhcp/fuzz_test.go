package dhcp

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// seedPackets are real requests of each kind the server meets; they are the
// committed corpus of FuzzHandle (testdata/fuzz/FuzzHandle).
func seedPackets() map[string]*dhcpv4.DHCPv4 {
	return map[string]*dhcpv4.DHCPv4{
		"discover_bios_pxe":   discover(macBIOS, biosPXE),
		"discover_uefi_pxe":   discover(macUEFI, uefiPXE),
		"discover_uefi_http":  discover(macUEFI, uefiHTTP),
		"discover_ipxe":       discover(macUEFI, ipxe),
		"discover_os":         discover(macBIOS, osClient),
		"discover_relayed":    discover(macRelayed, uefiPXE, relayed),
		"discover_unknown":    discover(macUnknown, armPXE),
		"request_selecting":   requestPkt(macUEFI, "192.0.2.100", serverIP, uefiPXE),
		"request_init_reboot": requestPkt(macBIOS, "192.0.2.11", netip.Addr{}, osClient),
		"request_renewing":    mustPacket(append(base(dhcpv4.MessageTypeRequest, macUEFI), withCIAddr("192.0.2.100"))...),
		"request_boot_server": mustPacket(append(base(dhcpv4.MessageTypeRequest, macUEFI), uefiPXE, withCIAddr("192.0.2.77"),
			dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{71, 4, 0x80, 0, 0, 0, 255}))...),
		"release": mustPacket(append(base(dhcpv4.MessageTypeRelease, macUEFI), withCIAddr("192.0.2.100"))...),
		"decline": mustPacket(append(base(dhcpv4.MessageTypeDecline, macUEFI),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ipOf(netip.MustParseAddr("192.0.2.100")))))...),
		"inform": mustPacket(append(base(dhcpv4.MessageTypeInform, macUEFI), withCIAddr("192.0.2.77"))...),
	}
}

const fuzzCorpusDir = "testdata/fuzz/FuzzHandle"

func corpusFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

// TestFuzzSeedCorpus keeps the committed corpus in sync with seedPackets
// (regenerate with -update).
func TestFuzzSeedCorpus(t *testing.T) {
	for name, p := range seedPackets() {
		path := filepath.Join(fuzzCorpusDir, name)
		want := corpusFile(p.ToBytes())
		if updating() {
			if err := os.MkdirAll(fuzzCorpusDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("seed %s missing (regenerate with -update): %v", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("seed %s out of date (regenerate with -update)", name)
		}
	}
}

func fuzzHandlers(tb testing.TB) []*Handler {
	var hs []*Handler
	for _, mutate := range []func(*Config){
		func(c *Config) { c.Unknown = UnknownServe; c.Boot.PXEBootServer = true },
		func(c *Config) { c.Unknown = UnknownDiscover },
		func(c *Config) { proxyMode(c); c.Unknown = UnknownServe },
	} {
		hs = append(hs, newEnv(tb, mutate).h)
	}
	return hs
}

// FuzzHandle feeds arbitrary datagrams through the parser and every handler
// mode on both ports. Replies must serialise and re-parse; nothing may panic.
func FuzzHandle(f *testing.F) {
	hs := fuzzHandlers(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		for _, h := range hs {
			for _, in := range []Inbound{
				labIn,
				relayIn,
				{Peer: netip.MustParseAddrPort("192.0.2.77:4011"), PXEPort: true},
			} {
				reply, _ := h.Handle(t.Context(), req, in)
				if reply == nil {
					continue
				}
				if reply.OpCode != dhcpv4.OpcodeBootReply || reply.TransactionID != req.TransactionID {
					t.Fatalf("bad reply header:\n%s", reply.Summary())
				}
				if _, err := dhcpv4.FromBytes(reply.ToBytes()); err != nil {
					t.Fatalf("reply does not re-parse: %v\n%s", err, reply.Summary())
				}
				if dst, _ := replyDestination(req, reply, in, ClientPort, ServerPort, false); dst == nil || dst.IP == nil {
					t.Fatalf("no destination for reply")
				}
			}
		}
	})
}
