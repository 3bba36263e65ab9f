package dhcp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"time"
)

// ErrInvalidConfig is wrapped by every configuration error of NewHandler and
// NewServer.
var ErrInvalidConfig = errors.New("invalid DHCP configuration")

// Mode selects how the server takes part in DHCP on a link.
type Mode int

const (
	// ModeAuthoritative hands out addresses (reservations or the subnet
	// range) and boot information. It is the default.
	ModeAuthoritative Mode = iota
	// ModeProxy is proxyDHCP: it coexists with another DHCP server, hands
	// out no address (yiaddr 0.0.0.0), only boot information to netboot
	// clients, and answers PXE boot-server requests on port 4011.
	ModeProxy
)

func (m Mode) String() string {
	switch m {
	case ModeAuthoritative:
		return "authoritative"
	case ModeProxy:
		return "proxy"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// UnknownPolicy says what happens to clients whose MAC the backend does not
// know.
type UnknownPolicy int

const (
	// UnknownIgnore answers nothing and logs only at debug level. Default.
	UnknownIgnore UnknownPolicy = iota
	// UnknownDiscover answers nothing but calls Backend.RecordDiscovery.
	UnknownDiscover
	// UnknownServe treats the client as a registered machine without a
	// reservation: address from the range, boot file for its firmware, and
	// BootConfig.UnknownScriptURL for iPXE. Meant for discovery images and
	// benchmarks.
	UnknownServe
)

func (p UnknownPolicy) String() string {
	switch p {
	case UnknownIgnore:
		return "ignore"
	case UnknownDiscover:
		return "discover"
	case UnknownServe:
		return "serve"
	}
	return fmt.Sprintf("UnknownPolicy(%d)", int(p))
}

// Subnet is one IPv4 network the server hands out addresses on.
type Subnet struct {
	// Name identifies the subnet in logs, events and Config.DefaultSubnet.
	Name string
	// Prefix is the network, e.g. 10.0.0.0/24. Required.
	Prefix netip.Prefix
	// RangeStart..RangeEnd (inclusive) is the dynamic range. Both zero
	// means reservations only.
	RangeStart, RangeEnd netip.Addr
	// Routers (option 3), DNS (6), NTP (42, sent when requested) and
	// DomainName (15) are handed to clients.
	Routers    []netip.Addr
	DNS        []netip.Addr
	NTP        []netip.Addr
	DomainName string
	// LeaseTime defaults to one hour.
	LeaseTime time.Duration
	// Interface is the name of the local interface this subnet is directly
	// attached to. Non-relayed requests arriving there are placed on it.
	Interface string
	// ServerIP overrides Config.ServerIP as server identifier (option 54)
	// for this subnet; it must be the server's address reachable from it.
	ServerIP netip.Addr
}

// BootConfig describes the boot files offered to firmware.
type BootConfig struct {
	// TFTPServer is siaddr / option 66 for PXE clients. Defaults to the
	// server identifier.
	TFTPServer netip.Addr
	// HTTPBaseURL is where the iPXE EFI binaries are served over HTTP, for
	// UEFI HTTP boot (arch 16 and 19), e.g. "http://10.0.0.1:8080/ipxe/".
	// Empty disables UEFI HTTP boot.
	HTTPBaseURL string
	// BIOSFile (arch 0) defaults to "undionly.kpxe", EFIx64File (arch 7, 9
	// and 16) to "ipxe.efi" (set "snponly.efi" to use the firmware's NIC
	// driver), ARM64File (arch 11 and 19) to "snp.efi".
	BIOSFile   string
	EFIx64File string
	ARM64File  string
	// PXEBootServer says the PXE boot-server port 4011 is served. Only then
	// is option 60 "PXEClient" (with option 43) echoed to PXE firmware in
	// authoritative mode; without a 4011 server OVMF fails with PXE-E16.
	PXEBootServer bool
	// UnknownScriptURL is the iPXE script given to unknown clients served
	// under UnknownServe. Empty: such iPXE clients get an address only.
	UnknownScriptURL string
}

// Config is the protocol behaviour of a Handler.
type Config struct {
	Mode    Mode
	Unknown UnknownPolicy
	// ServerIP is the server identifier (option 54) and the default TFTP
	// server. Required in proxy mode and for subnets without ServerIP.
	ServerIP netip.Addr
	// Subnets is required in authoritative mode, unused in proxy mode.
	Subnets []Subnet
	// DefaultSubnet names the subnet for non-relayed requests arriving on
	// an interface no subnet claims. With a single subnet it defaults to
	// that subnet.
	DefaultSubnet string
	Boot          BootConfig
	// OfferHold is how long an offered address stays reserved for the
	// client waiting for its REQUEST (default 60s). Offers are not
	// persisted; bound leases are.
	OfferHold time.Duration
	// DeclineHold is how long an address a client DECLINEd is kept out of
	// the range (default 10m).
	DeclineHold time.Duration
	// Logger defaults to discarding. Keys: mac, xid, msg_type, interface,
	// peer.
	Logger *slog.Logger
	// Observer, when set, receives every Event.
	Observer Observer
	// Now defaults to time.Now; tests inject a fake clock.
	Now func() time.Time
}

const (
	defaultLeaseTime   = time.Hour
	defaultOfferHold   = time.Minute
	defaultDeclineHold = 10 * time.Minute
	defaultBIOSFile    = "undionly.kpxe"
	defaultEFIx64File  = "ipxe.efi"
	defaultARM64File   = "snp.efi"
)

// subnet is a validated Subnet with its wire values precomputed.
type subnet struct {
	Subnet
	serverID netip.Addr
	hasRange bool
	mask     net.IPMask
	bcast    netip.Addr
	routers  []net.IP
	dns      []net.IP
	ntp      []net.IP
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// normalize validates cfg and fills in defaults. It returns the subnets in
// their wire-ready form and the default subnet (nil when there is none).
func normalize(cfg *Config) ([]*subnet, *subnet, error) {
	if cfg.Mode != ModeAuthoritative && cfg.Mode != ModeProxy {
		return nil, nil, invalid("unknown mode %d", int(cfg.Mode))
	}
	if cfg.Unknown < UnknownIgnore || cfg.Unknown > UnknownServe {
		return nil, nil, invalid("unknown policy %d", int(cfg.Unknown))
	}
	if cfg.ServerIP.IsValid() && !cfg.ServerIP.Is4() {
		return nil, nil, invalid("server IP %s is not IPv4", cfg.ServerIP)
	}
	if cfg.Mode == ModeProxy && !cfg.ServerIP.IsValid() {
		return nil, nil, invalid("proxy mode needs ServerIP")
	}
	if cfg.Mode == ModeAuthoritative && len(cfg.Subnets) == 0 {
		return nil, nil, invalid("authoritative mode needs at least one subnet")
	}
	if cfg.Boot.TFTPServer.IsValid() && !cfg.Boot.TFTPServer.Is4() {
		return nil, nil, invalid("TFTP server %s is not IPv4", cfg.Boot.TFTPServer)
	}
	if cfg.Boot.HTTPBaseURL != "" {
		u, err := url.Parse(cfg.Boot.HTTPBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, nil, invalid("HTTP base URL %q is not an http(s) URL", cfg.Boot.HTTPBaseURL)
		}
	}
	if cfg.Boot.BIOSFile == "" {
		cfg.Boot.BIOSFile = defaultBIOSFile
	}
	if cfg.Boot.EFIx64File == "" {
		cfg.Boot.EFIx64File = defaultEFIx64File
	}
	if cfg.Boot.ARM64File == "" {
		cfg.Boot.ARM64File = defaultARM64File
	}
	if cfg.OfferHold <= 0 {
		cfg.OfferHold = defaultOfferHold
	}
	if cfg.DeclineHold <= 0 {
		cfg.DeclineHold = defaultDeclineHold
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}

	names := map[string]bool{}
	var out []*subnet
	for i := range cfg.Subnets {
		s, err := normalizeSubnet(cfg.Subnets[i], cfg.ServerIP)
		if err != nil {
			return nil, nil, err
		}
		if names[s.Name] {
			return nil, nil, invalid("duplicate subnet name %q", s.Name)
		}
		names[s.Name] = true
		for _, o := range out {
			if o.Prefix.Overlaps(s.Prefix) {
				return nil, nil, invalid("subnets %q and %q overlap", o.Name, s.Name)
			}
		}
		out = append(out, s)
	}
	var def *subnet
	switch {
	case cfg.DefaultSubnet != "":
		for _, s := range out {
			if s.Name == cfg.DefaultSubnet {
				def = s
			}
		}
		if def == nil {
			return nil, nil, invalid("default subnet %q is not configured", cfg.DefaultSubnet)
		}
	case len(out) == 1:
		def = out[0]
	}
	return out, def, nil
}

func normalizeSubnet(in Subnet, serverIP netip.Addr) (*subnet, error) {
	s := &subnet{Subnet: in}
	if !s.Prefix.IsValid() || !s.Prefix.Addr().Is4() {
		return nil, invalid("subnet %q: prefix %s is not an IPv4 prefix", s.Name, s.Prefix)
	}
	if s.Prefix != s.Prefix.Masked() {
		return nil, invalid("subnet %q: prefix %s has host bits set", s.Name, s.Prefix)
	}
	if s.Name == "" {
		s.Name = s.Prefix.String()
	}
	s.serverID = s.ServerIP
	if !s.serverID.IsValid() {
		s.serverID = serverIP
	}
	if !s.serverID.IsValid() || !s.serverID.Is4() {
		return nil, invalid("subnet %q: no IPv4 server IP (set Config.ServerIP or Subnet.ServerIP)", s.Name)
	}
	if s.LeaseTime <= 0 {
		s.LeaseTime = defaultLeaseTime
	}
	bits := s.Prefix.Bits()
	s.mask = net.CIDRMask(bits, 32)
	s.bcast = lastAddr(s.Prefix)
	switch {
	case !s.RangeStart.IsValid() && !s.RangeEnd.IsValid():
	case !s.RangeStart.IsValid() || !s.RangeEnd.IsValid():
		return nil, invalid("subnet %q: range needs both start and end", s.Name)
	default:
		if !s.Prefix.Contains(s.RangeStart) || !s.Prefix.Contains(s.RangeEnd) {
			return nil, invalid("subnet %q: range %s-%s is outside %s", s.Name, s.RangeStart, s.RangeEnd, s.Prefix)
		}
		if s.RangeEnd.Less(s.RangeStart) {
			return nil, invalid("subnet %q: range end %s is before start %s", s.Name, s.RangeEnd, s.RangeStart)
		}
		if bits < 31 && (s.RangeStart == s.Prefix.Addr() || s.RangeEnd == s.bcast) {
			return nil, invalid("subnet %q: range includes the network or broadcast address", s.Name)
		}
		s.hasRange = true
	}
	var err error
	if s.routers, err = ipv4List(s.Name, "router", s.Routers); err != nil {
		return nil, err
	}
	if s.dns, err = ipv4List(s.Name, "DNS server", s.DNS); err != nil {
		return nil, err
	}
	if s.ntp, err = ipv4List(s.Name, "NTP server", s.NTP); err != nil {
		return nil, err
	}
	return s, nil
}

func ipv4List(subnetName, what string, addrs []netip.Addr) ([]net.IP, error) {
	out := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		if !a.Is4() {
			return nil, invalid("subnet %q: %s %s is not IPv4", subnetName, what, a)
		}
		out = append(out, ipOf(a))
	}
	return out, nil
}

// inRange reports whether a is in the dynamic range.
func (s *subnet) inRange(a netip.Addr) bool {
	return s.hasRange && !a.Less(s.RangeStart) && !s.RangeEnd.Less(a)
}

// lastAddr is the highest address of p (the broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ipOf converts a valid IPv4 Addr to a 4-byte net.IP.
func ipOf(a netip.Addr) net.IP {
	b := a.As4()
	return net.IP(b[:])
}

// addrOf converts a net.IP to an IPv4 Addr; the zero Addr for nil, malformed
// or 0.0.0.0 input.
func addrOf(ip net.IP) netip.Addr {
	v4 := ip.To4()
	if v4 == nil {
		return netip.Addr{}
	}
	a := netip.AddrFrom4([4]byte(v4))
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}
