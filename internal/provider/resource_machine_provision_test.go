package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/daemon/daemontest"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
	"github.com/composable-metal/terraform-provider-metal/internal/machinesim"
)

// The machine testSystem network-boots from: its first NIC with link.
const testBootMAC = "52:54:00:aa:00:02"

const (
	testSSHKey   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVjZXN0a2V5Zm9ydGVzdGluZ29ubHkxMjM0NTY3 test@example"
	testUserData = "#!/bin/sh\necho provisioned-by-terraform > /etc/motd\n"
)

// provisionRig is a simulated machine behind a simulated BMC, and a boot
// service configuration for the provider: DHCP on a free loopback port,
// HTTP on a free loopback port the machine learns from DHCP.
type provisionRig struct {
	b        testBMC
	fleet    *machinesim.Fleet
	machine  *machinesim.Machine
	dhcp     *net.UDPAddr
	stateDir string
	kernel   testArtifact
	initrd   testArtifact
}

// startProvisionRig starts system "node1" (off) whose boots the machine
// plays: a boot after a Pxe override netboots it against the boot service.
func startProvisionRig(t *testing.T, m *machinesim.Machine) provisionRig {
	t.Helper()
	if m == nil {
		m = &machinesim.Machine{}
	}
	m.MAC, _ = net.ParseMAC(testBootMAC)
	dhcp := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: freeUDPPort(t)}
	fleet := machinesim.NewFleet(machinesim.FleetConfig{DHCPServer: dhcp, DHCPTimeout: time.Second, BootTimeout: time.Minute})
	t.Cleanup(fleet.Close)
	fleet.Add("node1", m)
	sys := testSystem("node1", false)
	sys.OnBoot = fleet.OnBoot
	kernel, initrd := testKernelInitrd(t)
	return provisionRig{
		b:     startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{sys}}),
		fleet: fleet, machine: m, dhcp: dhcp, stateDir: t.TempDir(), kernel: kernel, initrd: initrd,
	}
}

// config is the provider with the boot service, an image "test" of kind
// cloud-init, and metal_machine "test" installing it; extra goes into the
// machine's body.
func (r provisionRig) config(extra string) string {
	return bootProviderConfig(r.stateDir, fmt.Sprintf(`      listen      = "127.0.0.1:%d"
      subnet      = "127.0.0.0/8"
      range_start = "127.0.0.100"
      range_end   = "127.0.0.200"`, r.dhcp.Port)) +
		imageConfig(r.kernel, r.initrd, "") + fmt.Sprintf(`
resource "metal_machine" "test" {
  bmc = {
    endpoint       = %q
    username       = %q
    password       = %q
    ca_certificate = %q
  }
  os_image = metal_os_image.test.name
%s
}
`, r.b.url, r.b.username, r.b.password, r.b.ca, extra)
}

// forEachProvisionMode runs fn in each engine mode with a rig of its own;
// in remote mode the daemon serves DHCP on the rig's port.
func forEachProvisionMode(t *testing.T, fn func(t *testing.T, m *engineMode, rig provisionRig)) {
	t.Run("embedded", func(t *testing.T) { fn(t, &engineMode{name: "embedded"}, startProvisionRig(t, nil)) })
	t.Run("remote", func(t *testing.T) {
		rig := startProvisionRig(t, nil)
		d := daemontest.Start(t, daemontest.Options{DHCPPort: rig.dhcp.Port})
		fn(t, &engineMode{name: "remote", daemon: d, token: d.Token("create", "terraform")}, rig)
	})
}

// configFor is config in mode m: in remote mode the provider points at
// the daemon, whose metal.yaml has the same DHCP settings.
func (r provisionRig) configFor(m *engineMode, extra string) string {
	cfg := r.config(extra)
	if !m.remote() {
		return cfg
	}
	i := strings.Index(cfg, "\nresource ")
	return m.providerConfig("") + cfg[i:]
}

// installed asserts what the simulated machine's disk holds.
func (r provisionRig) installed(check func(machinesim.Installation) error) func(*terraform.State) error {
	return func(*terraform.State) error {
		inst, ok := r.machine.Disk.Installed()
		if !ok {
			return fmt.Errorf("nothing is installed on the machine; boots: %s", r.bootSummary())
		}
		return check(inst)
	}
}

func (r provisionRig) bootSummary() string {
	var parts []string
	for _, rec := range r.fleet.Records("node1") {
		s := fmt.Sprintf("[target=%q %s", rec.Event.Target, rec.Result)
		if rec.Err != nil {
			s += " err=" + rec.Err.Error()
		}
		parts = append(parts, s+"]")
	}
	return strings.Join(parts, " ")
}

// token is the provisioning token the machine got from DHCP in its first
// network boot.
func (r provisionRig) token(t *testing.T) string {
	t.Helper()
	for _, rec := range r.fleet.Records("node1") {
		if u, err := url.Parse(rec.Result.ScriptURL); err == nil {
			if rest, ok := strings.CutPrefix(u.Path, "/boot/"); ok {
				if tok, _, ok := strings.Cut(rest, "/"); ok && tok != "" {
					return tok
				}
			}
		}
	}
	t.Fatalf("no boot got a script URL: %s", r.bootSummary())
	return ""
}

// noDHCPAnswer asserts the boot service no longer answers the machine.
func (r provisionRig) noDHCPAnswer(ctx context.Context) error {
	mac, _ := net.ParseMAC(testBootMAC)
	m := &machinesim.Machine{MAC: mac, DHCPServer: r.dhcp, DHCPTimeout: 300 * time.Millisecond}
	res, err := m.NetBoot(ctx)
	var se *machinesim.StageError
	if !errors.As(err, &se) || se.Stage != machinesim.StageDHCP {
		return fmt.Errorf("a netboot of the destroyed machine got %s, %w; want no DHCP answer", res, err)
	}
	return nil
}

// stateAttr reads a flattened attribute of metal_machine.test.
func stateAttrs(s *terraform.State) (map[string]string, error) {
	rs, ok := s.RootModule().Resources[machineAddr]
	if !ok {
		return nil, errors.New("metal_machine.test is not in state")
	}
	return rs.Primary.Attributes, nil
}

// timelineOf lists the timeline entries of a flattened state.
func timelineOf(attrs map[string]string) []string {
	var out []string
	for i := 0; ; i++ {
		v, ok := attrs[fmt.Sprintf("timeline.%d", i)]
		if !ok {
			return out
		}
		out = append(out, v)
	}
}

// inOrder checks that each step (" <source> <stage>") appears in the
// timeline after the previous one.
func inOrder(timeline []string, steps ...string) error {
	at := 0
	for _, step := range steps {
		i := slices.IndexFunc(timeline[at:], func(line string) bool { return strings.Contains(line, step) })
		if i < 0 {
			return fmt.Errorf("timeline has no %q after entry %d:\n%s", step, at, strings.Join(timeline, "\n"))
		}
		at += i + 1
	}
	return nil
}

func TestAccMachine_provision(t *testing.T) {
	forEachProvisionMode(t, func(t *testing.T, m *engineMode, rig provisionRig) {
		config := rig.configFor(m, fmt.Sprintf(`
	  hostname            = "node1.example"
	  ssh_authorized_keys = [%q]
	  user_data           = %q
	  root_device         = "/dev/sda"
	`, testSSHKey, testUserData))
		wantID, err := engine.MachineID(rig.b.url, "node1")
		if err != nil {
			t.Fatal(err)
		}
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			CheckDestroy: resource.ComposeTestCheckFunc(
				simPower(rig.b, "node1", "Off"),
				func(*terraform.State) error { return rig.noDHCPAnswer(t.Context()) },
			),
			Steps: []resource.TestStep{
				{
					Config: config,
					ConfigStateChecks: []statecheck.StateCheck{
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("machine_id"), knownvalue.StringExact(wantID)),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("ip_address"), knownvalue.StringExact("127.0.0.100/8")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("power_state"), knownvalue.StringExact("on")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("wait_for"), knownvalue.StringExact("provisioned")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("boot_mac"), knownvalue.StringExact(testBootMAC)),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("rendered_ipxe"),
							knownvalue.StringRegexp(regexp.MustCompile(`/boot/`+engine.PlaceholderToken+`/kernel `))),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("rendered_user_data"),
							knownvalue.StringRegexp(regexp.MustCompile(`(?s)hostname: "?node1.example.*`+engine.PlaceholderToken+`/provisioned`))),
					},
					Check: resource.ComposeTestCheckFunc(
						simPower(rig.b, "node1", "On"),
						func(s *terraform.State) error {
							attrs, err := stateAttrs(s)
							if err != nil {
								return err
							}
							// Every step of the install, in order, as the boot service saw it.
							if err := inOrder(timelineOf(attrs), " engine registered", " engine pxe_boot_requested", " dhcp ack 127.0.0.100",
								" http script", " http kernel", " http initrd", " http config/user-data", " http provisioned"); err != nil {
								return err
							}
							// The real token is never in state; the rendering has the placeholder.
							tok := rig.token(t)
							for k, v := range attrs {
								if strings.Contains(v, tok) {
									return fmt.Errorf("state attribute %s holds the provisioning token", k)
								}
							}
							// The machine followed a one-time Pxe override, which it consumed.
							recs := rig.fleet.Records("node1")
							if len(recs) == 0 || recs[0].Event.Target != "Pxe" || recs[0].Err != nil || !recs[0].Result.Provisioned {
								return fmt.Errorf("boots: %s", rig.bootSummary())
							}
							if st, _ := rig.b.sim.System("node1"); st.BootEnabled == "Once" {
								return fmt.Errorf("the Pxe override was not consumed: %+v", st)
							}
							return nil
						},
						rig.installed(func(inst machinesim.Installation) error {
							if inst.Kind != "cloud-init" || inst.Hostname != "node1.example" || inst.KernelSHA256 != rig.kernel.sha256 ||
								inst.InitrdSHA256 != rig.initrd.sha256 {
								return fmt.Errorf("installed %+v", inst)
							}
							if !slices.Contains(inst.SSHAuthorizedKeys, testSSHKey) {
								return fmt.Errorf("installed keys %v", inst.SSHAuthorizedKeys)
							}
							if !slices.Contains(inst.UserDataParts, "text/x-shellscript") {
								return fmt.Errorf("user_data did not reach the machine: parts %v", inst.UserDataParts)
							}
							if !slices.Contains(inst.Network.Addresses, "127.0.0.100/8") {
								return fmt.Errorf("the leased address is not configured statically: %+v", inst.Network)
							}
							return nil
						}),
						func(*terraform.State) error {
							// The token stopped working when the machine reported.
							recs := rig.fleet.Records("node1")
							if len(recs) == 0 {
								return errors.New("the machine never booted")
							}
							req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, recs[0].Result.ScriptURL, nil)
							if err != nil {
								return err
							}
							resp, err := http.DefaultClient.Do(req)
							if err != nil {
								return err
							}
							_ = resp.Body.Close()
							if resp.StatusCode == http.StatusOK {
								return errors.New("the provisioning token still works after the machine reported provisioned")
							}
							return nil
						},
					),
				},
				{
					// Plan-time rendering equals what apply recorded: no diff.
					Config:           config,
					ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
				},
				{
					// Power drift is an in-place update: the machine boots its disk,
					// nothing is installed again, and the provisioning record stays.
					PreConfig: func() { rig.b.sim.SetPowerState("node1", false) },
					Config:    config,
					ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(machineAddr, plancheck.ResourceActionUpdate),
						plancheck.ExpectKnownValue(machineAddr, tfjsonpath.New("rendered_ipxe"), knownvalue.NotNull()),
						plancheck.ExpectKnownValue(machineAddr, tfjsonpath.New("machine_id"), knownvalue.StringExact(wantID)),
					}},
					Check: resource.ComposeTestCheckFunc(
						simPower(rig.b, "node1", "On"),
						func(*terraform.State) error {
							ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
							defer cancel()
							recs, err := rig.fleet.WaitBoots(ctx, "node1", 2)
							if err != nil {
								return err
							}
							if last := recs[len(recs)-1]; last.Event.Target != "" || last.Result.BootedFrom != machinesim.BootedFromDisk || last.Err != nil {
								return fmt.Errorf("power-on after drift did not boot the disk: %s", rig.bootSummary())
							}
							if installs, _, _ := rig.machine.Disk.Stats(); installs != 1 {
								return fmt.Errorf("the machine was installed %d times", installs)
							}
							return nil
						},
					),
				},
				{
					Config:           config,
					ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
				},
				{
					// An install input replaces the machine.
					Config:             strings.Replace(config, `"node1.example"`, `"node1b.example"`, 1),
					PlanOnly:           true,
					ExpectNonEmptyPlan: true,
					ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(machineAddr, plancheck.ResourceActionDestroyBeforeCreate),
						plancheck.ExpectUnknownValue(machineAddr, tfjsonpath.New("rendered_ipxe")),
					}},
				},
			},
		})
	})
}

// A machine that stops after fetching its script fails the create within
// its timeout, names the last step, and stays in state (tainted).
func TestAccMachine_provisionFails(t *testing.T) {
	// The machine's "network" drops everything after the script: the
	// kernel, the initrd and the failure report.
	m := &machinesim.Machine{HTTPClient: &http.Client{Transport: scriptOnly{}}}
	rig := startProvisionRig(t, m)
	config := rig.config(`
  timeouts {
    create = "4s"
  }
`)
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		CheckDestroy:             simPower(rig.b, "node1", "Off"),
		Steps: []resource.TestStep{
			{
				Config: config,
				ExpectError: errorMatching("Machine Did Not Finish Provisioning", `did not reach "provisioned"`,
					"Last step reached: http script", "Timeline:", "engine registered", "dhcp ack", "http script",
					"raise `timeouts.create`", "tainted"),
			},
			{
				// Kept in state and tainted: the next apply replaces it.
				Config:             config,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(machineAddr, plancheck.ResourceActionDestroyBeforeCreate),
				}},
			},
		},
	})
}

// scriptOnly is a machine's network that carries only script fetches.
type scriptOnly struct{}

func (scriptOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(req.URL.Path, "/script.ipxe") {
		return nil, errors.New("simulated network failure")
	}
	return http.DefaultTransport.RoundTrip(req)
}

// on_destroy = "wipe" network-boots the wiper before powering off.
func TestAccMachine_provisionWipeOnDestroy(t *testing.T) {
	rig := startProvisionRig(t, nil)
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		CheckDestroy: resource.ComposeTestCheckFunc(
			simPower(rig.b, "node1", "Off"),
			func(*terraform.State) error {
				if _, ok := rig.machine.Disk.Installed(); ok {
					return fmt.Errorf("the disk was not wiped; boots: %s", rig.bootSummary())
				}
				if _, wipes, _ := rig.machine.Disk.Stats(); wipes != 1 {
					return fmt.Errorf("%d wipes, want 1", wipes)
				}
				recs := rig.fleet.Records("node1")
				last := recs[len(recs)-1]
				if last.Event.Target != "Pxe" || last.Result.Installer != "wipe" || last.Err != nil {
					return fmt.Errorf("the last boot was not the wiper: %s", rig.bootSummary())
				}
				return rig.noDHCPAnswer(t.Context())
			},
		),
		Steps: []resource.TestStep{
			{
				Config: rig.config(`
  on_destroy  = "wipe"
  root_device = "/dev/sda"
`),
				Check: rig.installed(func(machinesim.Installation) error { return nil }),
			},
		},
	})
}

// wait_for = "none" returns once the BMC was asked to network-boot.
func TestAccMachine_provisionWaitNone(t *testing.T) {
	rig := startProvisionRig(t, nil)
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{
				Config: rig.config(`  wait_for = "none"`),
				Check: func(s *terraform.State) error {
					attrs, err := stateAttrs(s)
					if err != nil {
						return err
					}
					tl := timelineOf(attrs)
					if err := inOrder(tl, " engine registered", " engine pxe_boot_requested"); err != nil {
						return err
					}
					if slices.ContainsFunc(tl, func(l string) bool { return strings.Contains(l, " http provisioned") }) {
						return fmt.Errorf("create waited for the install:\n%s", strings.Join(tl, "\n"))
					}
					// The install goes on without Terraform.
					ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
					defer cancel()
					recs, err := rig.fleet.WaitBoots(ctx, "node1", 1)
					if err != nil {
						return err
					}
					if !recs[0].Result.Provisioned {
						return fmt.Errorf("the machine did not finish installing: %s", rig.bootSummary())
					}
					return nil
				},
			},
			{
				Config:           rig.config(`  wait_for = "none"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
			},
		},
	})
}

// Provisioning inputs are checked when planning.
func TestAccMachine_provisionPlanErrors(t *testing.T) {
	b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", false)}})
	rig := provisionRig{b: b, stateDir: t.TempDir(), dhcp: &net.UDPAddr{Port: 67}}
	rig.kernel, rig.initrd = testKernelInitrd(t)
	cases := []struct {
		name, config string
		want         []string
	}{
		{"no boot service", machineConfig(b, `  os_image = "ubuntu"`),
			[]string{"Boot Service Not Configured", "`boot_service` block"}},
		{"powered off", rig.config(`  power_state = "off"`),
			[]string{"Cannot Provision A Powered-Off Machine", `power_state = "off"`}},
		{"wipe without image", machineConfig(b, `  on_destroy = "wipe"`),
			[]string{"Cannot Wipe Without An OS Image", "needs `os_image`"}},
		{"hostname without image", machineConfig(b, `  hostname = "node1"`),
			[]string{"Invalid Attribute Combination", "os_image"}},
		{"gateway without ip_address", rig.config(`  gateway = "127.0.0.1"`),
			[]string{"Invalid Attribute Combination", "ip_address"}},
		{"bad ip_address", rig.config(`  ip_address = "127.0.0.5"`),
			[]string{"Invalid IP Address", "prefix length"}},
		{"bad hostname", rig.config(`  hostname = "node_1"`), []string{"must be a host name"}},
		{"bad root device", rig.config(`  root_device = "sda"`), []string{"must be a /dev/ path"}},
		{"bad wait_for", rig.config(`  wait_for = "forever"`), []string{"provisioned", "booted", "none"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resource.ParallelTest(t, resource.TestCase{
				IsUnitTest:               true,
				ProtoV6ProviderFactories: protoV6ProviderFactories(),
				Steps:                    []resource.TestStep{{Config: c.config, PlanOnly: true, ExpectError: errorMatching(c.want...)}},
			})
		})
	}
}
