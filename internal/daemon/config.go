package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// Defaults of the daemon configuration (documented in the guide's
// reference table; keep them in sync).
const (
	DefaultListen     = "0.0.0.0:8443"
	DefaultStateDir   = "/var/lib/metal"
	DefaultHTTPListen = "0.0.0.0:8080"
	DefaultIPXEDir    = "/usr/lib/ipxe"
	DefaultDHCPListen = "0.0.0.0:67"
	DefaultTFTPListen = "0.0.0.0:69"
)

// Config is metal.yaml.
type Config struct {
	// Listen is host:port of the HTTPS API.
	Listen   string    `yaml:"listen"`
	StateDir string    `yaml:"state_dir"`
	LogLevel string    `yaml:"log_level"`
	TLS      TLSConfig `yaml:"tls"`
	Boot     BootYAML  `yaml:"boot"`
	BMC      BMCYAML   `yaml:"bmc"`
}

// TLSConfig is the API's certificate.
type TLSConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Hosts are extra DNS names / IPs of the generated certificate.
	Hosts []string `yaml:"hosts"`
}

// BootYAML is the boot service (DHCP, TFTP, HTTP).
type BootYAML struct {
	Address              string   `yaml:"address"`
	Interface            string   `yaml:"interface"`
	HTTPListen           string   `yaml:"http_listen"`
	IPXEDir              string   `yaml:"ipxe_dir"`
	AgentBinary          string   `yaml:"agent_binary"`
	RouterAdvertisements *bool    `yaml:"router_advertisements"`
	DHCP                 DHCPYAML `yaml:"dhcp"`
	TFTP                 TFTPYAML `yaml:"tftp"`
}

// DHCPYAML is the DHCP server.
type DHCPYAML struct {
	Mode       string   `yaml:"mode"`
	Listen     string   `yaml:"listen"`
	Subnet     string   `yaml:"subnet"`
	RangeStart string   `yaml:"range_start"`
	RangeEnd   string   `yaml:"range_end"`
	Router     string   `yaml:"router"`
	DNS        []string `yaml:"dns"`
	LeaseTime  string   `yaml:"lease_time"`
	Discovery  bool     `yaml:"discovery"`
}

// TFTPYAML is the TFTP server.
type TFTPYAML struct {
	Enabled *bool  `yaml:"enabled"`
	Listen  string `yaml:"listen"`
}

// BMCYAML tunes BMC access.
type BMCYAML struct {
	MaxConcurrentOperations int    `yaml:"max_concurrent_operations"`
	PollInterval            string `yaml:"poll_interval"`
}

// LoadConfig reads a YAML file (unknown keys are errors); path "" gives
// the defaults.
func LoadConfig(path string) (*Config, error) {
	cfg := &Config{}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return cfg, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// engineConfig validates the configuration and applies defaults.
func (c *Config) engineConfig() (engine.Config, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	c.Listen = orDefault(c.Listen, DefaultListen)
	c.StateDir = orDefault(c.StateDir, DefaultStateDir)
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q is not host:port", c.Listen)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls.cert and tls.key go together")
	}
	b := c.Boot
	boot := &engine.BootConfig{
		Interface:            b.Interface,
		HTTPListen:           orDefault(b.HTTPListen, DefaultHTTPListen),
		StateDir:             c.StateDir,
		IPXEDir:              orDefault(b.IPXEDir, DefaultIPXEDir),
		AgentBinary:          b.AgentBinary,
		RouterAdvertisements: b.RouterAdvertisements,
		DHCP: engine.DHCPConfig{
			Mode: orDefault(b.DHCP.Mode, engine.DHCPAuthoritative), Listen: orDefault(b.DHCP.Listen, DefaultDHCPListen),
			Discovery: b.DHCP.Discovery,
		},
		TFTP: engine.TFTPConfig{Enabled: b.TFTP.Enabled == nil || *b.TFTP.Enabled, Listen: orDefault(b.TFTP.Listen, DefaultTFTPListen)},
	}
	addr := func(name, v string) netip.Addr {
		if v == "" {
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			bad("%s %q is not an IPv4 address", name, v)
		}
		return a
	}
	if b.Address == "" {
		bad("boot.address is required: this host's IPv4 address on the provisioning network")
	}
	boot.Address = addr("boot.address", b.Address)
	switch boot.DHCP.Mode {
	case engine.DHCPAuthoritative, engine.DHCPProxy, engine.DHCPOff:
	default:
		bad("boot.dhcp.mode %q is not one of authoritative, proxy, off", boot.DHCP.Mode)
	}
	if b.DHCP.Subnet != "" {
		p, err := netip.ParsePrefix(b.DHCP.Subnet)
		if err != nil || !p.Addr().Is4() {
			bad("boot.dhcp.subnet %q is not an IPv4 CIDR such as 192.0.2.0/24", b.DHCP.Subnet)
		}
		boot.DHCP.Subnet = p.Masked()
	} else if boot.DHCP.Mode == engine.DHCPAuthoritative {
		bad("boot.dhcp.subnet is required in authoritative mode (or set boot.dhcp.mode: proxy / off)")
	}
	boot.DHCP.RangeStart = addr("boot.dhcp.range_start", b.DHCP.RangeStart)
	boot.DHCP.RangeEnd = addr("boot.dhcp.range_end", b.DHCP.RangeEnd)
	if boot.DHCP.RangeStart.IsValid() != boot.DHCP.RangeEnd.IsValid() {
		bad("boot.dhcp.range_start and range_end go together")
	}
	boot.DHCP.Router = addr("boot.dhcp.router", b.DHCP.Router)
	for _, d := range b.DHCP.DNS {
		boot.DHCP.DNS = append(boot.DHCP.DNS, addr("boot.dhcp.dns", d))
	}
	if b.DHCP.LeaseTime != "" {
		d, err := time.ParseDuration(b.DHCP.LeaseTime)
		if err != nil || d <= 0 {
			bad("boot.dhcp.lease_time %q is not a duration such as 1h", b.DHCP.LeaseTime)
		}
		boot.DHCP.LeaseTime = d
	}
	out := engine.Config{Boot: boot, MaxConcurrentBMCOperations: c.BMC.MaxConcurrentOperations}
	if c.BMC.PollInterval != "" {
		d, err := time.ParseDuration(c.BMC.PollInterval)
		if err != nil || d <= 0 {
			bad("bmc.poll_interval %q is not a duration such as 2s", c.BMC.PollInterval)
		}
		out.PollInterval = d
	}
	return out, errors.Join(errs...)
}
