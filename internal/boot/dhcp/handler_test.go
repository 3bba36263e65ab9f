package dhcp

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// want lists the fields a golden case asserts directly, so a failure names
// the field before the Summary diff.
type want struct {
	noReply bool
	msgType dhcpv4.MessageType
	yiaddr  string // "" skips; "0.0.0.0" for none
	ciaddr  string
	siaddr  string
	giaddr  string
	file    string
	// opts are exact option values; absent lists options that must not be
	// present.
	opts   map[dhcpv4.OptionCode][]byte
	absent []dhcpv4.OptionCode
	// dst is where the reply goes ("ip:port"), dstIf the interface index a
	// broadcast is pinned to.
	dst   string
	dstIf int
	event EventType
	// reason is the last event's Reason.
	reason Reason
}

func str(s string) []byte { return []byte(s) }

var pxeOpt43 = []byte{6, 1, 8, 255}

func TestGoldenReplies(t *testing.T) {
	bcast := "255.255.255.255:68"
	longScript := "http://192.0.2.1:8080/ipxe/script/" + strings.Repeat("x", 120) + "?token=" + secretToken
	tests := []struct {
		name string
		cfg  func(*Config)
		// prior are sent first; their replies feed req.
		prior []func(e *env) *dhcpv4.DHCPv4
		req   func(prior []*dhcpv4.DHCPv4) *dhcpv4.DHCPv4
		in    Inbound
		want  want
		check func(t *testing.T, e *env, reply *dhcpv4.DHCPv4)
	}{
		{
			name: "bios_pxe_discover",
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macBIOS, biosPXE) },
			in:   labIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, yiaddr: "192.0.2.11", siaddr: "192.0.2.1", file: "undionly.kpxe",
				opts: map[dhcpv4.OptionCode][]byte{
					dhcpv4.OptionTFTPServerName:   str("192.0.2.1"),
					dhcpv4.OptionBootfileName:     str("undionly.kpxe"),
					dhcpv4.OptionServerIdentifier: {192, 0, 2, 1},
					dhcpv4.OptionHostName:         str("node1"),
					dhcpv4.OptionDomainName:       str("lab.example"),
					dhcpv4.OptionSubnetMask:       {255, 255, 255, 0},
					dhcpv4.OptionRouter:           {192, 0, 2, 1},
					dhcpv4.OptionDomainNameServer: {192, 0, 2, 53},
				},
				absent: []dhcpv4.OptionCode{dhcpv4.OptionClassIdentifier, dhcpv4.OptionVendorSpecificInformation, optIPXE},
				dst:    bcast, dstIf: labIfIndex, event: EventOffer,
			},
		},
		{
			name: "uefi_pxe_discover_no_4011",
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUEFI, uefiPXE) },
			in:   labIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, yiaddr: "192.0.2.100", siaddr: "192.0.2.1", file: "ipxe.efi",
				opts:   map[dhcpv4.OptionCode][]byte{dhcpv4.OptionTFTPServerName: str("192.0.2.1")},
				absent: []dhcpv4.OptionCode{dhcpv4.OptionClassIdentifier, dhcpv4.OptionVendorSpecificInformation, dhcpv4.OptionClientMachineIdentifier},
				dst:    bcast, dstIf: labIfIndex, event: EventOffer,
			},
		},
		{
			name: "uefi_pxe_discover_with_4011",
			cfg:  func(c *Config) { c.Boot.PXEBootServer = true },
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUEFI, uefiPXE) },
			in:   labIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, yiaddr: "192.0.2.100", siaddr: "192.0.2.1", file: "ipxe.efi",
				opts: map[dhcpv4.OptionCode][]byte{
					dhcpv4.OptionClassIdentifier:           str("PXEClient"),
					dhcpv4.OptionVendorSpecificInformation: pxeOpt43,
					dhcpv4.OptionClientMachineIdentifier:   testGUID,
				},
				dst: bcast, dstIf: labIfIndex, event: EventOffer,
			},
		},
		{
			name: "uefi_pxe_snponly",
			cfg:  func(c *Config) { c.Boot.EFIx64File = "snponly.efi" },
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUEFI, uefiPXE) },
			in:   labIn,
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "192.0.2.100", file: "snponly.efi", event: EventOffer},
		},
		{
			name: "uefi_http_boot",
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUEFI, uefiHTTP) },
			in:   labIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, yiaddr: "192.0.2.100", siaddr: "0.0.0.0",
				file: "http://192.0.2.1:8080/ipxe/ipxe.efi",
				opts: map[dhcpv4.OptionCode][]byte{
					dhcpv4.OptionClassIdentifier: str("HTTPClient"),
					dhcpv4.OptionBootfileName:    str("http://192.0.2.1:8080/ipxe/ipxe.efi"),
				},
				absent: []dhcpv4.OptionCode{dhcpv4.OptionTFTPServerName, dhcpv4.OptionVendorSpecificInformation},
				event:  EventOffer,
			},
		},
		{
			name: "arm64_pxe",
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUEFI, armPXE) },
			in:   labIn,
			want: want{msgType: dhcpv4.MessageTypeOffer, siaddr: "192.0.2.1", file: "snp.efi", event: EventOffer},
		},
		{
			name: "arm64_http_boot",
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUEFI, armHTTP) },
			in:   labIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, file: "http://192.0.2.1:8080/ipxe/snp.efi",
				opts: map[dhcpv4.OptionCode][]byte{dhcpv4.OptionClassIdentifier: str("HTTPClient")}, event: EventOffer,
			},
		},
		{
			name: "ipxe_script",
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUEFI, ipxe) },
			in:   labIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, yiaddr: "192.0.2.100", siaddr: "0.0.0.0", file: scriptURL(macUEFI),
				opts: map[dhcpv4.OptionCode][]byte{
					optIPXE:                   {176, 1, 1},
					dhcpv4.OptionBootfileName: str(scriptURL(macUEFI)),
				},
				absent: []dhcpv4.OptionCode{dhcpv4.OptionClassIdentifier, dhcpv4.OptionTFTPServerName},
				event:  EventOffer,
			},
			check: func(t *testing.T, e *env, _ *dhcpv4.DHCPv4) {
				if got := e.rec.last(t).BootFile; got != "script" {
					t.Errorf("event BootFile = %q, want the redacted %q", got, "script")
				}
			},
		},
		{
			name: "ipxe_long_script_url",
			prior: []func(*env) *dhcpv4.DHCPv4{func(e *env) *dhcpv4.DHCPv4 {
				e.backend.set(&Machine{MAC: macUEFI, ScriptURL: longScript, Netboot: true})
				return nil
			}},
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUEFI, ipxe) },
			in:  labIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, file: "",
				opts: map[dhcpv4.OptionCode][]byte{dhcpv4.OptionBootfileName: str(longScript)}, event: EventOffer,
			},
		},
		{
			name: "ipxe_by_option_175_only",
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return discover(macUEFI, uefiPXE, dhcpv4.WithGeneric(optIPXE, []byte{19, 1, 1}))
			},
			in:   labIn,
			want: want{msgType: dhcpv4.MessageTypeOffer, file: scriptURL(macUEFI), event: EventOffer},
		},
		{
			name: "relayed_option82",
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macRelayed, uefiPXE, relayed) },
			in:   relayIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, yiaddr: "198.51.100.10", giaddr: "198.51.100.1", file: "ipxe.efi",
				opts: map[dhcpv4.OptionCode][]byte{
					dhcpv4.OptionRelayAgentInformation: relayAgentInfo.Value.ToBytes(),
					dhcpv4.OptionRouter:                {198, 51, 100, 1},
					dhcpv4.OptionDomainName:            str("rack2.lab.example"),
					dhcpv4.OptionIPAddressLeaseTime:    {0, 0, 0x07, 0x08},
				},
				dst: "198.51.100.1:67", event: EventOffer,
			},
			check: func(t *testing.T, e *env, _ *dhcpv4.DHCPv4) {
				l := e.backend.lastLookup(t)
				if l.CircuitID != "Ethernet1/7" || l.RemoteID != "tor-7" || l.RelayAddr != relayIP {
					t.Errorf("lookup facts = circuit %q remote %q relay %s", l.CircuitID, l.RemoteID, l.RelayAddr)
				}
				if ev := e.rec.last(t); ev.Subnet != "rack2" || ev.CircuitID != "Ethernet1/7" {
					t.Errorf("event subnet %q circuit %q", ev.Subnet, ev.CircuitID)
				}
			},
		},
		{
			name: "relayed_link_selection",
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return discover(macUEFI, uefiPXE, func(d *dhcpv4.DHCPv4) {
					d.GatewayIPAddr = net.IP{203, 0, 113, 1}
					d.UpdateOption(dhcpv4.OptRelayAgentInfo(
						dhcpv4.OptGeneric(dhcpv4.LinkSelectionSubOption, []byte{192, 0, 2, 0})))
				})
			},
			in:   relayIn,
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "192.0.2.100", giaddr: "203.0.113.1", file: "ipxe.efi", dst: "203.0.113.1:67", event: EventOffer},
		},
		{
			name: "relayed_unknown_giaddr",
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return discover(macUEFI, uefiPXE, dhcpv4.WithGatewayIP(net.IP{203, 0, 113, 1}))
			},
			in:   relayIn,
			want: want{noReply: true, event: EventIgnored, reason: ReasonNoSubnet},
		},
		{
			name: "unknown_mac_ignored",
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUnknown, uefiPXE) },
			in:   labIn,
			want: want{noReply: true, event: EventIgnored, reason: ReasonUnknownMachine},
			check: func(t *testing.T, e *env, _ *dhcpv4.DHCPv4) {
				if len(e.backend.discoveries) != 0 {
					t.Errorf("discoveries recorded under UnknownIgnore: %v", e.backend.discoveries)
				}
			},
		},
		{
			name: "unknown_mac_discovery",
			cfg:  func(c *Config) { c.Unknown = UnknownDiscover },
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUnknown, uefiPXE, relayed) },
			in:   relayIn,
			want: want{noReply: true, event: EventDiscovered},
			check: func(t *testing.T, e *env, _ *dhcpv4.DHCPv4) {
				if len(e.backend.discoveries) != 1 {
					t.Fatalf("got %d discoveries, want 1", len(e.backend.discoveries))
				}
				d := e.backend.discoveries[0]
				if !bytes.Equal(d.MAC, macUnknown) || !d.HasArch || d.Arch != iana.EFI_X86_64 ||
					d.VendorClass != "PXEClient:Arch:00007:UNDI:003016" || d.Client != ClientPXE ||
					d.CircuitID != "Ethernet1/7" || d.RemoteID != "tor-7" || d.RelayAddr != relayIP ||
					d.Interface != "eth-up" || !d.Seen.Equal(e.clock.Now()) {
					t.Errorf("discovery = %+v", d)
				}
			},
		},
		{
			name: "unknown_mac_served",
			cfg: func(c *Config) {
				c.Unknown = UnknownServe
				c.Boot.UnknownScriptURL = "http://192.0.2.1:8080/discover.ipxe"
			},
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUnknown, ipxe) },
			in:   labIn,
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "192.0.2.100", file: "http://192.0.2.1:8080/discover.ipxe", event: EventOffer},
		},
		{
			name: "os_client_address_only",
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macBIOS, osClient) },
			in:   labIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, yiaddr: "192.0.2.11", siaddr: "0.0.0.0", file: "",
				opts: map[dhcpv4.OptionCode][]byte{dhcpv4.OptionHostName: str("node1")},
				absent: []dhcpv4.OptionCode{dhcpv4.OptionBootfileName, dhcpv4.OptionTFTPServerName,
					dhcpv4.OptionClassIdentifier, optIPXE, dhcpv4.OptionVendorSpecificInformation},
				event: EventOffer,
			},
		},
		{
			name: "netboot_disabled",
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macNoBoot, uefiPXE) },
			in:   labIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, yiaddr: "192.0.2.100", siaddr: "0.0.0.0", file: "",
				absent: []dhcpv4.OptionCode{dhcpv4.OptionBootfileName, dhcpv4.OptionTFTPServerName},
				event:  EventOffer, reason: ReasonNetbootDisabled,
			},
		},
		{
			name: "unsupported_arch_address_only",
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return discover(macUEFI, withFirmware("PXEClient:Arch:00006:UNDI:003000", iana.EFI_IA32))
			},
			in:   labIn,
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "192.0.2.100", file: "", event: EventOffer, reason: ReasonNoBootFile},
		},
		{
			name:  "request_ack",
			prior: []func(*env) *dhcpv4.DHCPv4{sendDiscover(macUEFI, uefiPXE)},
			req: func(p []*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return requestPkt(macUEFI, p[0].YourIPAddr.String(), serverIP, uefiPXE)
			},
			in: labIn,
			want: want{
				msgType: dhcpv4.MessageTypeAck, yiaddr: "192.0.2.100", ciaddr: "0.0.0.0", file: "ipxe.efi",
				opts: map[dhcpv4.OptionCode][]byte{dhcpv4.OptionIPAddressLeaseTime: {0, 0, 0x0e, 0x10}},
				dst:  bcast, dstIf: labIfIndex, event: EventAck,
			},
			check: func(t *testing.T, e *env, _ *dhcpv4.DHCPv4) {
				ls, _ := e.store.List(t.Context())
				if len(ls) != 1 || ls[0].IP.String() != "192.0.2.100" || !bytes.Equal(ls[0].MAC, macUEFI) ||
					!ls[0].Expires.Equal(e.clock.Now().Add(time.Hour)) || ls[0].Subnet != "lab" {
					t.Errorf("stored leases = %+v", ls)
				}
			},
		},
		{
			name:  "renew_unicast",
			prior: []func(*env) *dhcpv4.DHCPv4{sendDiscover(macUEFI, osClient), sendRequest(macUEFI, "192.0.2.100", osClient)},
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return mustPacket(append(base(dhcpv4.MessageTypeRequest, macUEFI), withCIAddr("192.0.2.100"), osClient)...)
			},
			in:   Inbound{IfIndex: 9, Interface: "eth-other", Peer: netip.MustParseAddrPort("192.0.2.100:68")},
			want: want{msgType: dhcpv4.MessageTypeAck, yiaddr: "192.0.2.100", ciaddr: "192.0.2.100", dst: "192.0.2.100:68", event: EventAck},
		},
		{
			name: "request_wrong_address_nak",
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return requestPkt(macBIOS, "192.0.2.150", serverIP, biosPXE) },
			in:   labIn,
			want: want{
				msgType: dhcpv4.MessageTypeNak, yiaddr: "0.0.0.0",
				opts:   map[dhcpv4.OptionCode][]byte{dhcpv4.OptionMessage: str(string(ReasonAddressUnavailable))},
				absent: []dhcpv4.OptionCode{dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionBootfileName},
				dst:    bcast, dstIf: labIfIndex, event: EventNak, reason: ReasonAddressUnavailable,
			},
		},
		{
			name: "request_wrong_network_nak",
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return requestPkt(macUEFI, "10.9.9.9", netip.Addr{}, osClient) // INIT-REBOOT from another network
			},
			in:   labIn,
			want: want{msgType: dhcpv4.MessageTypeNak, event: EventNak, reason: ReasonWrongNetwork, dst: bcast, dstIf: labIfIndex},
		},
		{
			name: "relayed_nak_broadcast_bit",
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return requestPkt(macRelayed, "198.51.100.99", netip.Addr{}, relayed)
			},
			in: relayIn,
			want: want{
				msgType: dhcpv4.MessageTypeNak, giaddr: "198.51.100.1", dst: "198.51.100.1:67", event: EventNak,
				reason: ReasonAddressUnavailable,
				opts:   map[dhcpv4.OptionCode][]byte{dhcpv4.OptionRelayAgentInformation: relayAgentInfo.Value.ToBytes()},
			},
			check: func(t *testing.T, _ *env, reply *dhcpv4.DHCPv4) {
				if !reply.IsBroadcast() {
					t.Error("relayed NAK without broadcast bit")
				}
			},
		},
		{
			name:  "request_for_other_server",
			prior: []func(*env) *dhcpv4.DHCPv4{sendDiscover(macUEFI, uefiPXE)},
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return requestPkt(macUEFI, "192.0.2.250", netip.MustParseAddr("192.0.2.254"), uefiPXE)
			},
			in:   labIn,
			want: want{noReply: true, event: EventOffer},
			check: func(t *testing.T, e *env, _ *dhcpv4.DHCPv4) {
				// The offer hold was dropped: .100 goes round again.
				if !rangeReturns(t, e, "192.0.2.100") {
					t.Error("cancelled offer still holds 192.0.2.100")
				}
			},
		},
		{
			name:  "release_frees_lease",
			prior: []func(*env) *dhcpv4.DHCPv4{sendDiscover(macUEFI, osClient), sendRequest(macUEFI, "192.0.2.100", osClient)},
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return mustPacket(append(base(dhcpv4.MessageTypeRelease, macUEFI), withCIAddr("192.0.2.100"),
					dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ipOf(serverIP))))...)
			},
			in:   labIn,
			want: want{noReply: true, event: EventRelease},
			check: func(t *testing.T, e *env, _ *dhcpv4.DHCPv4) {
				if ls, _ := e.store.List(t.Context()); len(ls) != 0 {
					t.Errorf("leases after release = %+v", ls)
				}
				// The next-fit cursor moved on, so fill the range once to
				// see .100 handed out again.
				if !rangeReturns(t, e, "192.0.2.100") {
					t.Error("released address never handed out again")
				}
			},
		},
		{
			name:  "decline_quarantines",
			prior: []func(*env) *dhcpv4.DHCPv4{sendDiscover(macUEFI, osClient), sendRequest(macUEFI, "192.0.2.100", osClient)},
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return mustPacket(append(base(dhcpv4.MessageTypeDecline, macUEFI),
					dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP{192, 0, 2, 100})),
					dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ipOf(serverIP))))...)
			},
			in:   labIn,
			want: want{noReply: true, event: EventDecline},
			check: func(t *testing.T, e *env, _ *dhcpv4.DHCPv4) {
				if ls, _ := e.store.List(t.Context()); len(ls) != 0 {
					t.Errorf("leases after decline = %+v", ls)
				}
				r := e.handle(t, discover(macUEFI, osClient), labIn)
				if r == nil || r.YourIPAddr.String() != "192.0.2.101" {
					t.Errorf("offer after decline = %v, want 192.0.2.101", r)
				}
				if rangeReturns(t, e, "192.0.2.100") {
					t.Error("declined address handed out during the hold")
				}
			},
		},
		{
			name: "inform",
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return mustPacket(append(base(dhcpv4.MessageTypeInform, macUEFI), withCIAddr("192.0.2.77"))...)
			},
			in: Inbound{Peer: netip.MustParseAddrPort("192.0.2.77:68")},
			want: want{
				msgType: dhcpv4.MessageTypeAck, yiaddr: "0.0.0.0", ciaddr: "192.0.2.77", dst: "192.0.2.77:68", event: EventAck,
				absent: []dhcpv4.OptionCode{dhcpv4.OptionIPAddressLeaseTime},
			},
		},
		{
			name: "proxy_offer_uefi_pxe",
			cfg:  proxyMode,
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUEFI, uefiPXE) },
			in:   labIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, yiaddr: "0.0.0.0", siaddr: "192.0.2.1", file: "ipxe.efi",
				opts: map[dhcpv4.OptionCode][]byte{
					dhcpv4.OptionClassIdentifier:           str("PXEClient"),
					dhcpv4.OptionVendorSpecificInformation: pxeOpt43,
					dhcpv4.OptionServerIdentifier:          {192, 0, 2, 1},
					dhcpv4.OptionClientMachineIdentifier:   testGUID,
				},
				absent: []dhcpv4.OptionCode{dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionSubnetMask,
					dhcpv4.OptionRouter, optIPXE},
				dst: bcast, dstIf: labIfIndex, event: EventOffer,
			},
		},
		{
			name: "proxy_offer_ipxe",
			cfg:  proxyMode,
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUEFI, ipxe) },
			in:   labIn,
			want: want{
				msgType: dhcpv4.MessageTypeOffer, yiaddr: "0.0.0.0", file: scriptURL(macUEFI),
				opts:   map[dhcpv4.OptionCode][]byte{dhcpv4.OptionClassIdentifier: str("PXEClient")},
				absent: []dhcpv4.OptionCode{optIPXE},
				event:  EventOffer,
			},
		},
		{
			name: "proxy_ignores_os_client",
			cfg:  proxyMode,
			req:  func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return discover(macUEFI, osClient) },
			in:   labIn,
			want: want{noReply: true},
		},
		{
			name: "proxy_ignores_request_on_67",
			cfg:  proxyMode,
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return requestPkt(macUEFI, "192.0.2.77", netip.MustParseAddr("192.0.2.254"), uefiPXE)
			},
			in:   labIn,
			want: want{noReply: true},
		},
		{
			name: "boot_server_4011",
			cfg:  proxyMode,
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return mustPacket(append(base(dhcpv4.MessageTypeRequest, macUEFI), uefiPXE, withCIAddr("192.0.2.77"),
					dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{71, 4, 0x80, 0x00, 0x00, 0x00, 255}))...)
			},
			in: Inbound{IfIndex: labIfIndex, Interface: "eth-lab", Peer: netip.MustParseAddrPort("192.0.2.77:4011"), PXEPort: true},
			want: want{
				msgType: dhcpv4.MessageTypeAck, yiaddr: "0.0.0.0", ciaddr: "192.0.2.77", siaddr: "192.0.2.1", file: "ipxe.efi",
				opts: map[dhcpv4.OptionCode][]byte{
					dhcpv4.OptionClassIdentifier:           str("PXEClient"),
					dhcpv4.OptionVendorSpecificInformation: {6, 1, 8, 71, 4, 0x80, 0, 0, 0, 255},
				},
				dst: "192.0.2.77:4011", event: EventAck,
			},
			check: func(t *testing.T, e *env, _ *dhcpv4.DHCPv4) {
				if !e.rec.last(t).Proxy {
					t.Error("4011 answer not marked Proxy")
				}
			},
		},
		{
			name: "boot_server_4011_authoritative",
			cfg:  func(c *Config) { c.Boot.PXEBootServer = true },
			req: func([]*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				return mustPacket(append(base(dhcpv4.MessageTypeRequest, macBIOS), biosPXE, withCIAddr("192.0.2.11"))...)
			},
			in: Inbound{Peer: netip.MustParseAddrPort("192.0.2.11:4011"), PXEPort: true},
			want: want{
				msgType: dhcpv4.MessageTypeAck, yiaddr: "0.0.0.0", file: "undionly.kpxe",
				opts: map[dhcpv4.OptionCode][]byte{dhcpv4.OptionVendorSpecificInformation: pxeOpt43},
				dst:  "192.0.2.11:4011", event: EventAck,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			var prior []*dhcpv4.DHCPv4
			for _, p := range tc.prior {
				prior = append(prior, p(e))
			}
			req := tc.req(prior)
			reply := e.handle(t, req, tc.in)
			checkGolden(t, tc.name, summary(reply))
			checkWant(t, e, req, reply, tc.in, tc.want)
			if tc.check != nil {
				tc.check(t, e, reply)
			}
			// Never leak the script token into an event.
			for _, ev := range e.rec.all() {
				if strings.Contains(ev.BootFile, secretToken) {
					t.Errorf("event %s carries the script URL secret: %q", ev.Type, ev.BootFile)
				}
			}
		})
	}
}

func proxyMode(c *Config) {
	c.Mode = ModeProxy
	c.Subnets = nil
	c.DefaultSubnet = ""
}

func sendDiscover(mac net.HardwareAddr, mods ...dhcpv4.Modifier) func(*env) *dhcpv4.DHCPv4 {
	return func(e *env) *dhcpv4.DHCPv4 {
		return e.mustHandle(discover(mac, mods...), labIn)
	}
}

func sendRequest(mac net.HardwareAddr, ip string, mods ...dhcpv4.Modifier) func(*env) *dhcpv4.DHCPv4 {
	return func(e *env) *dhcpv4.DHCPv4 {
		r := e.mustHandle(requestPkt(mac, ip, serverIP, mods...), labIn)
		if r.MessageType() != dhcpv4.MessageTypeAck {
			panic("prior REQUEST not acknowledged: " + r.Summary())
		}
		return r
	}
}

func (e *env) mustHandle(req *dhcpv4.DHCPv4, in Inbound) *dhcpv4.DHCPv4 {
	r, err := e.h.Handle(e.ctx, req, in)
	if err != nil || r == nil {
		panic("prior packet not answered")
	}
	return r
}

// rangeReturns offers addresses to fresh MACs until the lab range is full
// and reports whether ip was among them.
func rangeReturns(t *testing.T, e *env, ip string) bool {
	t.Helper()
	for i := range 256 {
		mac := net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}
		e.backend.set(&Machine{MAC: mac})
		r := e.handle(t, discover(mac, osClient), labIn)
		if r == nil {
			return false
		}
		if r.YourIPAddr.String() == ip {
			return true
		}
	}
	return false
}

func checkWant(t *testing.T, e *env, req, reply *dhcpv4.DHCPv4, in Inbound, w want) {
	t.Helper()
	if w.event != "" {
		ev := e.rec.last(t)
		if ev.Type != w.event {
			t.Errorf("last event = %s (%s), want %s", ev.Type, ev.Reason, w.event)
		}
		if ev.Reason != w.reason {
			t.Errorf("last event reason = %q, want %q", ev.Reason, w.reason)
		}
	}
	if w.noReply {
		if reply != nil {
			t.Fatalf("got a reply, want none:\n%s", reply.Summary())
		}
		return
	}
	if reply == nil {
		t.Fatal("no reply")
	}
	if reply.OpCode != dhcpv4.OpcodeBootReply || reply.TransactionID != req.TransactionID ||
		!bytes.Equal(reply.ClientHWAddr, req.ClientHWAddr) {
		t.Errorf("reply header op=%s xid=%s chaddr=%s", reply.OpCode, reply.TransactionID, reply.ClientHWAddr)
	}
	if got := reply.MessageType(); got != w.msgType {
		t.Errorf("message type = %s, want %s", got, w.msgType)
	}
	ipField := func(name string, got net.IP, want string) {
		if want == "" {
			return
		}
		g := "0.0.0.0"
		if got != nil {
			g = got.String()
		}
		if g != want {
			t.Errorf("%s = %s, want %s", name, g, want)
		}
	}
	ipField("yiaddr", reply.YourIPAddr, w.yiaddr)
	ipField("ciaddr", reply.ClientIPAddr, w.ciaddr)
	ipField("siaddr", reply.ServerIPAddr, w.siaddr)
	ipField("giaddr", reply.GatewayIPAddr, w.giaddr)
	if w.msgType == dhcpv4.MessageTypeOffer || w.msgType == dhcpv4.MessageTypeAck {
		if reply.BootFileName != w.file {
			t.Errorf("file = %q, want %q", reply.BootFileName, w.file)
		}
	}
	if !reply.Options.Has(dhcpv4.OptionServerIdentifier) {
		t.Error("no server identifier (option 54)")
	}
	for code, v := range w.opts {
		if got := reply.Options.Get(code); !bytes.Equal(got, v) {
			t.Errorf("option %s = %q, want %q", code, got, v)
		}
	}
	for _, code := range w.absent {
		if reply.Options.Has(code) {
			t.Errorf("option %s present, want absent: %q", code, reply.Options.Get(code))
		}
	}
	// The reply must survive the wire.
	if _, err := dhcpv4.FromBytes(reply.ToBytes()); err != nil {
		t.Errorf("reply does not re-parse: %v", err)
	}
	if w.dst != "" {
		dst, ifIndex := replyDestination(req, reply, in, ClientPort, ServerPort, false)
		if dst.String() != w.dst || ifIndex != w.dstIf {
			t.Errorf("destination = %s on if %d, want %s on if %d", dst, ifIndex, w.dst, w.dstIf)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
		want ClientKind
	}{
		{"plain", nil, ClientOS},
		{"msft", []dhcpv4.Modifier{osClient}, ClientOS},
		{"pxe", []dhcpv4.Modifier{biosPXE}, ClientPXE},
		{"http", []dhcpv4.Modifier{uefiHTTP}, ClientHTTP},
		{"ipxe user class", []dhcpv4.Modifier{uefiPXE, dhcpv4.WithUserClass("iPXE", false)}, ClientIPXE},
		{"ipxe rfc3004 user class", []dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", true)}, ClientIPXE},
		{"ipxe option 175", []dhcpv4.Modifier{dhcpv4.WithGeneric(optIPXE, []byte{19, 1, 1})}, ClientIPXE},
		{"other user class", []dhcpv4.Modifier{biosPXE, dhcpv4.WithUserClass("Tinkerbell", false)}, ClientPXE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(discover(macUEFI, tc.mods...)); got != tc.want {
				t.Errorf("classify = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestArchFromVendorClassFallback(t *testing.T) {
	p := discover(macUEFI, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00009:UNDI:003016")))
	arch, ok := clientArch(p, p.ClassIdentifier())
	if !ok || arch != iana.EFI_BC {
		t.Fatalf("arch = %v %v, want EFI BC from the vendor class", arch, ok)
	}
	if _, ok := clientArch(p, "PXEClient:Arch:0x"); ok {
		t.Error("malformed vendor class arch accepted")
	}
}

func TestScriptURLNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	e := newEnv(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	r := e.handle(t, discover(macUEFI, ipxe), labIn)
	if r == nil || r.BootFileName != scriptURL(macUEFI) {
		t.Fatalf("no script offered: %v", r)
	}
	e.handle(t, requestPkt(macUEFI, "192.0.2.100", serverIP, ipxe), labIn)
	out := logs.String()
	if strings.Contains(out, secretToken) {
		t.Errorf("log contains the script token:\n%s", out)
	}
	for _, key := range []string{"mac=52:54:00:00:00:02", "xid=0xdeadbeef", "msg_type=DISCOVER", "interface=eth-lab", "peer=0.0.0.0:68", "boot=script"} {
		if !strings.Contains(out, key) {
			t.Errorf("log lacks %q:\n%s", key, out)
		}
	}
}

func TestBackendErrorNotAnswered(t *testing.T) {
	e := newEnv(t, nil)
	e.backend.lookupErr = errors.New("database down")
	reply, err := e.h.Handle(t.Context(), discover(macUEFI, uefiPXE), labIn)
	if reply != nil || err == nil {
		t.Fatalf("Handle = %v, %v; want no reply and an error", reply, err)
	}
	if ev := e.rec.last(t); ev.Type != EventIgnored || ev.Reason != ReasonBackendError {
		t.Errorf("event = %+v", ev)
	}
}

func TestNonEthernetAndRepliesIgnored(t *testing.T) {
	e := newEnv(t, nil)
	for name, p := range map[string]*dhcpv4.DHCPv4{
		"bootreply":   discover(macUEFI, func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply }),
		"infiniband":  discover(macUEFI, dhcpv4.WithHWType(iana.HWTypeInfiniband)),
		"short chadd": discover(net.HardwareAddr{1, 2, 3}),
		"no type":     discover(macUEFI, dhcpv4.WithoutOption(dhcpv4.OptionDHCPMessageType)),
	} {
		if r := e.handle(t, p, labIn); r != nil {
			t.Errorf("%s: answered:\n%s", name, r.Summary())
		}
	}
}

func TestConfigValidation(t *testing.T) {
	tests := map[string]func(*Config){
		"no subnets":         func(c *Config) { c.Subnets = nil },
		"proxy no server":    func(c *Config) { proxyMode(c); c.ServerIP = netip.Addr{} },
		"range outside":      func(c *Config) { c.Subnets[0].RangeEnd = netip.MustParseAddr("192.0.3.1") },
		"range reversed":     func(c *Config) { c.Subnets[0].RangeStart = netip.MustParseAddr("192.0.2.200") },
		"range half":         func(c *Config) { c.Subnets[0].RangeEnd = netip.Addr{} },
		"range broadcast":    func(c *Config) { c.Subnets[0].RangeEnd = netip.MustParseAddr("192.0.2.255") },
		"host bits":          func(c *Config) { c.Subnets[0].Prefix = netip.MustParsePrefix("192.0.2.1/24") },
		"ipv6 prefix":        func(c *Config) { c.Subnets[0].Prefix = netip.MustParsePrefix("2001:db8::/64") },
		"overlap":            func(c *Config) { c.Subnets[1].Prefix = netip.MustParsePrefix("192.0.2.128/25") },
		"duplicate name":     func(c *Config) { c.Subnets[1].Name = "lab" },
		"missing default":    func(c *Config) { c.DefaultSubnet = "nope" },
		"no server id":       func(c *Config) { c.ServerIP = netip.Addr{} },
		"bad http base":      func(c *Config) { c.Boot.HTTPBaseURL = "tftp://x/" },
		"ipv6 dns":           func(c *Config) { c.Subnets[0].DNS = []netip.Addr{netip.MustParseAddr("2001:db8::53")} },
		"bad mode":           func(c *Config) { c.Mode = 7 },
		"bad unknown policy": func(c *Config) { c.Unknown = -1 },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig()
			mutate(&cfg)
			if _, err := NewHandler(cfg, newFakeBackend(), &MemoryLeaseStore{}); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewHandler error = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := NewHandler(testConfig(), newFakeBackend(), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("authoritative without LeaseStore: %v", err)
	}
	cfg := testConfig()
	proxyMode(&cfg)
	if _, err := NewHandler(cfg, newFakeBackend(), nil); err != nil {
		t.Errorf("proxy mode without LeaseStore: %v", err)
	}
}
