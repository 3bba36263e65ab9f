package provider

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/machinesim"
)

const hwVolumeAddr = "metal_raid_volume.os"

// hwBoot is what the simulator held when one of the system's boots
// completed: the volumes on the RAID controller and the BIOS, after any
// settings that boot applied.
type hwBoot struct {
	seq     uint64
	target  string
	volumes []bmcsim.VolumeInfo
	bios    map[string]any
	pending int
}

// hardwareRig is one simulated vendor's machine for a whole hardware plan:
// a RAID controller, a BIOS and a NIC that network-boots against the
// provider's boot service. Every boot of the system is recorded with the
// hardware state it saw, then played by the fleet.
type hardwareRig struct {
	vendor   bmcsim.Vendor
	b        testBMC
	systemID string
	ctrl     string
	drives   []string
	bios     [4]string // two attribute/value pairs, see biosAttrOf
	fleet    *machinesim.Fleet
	machine  *machinesim.Machine
	dhcp     *net.UDPAddr
	stateDir string
	kernel   testArtifact
	initrd   testArtifact

	mu    sync.Mutex
	sim   *bmcsim.Simulator // for onBoot, which runs on the simulator's goroutines
	boots []hwBoot
}

func startHardwareRig(t *testing.T, v bmcsim.Vendor) *hardwareRig {
	t.Helper()
	r := &hardwareRig{vendor: v, bios: biosAttrOf[v], stateDir: t.TempDir()}
	r.ctrl, r.drives = controllerOf(v)
	r.dhcp = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: freeUDPPort(t)}
	r.fleet = machinesim.NewFleet(machinesim.FleetConfig{DHCPServer: r.dhcp, DHCPTimeout: time.Second, BootTimeout: time.Minute})
	t.Cleanup(r.fleet.Close)
	r.kernel, r.initrd = testKernelInitrd(t)
	// The vendor's own system id, storage and BIOS; the second NIC (the
	// first with link) is the one that network-boots.
	r.b = startBMC(t, bmcsim.Options{Vendor: v, TaskPolls: 1, Systems: []bmcsim.SystemSpec{{
		NICs:   []bmcsim.NIC{{MAC: "52:54:00:aa:00:01"}, {MAC: testBootMAC, LinkUp: true}},
		OnBoot: r.onBoot,
	}}})
	r.systemID = r.b.sim.SystemIDs()[0]
	mac, _ := net.ParseMAC(testBootMAC)
	r.machine = &machinesim.Machine{MAC: mac}
	r.fleet.Add(r.systemID, r.machine)
	r.mu.Lock()
	r.sim = r.b.sim
	r.mu.Unlock()
	return r
}

// onBoot records what the hardware looked like when the boot completed,
// then lets the fleet play it (a Pxe boot network-installs the machine).
func (r *hardwareRig) onBoot(ev bmcsim.BootEvent) {
	r.mu.Lock()
	sim := r.sim
	r.mu.Unlock()
	if sim != nil {
		cur, pend, _ := sim.BIOSAttributes(ev.SystemID)
		boot := hwBoot{seq: ev.Seq, target: ev.Target, volumes: sim.Volumes(ev.SystemID, r.ctrl), bios: cur, pending: len(pend)}
		r.mu.Lock()
		r.boots = append(r.boots, boot)
		r.mu.Unlock()
	}
	r.fleet.OnBoot(ev)
}

func (r *hardwareRig) recordedBoots() []hwBoot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.boots)
}

// config: a RAID1 from the controller's first two drives, a BIOS profile
// with two non-default values, a kickstart image, and a machine that
// takes the profile and installs onto the volume.
func (r *hardwareRig) config() string {
	bmc := fmt.Sprintf(`  bmc = {
    endpoint       = %q
    username       = %q
    password       = %q
    ca_certificate = %q
  }`, r.b.url, r.b.username, r.b.password, r.b.ca)
	return bootProviderConfig(r.stateDir, fmt.Sprintf(`      listen      = "127.0.0.1:%d"
      subnet      = "127.0.0.0/8"
      range_start = "127.0.0.100"
      range_end   = "127.0.0.200"`, r.dhcp.Port)) + fmt.Sprintf(`
resource "metal_os_image" "test" {
  name    = "test-image"
  install = "kickstart"
  kernel = {
    url = %q
  }
  initrd = {
    url = %q
  }
}

resource "metal_raid_volume" "os" {
%s
  raid_type = "RAID1"
  name      = "os"
  drives    = %s
}

resource "metal_bios_profile" "compute" {
  name       = "compute"
  attributes = { %q = %q, %q = %q }
}

resource "metal_machine" "test" {
%s
  bios_profile = metal_bios_profile.compute
  os_image     = metal_os_image.test.name
  hostname     = "node1.example"
  root_device  = metal_raid_volume.os.device_hint
}
`, r.kernel.url, r.initrd.url, bmc, hclList(r.drives[0], r.drives[1]), r.bios[0], r.bios[1], r.bios[2], r.bios[3], bmc)
}

// biosApplied says whether a BIOS snapshot holds the profile, nothing pending.
func (r *hardwareRig) biosApplied(cur map[string]any, pending int) error {
	for i := 0; i < len(r.bios); i += 2 {
		if got := fmt.Sprint(cur[r.bios[i]]); got != r.bios[i+1] {
			return fmt.Errorf("BIOS %s = %s, want %s", r.bios[i], got, r.bios[i+1])
		}
	}
	if pending != 0 {
		return fmt.Errorf("%d BIOS settings still pending", pending)
	}
	return nil
}

// volumeBuilt checks the simulator's volumes against the one in state.
func (r *hardwareRig) volumeBuilt(vols []bmcsim.VolumeInfo, volumeID string) error {
	if len(vols) != 1 || vols[0].ID != volumeID || vols[0].RAIDType != "RAID1" ||
		!slices.Equal(vols[0].Drives, []string{r.drives[0], r.drives[1]}) {
		return fmt.Errorf("controller %s holds %+v, want only RAID1 %s on %s and %s", r.ctrl, vols, volumeID, r.drives[0], r.drives[1])
	}
	return nil
}

// checkOrder asserts the hardware was ready before the machine network-booted:
// no BMC request of the machine came before the volume's task finished,
// every boot of the machine saw the volume, the BIOS profile was applied by
// a reboot before the network boot, and the network boot saw it applied.
func (r *hardwareRig) checkOrder(s *terraform.State) error {
	vol, ok := s.RootModule().Resources[hwVolumeAddr]
	if !ok {
		return errors.New(hwVolumeAddr + " is not in state")
	}
	volumeID := vol.Primary.Attributes["volume_id"]

	reqs := r.b.sim.Requests()
	created := slices.IndexFunc(reqs, func(q bmcsim.Request) bool {
		return q.Method == "POST" && strings.HasSuffix(strings.TrimSuffix(q.Path, "/"), "/Storage/"+r.ctrl+"/Volumes") && q.Status == 202
	})
	if created < 0 {
		return errors.New("the BMC never accepted a volume creation")
	}
	built := slices.IndexFunc(reqs[created:], func(q bmcsim.Request) bool {
		return q.Method == "GET" && strings.Contains(q.Path, "/TaskService/TaskMonitors/") && q.Status == 200
	})
	if built < 0 {
		return errors.New("the volume's task monitor never reported the task done")
	}
	built += created
	for i, q := range reqs[:built] {
		if strings.Contains(q.Path, "/Bios/Settings") || strings.Contains(q.Path, "ComputerSystem.Reset") {
			return fmt.Errorf("request %d (%s %s) touched the machine before the volume was built (request %d)", i, q.Method, q.Path, built)
		}
	}
	if !slices.ContainsFunc(reqs[built:], func(q bmcsim.Request) bool {
		return q.Method == "PATCH" && strings.Contains(q.Path, "/Bios/Settings")
	}) {
		return errors.New("the BIOS profile was never staged")
	}

	boots := r.recordedBoots()
	pxe := slices.IndexFunc(boots, func(b hwBoot) bool { return b.target == "Pxe" })
	if pxe < 0 {
		return fmt.Errorf("the machine never network-booted: %+v", boots)
	}
	biosBefore := false
	for _, b := range boots[:pxe+1] {
		if err := r.volumeBuilt(b.volumes, volumeID); err != nil {
			return fmt.Errorf("boot %d (target %q): %w", b.seq, b.target, err)
		}
		if b.seq < boots[pxe].seq && r.biosApplied(b.bios, b.pending) == nil {
			biosBefore = true
		}
	}
	if !biosBefore {
		return fmt.Errorf("no boot before the network boot (%d) had the BIOS profile applied: %+v", boots[pxe].seq, boots[:pxe+1])
	}
	if err := r.biosApplied(boots[pxe].bios, boots[pxe].pending); err != nil {
		return fmt.Errorf("at the network boot: %w", err)
	}
	return nil
}

// checkInstalled asserts the machine installed onto the volume's device.
func (r *hardwareRig) checkInstalled(s *terraform.State) error {
	vol, ok := s.RootModule().Resources[hwVolumeAddr]
	if !ok {
		return errors.New(hwVolumeAddr + " is not in state")
	}
	hint := vol.Primary.Attributes["device_hint"]
	if !strings.HasPrefix(hint, "/dev/disk/by-id/") {
		return fmt.Errorf("device_hint %q is not a /dev/disk/by-id path", hint)
	}
	inst, ok := r.machine.Disk.Installed()
	if !ok {
		return fmt.Errorf("nothing is installed on the machine; boots: %+v", r.fleet.Records(r.systemID))
	}
	if inst.Kind != machinesim.InstallerKickstart || inst.Hostname != "node1.example" || inst.Configs["kickstart"] == "" ||
		inst.KernelSHA256 != r.kernel.sha256 || inst.InitrdSHA256 != r.initrd.sha256 {
		return fmt.Errorf("installed %+v", inst)
	}
	if inst.TargetDevice != hint {
		return fmt.Errorf("the kickstart installed onto %q, want the volume's device_hint %q", inst.TargetDevice, hint)
	}
	attrs, err := stateAttrs(s)
	if err != nil {
		return err
	}
	return inOrder(timelineOf(attrs), " engine registered", " engine pxe_boot_requested", " dhcp ack",
		" http script", " http kernel", " http initrd", " http config/kickstart", " http provisioned")
}

// checkDestroyed asserts the volume is gone and was deleted only after
// the machine installed on it was powered off.
func (r *hardwareRig) checkDestroyed(*terraform.State) error {
	if vols := r.b.sim.Volumes(r.systemID, r.ctrl); len(vols) != 0 {
		return fmt.Errorf("the simulator still has volumes %+v", vols)
	}
	if st, _ := r.b.sim.System(r.systemID); st.PowerState != "Off" {
		return fmt.Errorf("system %s is %s after destroy, want Off", r.systemID, st.PowerState)
	}
	reqs := r.b.sim.Requests()
	deleted := slices.IndexFunc(reqs, func(q bmcsim.Request) bool {
		return q.Method == "DELETE" && strings.Contains(q.Path, "/Storage/"+r.ctrl+"/Volumes/") && q.Status/100 == 2
	})
	lastReset := -1
	for i, q := range reqs {
		if q.Method == "POST" && strings.Contains(q.Path, "ComputerSystem.Reset") {
			lastReset = i
		}
	}
	if deleted < 0 || lastReset < 0 || deleted < lastReset {
		return fmt.Errorf("the volume was deleted (request %d) before the machine's last power request (request %d)", deleted, lastReset)
	}
	return nil
}

// TestAccHardwarePlanPerVendor is the hardware bring-up plan against each
// simulated vendor: a RAID volume, a BIOS profile and a machine that takes
// the profile and installs onto the volume apply in that order, the next
// plan is empty, and destroy removes the volume after the machine.
func TestAccHardwarePlanPerVendor(t *testing.T) {
	t.Parallel()
	for _, v := range bmcsim.Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			r := startHardwareRig(t, v)
			config := r.config()
			resource.Test(t, resource.TestCase{
				IsUnitTest:               true,
				ProtoV6ProviderFactories: protoV6ProviderFactories(),
				CheckDestroy:             r.checkDestroyed,
				Steps: []resource.TestStep{
					{
						Config: config,
						Check: resource.ComposeAggregateTestCheckFunc(
							resource.TestCheckResourceAttr(hwVolumeAddr, "storage_id", r.ctrl),
							resource.TestCheckResourceAttrPair(machineAddr, "root_device", hwVolumeAddr, "device_hint"),
							resource.TestCheckResourceAttr(machineAddr, "bios_profile.attributes."+r.bios[0], r.bios[1]),
							resource.TestCheckResourceAttr(machineAddr, "power_state", "on"),
							func(s *terraform.State) error {
								vol := s.RootModule().Resources[hwVolumeAddr]
								if vol == nil {
									return errors.New(hwVolumeAddr + " is not in state")
								}
								return r.volumeBuilt(r.b.sim.Volumes(r.systemID, r.ctrl), vol.Primary.Attributes["volume_id"])
							},
							func(*terraform.State) error {
								cur, pend, _ := r.b.sim.BIOSAttributes(r.systemID)
								return r.biosApplied(cur, len(pend))
							},
							r.checkOrder,
							r.checkInstalled,
						),
					},
					{
						Config:           config,
						ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
					},
				},
			})
		})
	}
}
