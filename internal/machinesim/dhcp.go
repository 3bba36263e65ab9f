package machinesim

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
)

// lease is what the DHCP answer told the machine.
type lease struct {
	ip, serverID, nextServer netip.Addr
	netmask                  net.IPMask
	routers, dns             []net.IP
	hostname, domain         string
	bootFile                 string
	proxy                    bool
}

// isEFI reports whether arch is UEFI firmware (anything but legacy BIOS).
func isEFI(a iana.Arch) bool { return a != iana.INTEL_X86PC }

// ipxeOptions are the options iPXE puts in its DISCOVER and REQUEST
// (src/net/udp/dhcp.c and src/include/ipxe/dhcp.h).
func ipxeOptions(mac net.HardwareAddr, arch iana.Arch) []dhcpv4.Modifier {
	// UNDI version 2.1 for the BIOS build, 3.16 for EFI builds.
	undi := []byte{1, 2, 1}
	if isEFI(arch) {
		undi = []byte{1, 3, 16}
	}
	vendor := fmt.Sprintf("PXEClient:Arch:%05d:UNDI:%03d%03d", uint16(arch), undi[1], undi[2])
	// Option 175: iPXE's encapsulated feature indicators (code, len, value):
	// PXE extensions (16) version 2, HTTP (19), HTTPS (20), DNS (23),
	// and bzImage (24) for BIOS or EFI (36) for EFI builds.
	features := []byte{16, 1, 2, 19, 1, 1, 20, 1, 1, 23, 1, 1}
	if isEFI(arch) {
		features = append(features, 36, 1, 1)
	} else {
		features = append(features, 24, 1, 1)
	}
	clientID := append([]byte{byte(iana.HWTypeEthernet)}, mac...)
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendor)),
		dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, undi),
		dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), features),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(clientID)),
		dhcpv4.WithRequestedOptions(
			dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionLogServer, dhcpv4.OptionHostName, dhcpv4.OptionDomainName,
			dhcpv4.OptionRootPath, dhcpv4.OptionVendorSpecificInformation, dhcpv4.OptionClassIdentifier,
			dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName, dhcpv4.OptionDNSDomainSearchList,
			dhcpv4.GenericOptionCode(128), dhcpv4.GenericOptionCode(129), dhcpv4.GenericOptionCode(130),
			dhcpv4.GenericOptionCode(131), dhcpv4.GenericOptionCode(132), dhcpv4.GenericOptionCode(133),
			dhcpv4.GenericOptionCode(134), dhcpv4.GenericOptionCode(135), dhcpv4.GenericOptionCode(175),
			dhcpv4.GenericOptionCode(203)),
	}
}

// dhcp runs DISCOVER-OFFER-REQUEST-ACK. A proxyDHCP offer (no address, a
// boot file, option 60 PXEClient) is taken as it is, without a REQUEST.
func (r *run) dhcp() (*lease, error) {
	m := r.m
	fail := func(err error) error { return &StageError{Stage: StageDHCP, Err: err} }
	bind := net.IPv4zero
	if m.DHCPServer.IP.IsLoopback() {
		bind = net.IPv4(127, 0, 0, 1)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: bind, Port: m.ClientPort})
	if err != nil {
		return nil, fail(err)
	}
	timeout := m.DHCPTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	client, err := nclient4.NewWithConn(conn, m.MAC,
		nclient4.WithServerAddr(m.DHCPServer), nclient4.WithTimeout(timeout), nclient4.WithRetry(3))
	if err != nil {
		_ = conn.Close()
		return nil, fail(err)
	}
	defer func() { _ = client.Close() }()

	mods := ipxeOptions(m.MAC, m.Arch)
	offer, err := client.DiscoverOffer(r.ctx, mods...)
	if err != nil {
		return nil, fail(fmt.Errorf("no offer: %w", err))
	}
	ack := offer
	proxy := offer.YourIPAddr.IsUnspecified() && strings.HasPrefix(offer.ClassIdentifier(), "PXEClient")
	if !proxy {
		l, err := client.RequestFromOffer(r.ctx, offer, mods...)
		if err != nil {
			return nil, fail(fmt.Errorf("no acknowledgement: %w", err))
		}
		ack = l.ACK
	}
	out := &lease{
		netmask:  ack.SubnetMask(),
		routers:  ack.Router(),
		dns:      ack.DNS(),
		hostname: ack.HostName(),
		domain:   ack.DomainName(),
		proxy:    proxy,
	}
	out.ip, _ = netip.AddrFromSlice(ack.YourIPAddr.To4())
	if out.ip.IsUnspecified() {
		out.ip = netip.Addr{}
	}
	out.serverID, _ = netip.AddrFromSlice(ack.ServerIdentifier().To4())
	out.nextServer, _ = netip.AddrFromSlice(ack.ServerIPAddr.To4())
	out.bootFile = ack.BootFileNameOption()
	if out.bootFile == "" {
		out.bootFile = ack.BootFileName
	}
	switch {
	case out.bootFile == "":
		return out, fail(errors.New("the answer carries no boot file (address only)"))
	case !strings.HasPrefix(out.bootFile, "http://") && !strings.HasPrefix(out.bootFile, "https://"):
		return out, fail(fmt.Errorf("boot file %q is not an http(s) URL (the server did not recognise iPXE)", RedactURL(out.bootFile)))
	}
	return out, nil
}
