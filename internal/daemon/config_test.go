package daemon

import (
	"net/netip"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// The example the guide includes is a valid configuration.
func TestExampleConfig(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	cfg, err := LoadConfig(filepath.Join(filepath.Dir(file), "..", "..", "examples", "daemon", "metal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ec, err := cfg.engineConfig()
	if err != nil {
		t.Fatal(err)
	}
	b := ec.Boot
	if cfg.Listen != "0.0.0.0:8443" || b.StateDir != "/var/lib/metal" || b.Address != netip.MustParseAddr("192.0.2.10") ||
		b.DHCP.Subnet != netip.MustParsePrefix("192.0.2.0/24") || b.DHCP.LeaseTime != time.Hour || !b.TFTP.Enabled ||
		ec.PollInterval != 2*time.Second || ec.MaxConcurrentBMCOperations != 16 || len(cfg.TLS.Hosts) != 1 {
		t.Fatalf("parsed %+v / %+v", cfg, b)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Boot.Address = "192.0.2.1"
	cfg.Boot.DHCP.Mode = "proxy"
	ec, err := cfg.engineConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != DefaultListen || ec.Boot.HTTPListen != DefaultHTTPListen || ec.Boot.DHCP.Listen != DefaultDHCPListen ||
		ec.Boot.TFTP.Listen != DefaultTFTPListen || ec.Boot.IPXEDir != DefaultIPXEDir || !ec.Boot.TFTP.Enabled {
		t.Fatalf("defaults %+v %+v", cfg, ec.Boot)
	}
}
