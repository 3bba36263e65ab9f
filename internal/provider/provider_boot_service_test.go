package provider

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// A provider block's boot_service is checked when planning, on the
// attribute at fault, before anything starts.
func TestAccProvider_bootServiceValidation(t *testing.T) {
	stateDir := t.TempDir()
	image := fmt.Sprintf(`
resource "metal_os_image" "test" {
  name    = "img"
  install = "cloud-init"
  kernel  = { url = "file://%[1]s/vmlinuz" }
  initrd  = { url = "file://%[1]s/initrd" }
}
`, stateDir)
	provider := func(boot string) string {
		return fmt.Sprintf("provider \"metal\" {\n  boot_service {\n    state_dir = %q\n%s\n  }\n}\n", stateDir, boot)
	}
	cases := []struct {
		name string
		boot string
		want []string
	}{
		{"authoritative without subnet", `address = "192.0.2.1"`,
			[]string{"Missing DHCP Subnet", "`authoritative` mode (the default)", "boot_service.dhcp.subnet", `mode = "proxy"`}},
		{"authoritative dhcp block without subnet", "address = \"192.0.2.1\"\ndhcp {\n  range_start = \"192.0.2.10\"\n  range_end = \"192.0.2.20\"\n}",
			[]string{"Missing DHCP Subnet", "dhcp {", "set `boot_service.dhcp.subnet`"}},
		{"bad subnet", "address = \"192.0.2.1\"\ndhcp {\n  subnet = \"192.0.2.0/33\"\n}",
			[]string{"Invalid Subnet", `"192.0.2.0/33" is not a network in CIDR notation`}},
		{"subnet with host bits", "address = \"192.0.2.1\"\ndhcp {\n  subnet = \"192.0.2.1/24\"\n}",
			[]string{"Invalid Subnet", "host bits set", `"192.0.2.0/24"`}},
		{"ipv6 subnet", "address = \"192.0.2.1\"\ndhcp {\n  subnet = \"2001:db8::/64\"\n}",
			[]string{"Invalid Subnet", "not an IPv4 network"}},
		{"range outside subnet", "address = \"192.0.2.1\"\ndhcp {\n  subnet = \"192.0.2.0/24\"\n  range_start = \"192.0.1.10\"\n  range_end = \"192.0.2.20\"\n}",
			[]string{"Address Outside DHCP Subnet", `range_start = "192.0.1.10"`, "`range_start` 192.0.1.10 is not inside `subnet` 192.0.2.0/24"}},
		{"range reversed", "address = \"192.0.2.1\"\ndhcp {\n  subnet = \"192.0.2.0/24\"\n  range_start = \"192.0.2.50\"\n  range_end = \"192.0.2.20\"\n}",
			[]string{"Invalid DHCP Range", "`range_end` 192.0.2.20 comes before `range_start` 192.0.2.50"}},
		{"range half set", "address = \"192.0.2.1\"\ndhcp {\n  subnet = \"192.0.2.0/24\"\n  range_start = \"192.0.2.50\"\n}",
			[]string{"Incomplete DHCP Range", "`range_start` is set but `range_end` is not"}},
		{"broadcast in range", "address = \"192.0.2.1\"\ndhcp {\n  subnet = \"192.0.2.0/24\"\n  range_start = \"192.0.2.50\"\n  range_end = \"192.0.2.255\"\n}",
			[]string{"Invalid DHCP Range", "network or broadcast address"}},
		{"router outside subnet", "address = \"192.0.2.1\"\ndhcp {\n  subnet = \"192.0.2.0/24\"\n  router = \"198.51.100.1\"\n}",
			[]string{"Address Outside DHCP Subnet", "`router` 198.51.100.1"}},
		{"bad address", `address = "192.0.2.300"`, []string{"Invalid IPv4 Address", `"192.0.2.300" is not an IP address`}},
		{"ipv6 address", "address = \"2001:db8::1\"\ndhcp {\n  mode = \"proxy\"\n}", []string{"Invalid IPv4 Address", "DHCPv4"}},
		{"missing address", "dhcp {\n  mode = \"off\"\n}", []string{"Missing Boot Service Address", "needs `address`"}},
		{"bad mode", "address = \"192.0.2.1\"\ndhcp {\n  mode = \"relay\"\n}", []string{"Invalid Attribute Value Match", `mode = "relay"`, "authoritative", "proxy", "off"}},
		{"bad dns", "address = \"192.0.2.1\"\ndhcp {\n  mode = \"proxy\"\n  dns = [\"192.0.2.1\", \"dns.example\"]\n}",
			[]string{"Invalid IPv4 Address", `"dns.example" is not an IP address`}},
		{"bad listen", "address = \"192.0.2.1\"\nhttp_listen = \"8080\"\ndhcp {\n  mode = \"off\"\n}",
			[]string{"Invalid Listen Address", `"8080" is not an IP address and port`}},
		{"bad lease time", "address = \"192.0.2.1\"\ndhcp {\n  subnet = \"192.0.2.0/24\"\n  lease_time = \"forever\"\n}",
			[]string{"Invalid Duration", `"forever" is not a positive duration`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resource.ParallelTest(t, resource.TestCase{
				IsUnitTest:               true,
				ProtoV6ProviderFactories: protoV6ProviderFactories(),
				Steps:                    []resource.TestStep{{Config: provider(c.boot) + image, PlanOnly: true, ExpectError: errorMatching(c.want...)}},
			})
		})
	}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(stateDir, "metal.db")); err == nil {
			t.Error("an invalid boot_service started the boot service")
		}
	})
}

// Without a boot_service block, resources that provision say to add one.
func TestAccProvider_bootServiceMissing(t *testing.T) {
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{
				Config: providerConfig("") + `
resource "metal_os_image" "test" {
  name    = "img"
  install = "cloud-init"
  kernel  = { url = "file:///srv/vmlinuz" }
  initrd  = { url = "file:///srv/initrd" }
}
`,
				PlanOnly:    true,
				ExpectError: errorMatching("Boot Service Not Configured", "`boot_service` block", "`address`"),
			},
			{
				Config:      providerConfig("") + `data "metal_discovered_machines" "all" {}`,
				ExpectError: errorMatching("Boot Service Not Configured", "`boot_service` block"),
			},
		},
	})
}

func TestBootConfig_defaults(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/var/lib/xdg-test")
	m := bootServiceModel{
		Address: types.StringValue("192.0.2.1"), Interface: types.StringNull(), HTTPListen: types.StringNull(),
		StateDir: types.StringNull(), IPXEDir: types.StringNull(), AgentBinary: types.StringNull(),
		DHCP: &dhcpModel{
			Mode: types.StringNull(), Listen: types.StringNull(), Subnet: types.StringValue("192.0.2.0/24"),
			RangeStart: types.StringValue("192.0.2.100"), RangeEnd: types.StringValue("192.0.2.200"),
			Router: types.StringValue("192.0.2.254"), DNS: types.ListValueMust(types.StringType, []attr.Value{types.StringValue("192.0.2.53")}),
			LeaseTime: types.StringValue("30m"), Discovery: types.BoolValue(true),
		},
	}
	cfg, diags := m.bootConfig()
	if diags.HasError() {
		t.Fatalf("diagnostics: %v", diags)
	}
	want := engine.BootConfig{
		Address: netip.MustParseAddr("192.0.2.1"), HTTPListen: "0.0.0.0:8080", StateDir: "/var/lib/xdg-test/terraform-provider-metal",
		IPXEDir: "/usr/lib/ipxe",
		DHCP: engine.DHCPConfig{
			Mode: "authoritative", Listen: "0.0.0.0:67", Subnet: netip.MustParsePrefix("192.0.2.0/24"),
			RangeStart: netip.MustParseAddr("192.0.2.100"), RangeEnd: netip.MustParseAddr("192.0.2.200"),
			Router: netip.MustParseAddr("192.0.2.254"), DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")},
			LeaseTime: 30 * time.Minute, Discovery: true,
		},
		TFTP: engine.TFTPConfig{Enabled: true, Listen: "0.0.0.0:69"},
	}
	if diff := cmp.Diff(want, *cfg, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("boot config (-want +got):\n%s", diff)
	}

	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/tester")
	if dir, err := defaultStateDir(); err != nil || dir != "/home/tester/.local/state/terraform-provider-metal" {
		t.Errorf("default state dir %q, %v", dir, err)
	}
}

// Configure shares one engine per configuration: every Terraform command
// configures the provider again, and a second boot service on the same
// ports would fail to start.
func TestServer_sharesEnginesPerConfiguration(t *testing.T) {
	t.Parallel()
	s := New("test", "")
	a := engine.Config{MaxConcurrentBMCOperations: 4, PollInterval: time.Second, Boot: &engine.BootConfig{StateDir: "/a"}}
	b := a
	b.Boot = &engine.BootConfig{StateDir: "/b"}
	e1, _ := s.engineFor(a)
	e2, _ := s.engineFor(a)
	e3, _ := s.engineFor(b)
	if e1 != e2 {
		t.Error("the same configuration got two engines")
	}
	if e1 == e3 {
		t.Error("different configurations share an engine")
	}
	s.Shutdown()
	if e4, _ := s.engineFor(a); e4 == e1 {
		t.Error("an engine survived Shutdown")
	}
	if n := len(s.engines); n != 0 {
		t.Errorf("%d engines kept after Shutdown", n)
	}
}
