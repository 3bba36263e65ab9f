package provider

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/composable-metal/terraform-provider-metal/internal/api"
	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/daemon/daemontest"
)

// engineMode is where the engine runs in a test: in the provider
// (embedded) or in a `terraform-provider-metal serve` subprocess on
// loopback that the provider reaches through boot_service.endpoint.
type engineMode struct {
	name   string
	daemon *daemontest.Daemon
	token  string
}

// forEachMode runs fn once per mode, as subtests.
func forEachMode(t *testing.T, fn func(t *testing.T, m *engineMode)) {
	forEachModeWith(t, daemontest.Options{}, fn)
}

// forEachModeWith is forEachMode with options for the daemon.
func forEachModeWith(t *testing.T, opts daemontest.Options, fn func(t *testing.T, m *engineMode)) {
	t.Run("embedded", func(t *testing.T) { fn(t, &engineMode{name: "embedded"}) })
	t.Run("remote", func(t *testing.T) {
		d := daemontest.Start(t, opts)
		fn(t, &engineMode{name: "remote", daemon: d, token: d.Token("create", "terraform")})
	})
}

func (m *engineMode) remote() bool { return m.daemon != nil }

// remoteBlock is the boot_service block pointing at the daemon.
func (m *engineMode) remoteBlock() string {
	return fmt.Sprintf(`  boot_service {
    endpoint        = %q
    token           = %q
    tls_fingerprint = %q
  }
`, m.daemon.Endpoint, m.token, m.daemon.Fingerprint)
}

// providerConfig is providerConfig(extra) in this mode.
func (m *engineMode) providerConfig(extra string) string {
	if m.remote() {
		extra += "\n" + m.remoteBlock()
	}
	return providerConfig(extra)
}

// machineConfig is machineConfig(b, extra) in this mode.
func (m *engineMode) machineConfig(b testBMC, extra string) string {
	return m.providerConfig("") + machineBlock(b, "", extra)
}

// The provider's diagnostics when the daemon cannot be used, and the
// plan-time check that remote and embedded settings exclude each other.
func TestAccProvider_remoteErrors(t *testing.T) {
	d := daemontest.Start(t, daemontest.Options{})
	token := d.Token("create", "terraform")
	b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", false)}})
	remote := func(endpoint, token, fingerprint, extra string) string {
		return providerConfig(fmt.Sprintf(`  boot_service {
    endpoint        = %q
    token           = %q
    tls_fingerprint = %q
%s
  }
`, endpoint, token, fingerprint, extra)) + machineBlock(b, "", "")
	}
	// A daemon that speaks a newer API.
	newer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"api_version":2,"server":"v9.0.0"}`))
	}))
	defer newer.Close()
	newerFP := api.Fingerprint(newer.Certificate().Raw)
	wrongFP := strings.Repeat("ab", 32)

	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{
				Config:      remote(closedPort(t), token, d.Fingerprint, ""),
				ExpectError: errorMatching("Boot Service Daemon Unreachable", "terraform-provider-metal serve"),
			},
			{
				Config:      remote(d.Endpoint, "metal_wrong", d.Fingerprint, ""),
				ExpectError: errorMatching("Boot Service Token Rejected", "token create"),
			},
			{
				Config:      remote(d.Endpoint, token, wrongFP, ""),
				ExpectError: errorMatching("Boot Service Certificate Fingerprint Mismatch", "expected sha256 "+wrongFP, "got "+d.Fingerprint),
			},
			{
				Config:      remote(newer.URL, token, newerFP, ""),
				ExpectError: errorMatching("Boot Service Version Mismatch", "v9.0.0", "API v2", "API v1", "upgrade the provider"),
			},
			{
				Config:      remote(d.Endpoint, token, d.Fingerprint, `    address = "127.0.0.1"`),
				PlanOnly:    true,
				ExpectError: errorMatching("Conflicting Boot Service Settings", "boot_service.endpoint", "boot_service.address"),
			},
			{
				Config: providerConfig(`  boot_service {
    address = "127.0.0.1"
    token   = "x"
    dhcp {
      mode = "off"
    }
  }
`) + machineBlock(b, "", ""),
				PlanOnly:    true,
				ExpectError: errorMatching("Boot Service Setting Needs an Endpoint", "boot_service.token"),
			},
		},
	})
}
