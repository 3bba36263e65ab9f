package provider

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
)

const volumeAddr = "metal_raid_volume.test"

// volumeConfig is a provider block with credentials as defaults (so import
// and refresh can log in) and one metal_raid_volume "test".
func volumeConfig(b testBMC, body string) string {
	return providerConfig(fmt.Sprintf("  bmc_username = %q\n  bmc_password = %q\n  bmc_ca_certificate = %q\n", b.username, b.password, b.ca)) +
		fmt.Sprintf(`
resource "metal_raid_volume" "test" {
  bmc = {
    endpoint = %q
  }
%s
}
`, b.url, body)
}

// controllerOf is the RAID controller id and drive ids per vendor.
func controllerOf(v bmcsim.Vendor) (string, []string) {
	switch v {
	case bmcsim.Dell:
		d := func(i int) string { return fmt.Sprintf("Disk.Bay.%d:Enclosure.Internal.0-1:RAID.Integrated.1-1", i) }
		return "RAID.Integrated.1-1", []string{d(0), d(1), d(2), d(3), d(4), d(5)}
	case bmcsim.HPE:
		return "DE00A000", []string{"0", "1", "2", "3", "4", "5"}
	case bmcsim.Supermicro:
		return "HA-RAID", []string{"HA-RAID.0.Disk.0", "HA-RAID.0.Disk.1", "HA-RAID.0.Disk.2", "HA-RAID.0.Disk.3", "HA-RAID.0.Disk.4"}
	default:
		return "1", []string{"Drive0", "Drive1", "Drive2", "Drive3", "Drive4", "Drive5"}
	}
}

func hclList(ids ...string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func simVolumes(b testBMC, storageID string, want int) func(*terraform.State) error {
	return func(*terraform.State) error {
		ids := b.sim.SystemIDs()
		if got := len(b.sim.Volumes(ids[0], storageID)); got != want {
			return fmt.Errorf("simulator has %d volumes on %s, want %d", got, storageID, want)
		}
		return nil
	}
}

// TestAccRAIDVolumePerVendor builds a RAID1 from explicit drives, imports
// it, replaces it when raid_type changes (RAID5 from a selector), and
// deletes it, against every simulated vendor.
func TestAccRAIDVolumePerVendor(t *testing.T) {
	t.Parallel()
	for _, v := range bmcsim.Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			b := startBMC(t, bmcsim.Options{Vendor: v, TaskPolls: 1})
			ctrl, drives := controllerOf(v)
			resource.Test(t, resource.TestCase{
				IsUnitTest:               true,
				ProtoV6ProviderFactories: protoV6ProviderFactories(),
				CheckDestroy:             simVolumes(b, ctrl, 0),
				Steps: []resource.TestStep{
					{
						Config: volumeConfig(b, fmt.Sprintf("  raid_type = \"RAID1\"\n  name = \"os\"\n  drives = %s\n", hclList(drives[0], drives[1]))),
						Check: resource.ComposeAggregateTestCheckFunc(
							resource.TestCheckResourceAttr(volumeAddr, "storage_id", ctrl),
							resource.TestCheckResourceAttr(volumeAddr, "raid_type", "RAID1"),
							resource.TestCheckResourceAttrSet(volumeAddr, "volume_id"),
							resource.TestCheckResourceAttrSet(volumeAddr, "capacity_bytes"),
							resource.TestMatchResourceAttr(volumeAddr, "device_hint", errorMatching("/dev/disk/by-id/wwn-0x6")),
							resource.TestCheckResourceAttrSet(volumeAddr, "durable_name"),
							simVolumes(b, ctrl, 1),
						),
					},
					{
						ResourceName:            volumeAddr,
						ImportState:             true,
						ImportStateVerify:       true,
						ImportStateVerifyIgnore: []string{"bmc"},
					},
					{
						Config: volumeConfig(b, "  raid_type = \"RAID5\"\n  drive_selector = {\n    media_type = \"HDD\"\n    count = 3\n  }\n"),
						Check: resource.ComposeAggregateTestCheckFunc(
							resource.TestCheckResourceAttr(volumeAddr, "raid_type", "RAID5"),
							resource.TestCheckResourceAttr(volumeAddr, "drives.#", "3"),
							simVolumes(b, ctrl, 1),
						),
					},
				},
			})
		})
	}
}

// TestAccRAIDVolumeBadInputs asserts the diagnostic for each bad input.
func TestAccRAIDVolumeBadInputs(t *testing.T) {
	t.Parallel()
	b := startBMC(t, bmcsim.Options{Vendor: bmcsim.Supermicro, TaskPolls: 1})
	_, drives := controllerOf(bmcsim.Supermicro)
	two := hclList(drives[0], drives[1])
	cases := map[string]struct {
		body string
		want []string
	}{
		"raid1 one drive":   {"  raid_type = \"RAID1\"\n  drives = " + hclList(drives[0]) + "\n", []string{"Invalid RAID Volume", "RAID1 needs at least 2 drives, got 1"}},
		"raid5 two drives":  {"  raid_type = \"RAID5\"\n  drives = " + two + "\n", []string{"RAID5 needs at least 3 drives, got 2"}},
		"raid10 odd drives": {"  raid_type = \"RAID10\"\n  drives = " + hclList(drives[0], drives[1], drives[2], drives[3], drives[4]) + "\n", []string{"RAID10 needs an even number of drives, got 5"}},
		"unsupported raid":  {"  raid_type = \"RAID6\"\n  drives = " + hclList(drives[0], drives[1], drives[2], drives[3]) + "\n", []string{`RAID type "RAID6" is not supported by HA-RAID`, "RAID0, RAID1, RAID5, RAID10"}},
		"unknown drive":     {"  raid_type = \"RAID1\"\n  drives = [\"nope\", \"nope2\"]\n", []string{"drive nope is not on controller HA-RAID"}},
		"selector short":    {"  raid_type = \"RAID1\"\n  drive_selector = {\n    protocol = \"NVMe\"\n    count = 2\n  }\n", []string{"drive_selector wants 2 free drives", "only 0 match"}},
		"both drive inputs": {"  raid_type = \"RAID1\"\n  drives = " + two + "\n  drive_selector = {\n    count = 2\n  }\n", []string{"Invalid Attribute Combination"}},
		"bad raid level":    {"  raid_type = \"RAID3\"\n  drives = " + two + "\n", []string{"Invalid Attribute Value Match", "RAID3"}},
		"unknown storage":   {"  storage_id = \"nope\"\n  raid_type = \"RAID1\"\n  drives = " + two + "\n", []string{"Storage Controller Not Found", `storage controller "nope" is not on the system (it has: HA-RAID)`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			resource.Test(t, resource.TestCase{
				IsUnitTest:               true,
				ProtoV6ProviderFactories: protoV6ProviderFactories(),
				Steps:                    []resource.TestStep{{Config: volumeConfig(b, tc.body), ExpectError: errorMatching(tc.want...)}},
			})
		})
	}
	if n := len(b.sim.Volumes("1", "HA-RAID")); n != 0 {
		t.Fatalf("bad inputs created %d volumes", n)
	}
}

// TestAccRAIDVolumeDriveInUseAndTaskFailure: a drive already in a volume
// and a failed BMC task each give their diagnostic; the task's messages
// are shown.
func TestAccRAIDVolumeDriveInUseAndTaskFailure(t *testing.T) {
	t.Parallel()
	b := startBMC(t, bmcsim.Options{Vendor: bmcsim.Dell, TaskPolls: 1})
	ctrl, drives := controllerOf(bmcsim.Dell)
	first := volumeConfig(b, "  raid_type = \"RAID1\"\n  drives = "+hclList(drives[0], drives[1])+"\n")
	second := strings.Replace(volumeConfig(b, "  raid_type = \"RAID1\"\n  drives = "+hclList(drives[1], drives[2])+"\n"), `"test"`, `"second"`, 1)
	// Several RAID-capable controllers need storage_id.
	multi := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{{Storage: []bmcsim.StorageSpec{
		{ID: "A", SupportedRAIDTypes: []string{"RAID1"}, Drives: []bmcsim.DriveSpec{{ID: "a0", CapacityBytes: 1 << 30}, {ID: "a1", CapacityBytes: 1 << 30}}},
		{ID: "B", SupportedRAIDTypes: []string{"RAID1"}},
	}}}})
	resource.Test(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		CheckDestroy:             simVolumes(b, ctrl, 0),
		Steps: []resource.TestStep{
			{Config: first, Check: simVolumes(b, ctrl, 1)},
			{
				Config:      first + strings.TrimPrefix(second, providerConfig(fmt.Sprintf("  bmc_username = %q\n  bmc_password = %q\n  bmc_ca_certificate = %q\n", b.username, b.password, b.ca))),
				ExpectError: errorMatching("Invalid RAID Volume", "drive "+drives[1]+" is already in volume Disk.Virtual.0:RAID.Integrated.1-1"),
			},
			{
				PreConfig:   func() { b.sim.FailNextTask("Physical disk Disk.Bay.3 failed") },
				Config:      first + strings.Replace(strings.TrimPrefix(second, providerConfig(fmt.Sprintf("  bmc_username = %q\n  bmc_password = %q\n  bmc_ca_certificate = %q\n", b.username, b.password, b.ca))), hclList(drives[1], drives[2]), hclList(drives[2], drives[3]), 1),
				ExpectError: errorMatching("RAID Volume Task Failed", "ended Exception", "Physical disk Disk.Bay.3 failed"),
			},
			{Config: first, Check: simVolumes(b, ctrl, 1)},
		},
	})
	resource.Test(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{{
			Config:      volumeConfig(multi, "  raid_type = \"RAID1\"\n  drives = [\"a0\", \"a1\"]\n"),
			ExpectError: errorMatching("Invalid RAID Volume", "several RAID-capable storage controllers (A, B)", "set storage_id"),
		}},
	})
}

// TestAccStorageDataSource lists controllers, drives and a volume built by
// metal_raid_volume, whose device_hint a machine's root_device can use.
func TestAccStorageDataSource(t *testing.T) {
	t.Parallel()
	b := startBMC(t, bmcsim.Options{Vendor: bmcsim.Dell, TaskPolls: 1})
	_, drives := controllerOf(bmcsim.Dell)
	cfg := volumeConfig(b, "  raid_type = \"RAID1\"\n  name = \"os\"\n  drives = "+hclList(drives[0], drives[1])+"\n") + fmt.Sprintf(`
data "metal_storage" "test" {
  bmc = {
    endpoint = %q
  }
  depends_on = [metal_raid_volume.test]
}
`, b.url)
	resource.Test(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{{
			Config: cfg,
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr("data.metal_storage.test", "controllers.#", "2"),
				resource.TestCheckResourceAttr("data.metal_storage.test", "controllers.0.id", "RAID.Integrated.1-1"),
				resource.TestCheckResourceAttr("data.metal_storage.test", "controllers.0.drives.#", "6"),
				resource.TestCheckResourceAttr("data.metal_storage.test", "controllers.0.drives.0.media_type", "SSD"),
				resource.TestCheckResourceAttr("data.metal_storage.test", "controllers.0.drives.0.volume_ids.0", "Disk.Virtual.0:RAID.Integrated.1-1"),
				resource.TestCheckResourceAttr("data.metal_storage.test", "controllers.0.volumes.0.raid_type", "RAID1"),
				resource.TestCheckResourceAttrPair("data.metal_storage.test", "controllers.0.volumes.0.device_hint", volumeAddr, "device_hint"),
				resource.TestCheckResourceAttr("data.metal_storage.test", "controllers.1.supported_raid_types.#", "0"),
			),
		}},
	})
}

// TestDeviceHintFitsRootDevice: a volume's device_hint is a valid
// metal_machine.root_device.
func TestDeviceHintFitsRootDevice(t *testing.T) {
	t.Parallel()
	for _, hint := range []string{"/dev/disk/by-id/wwn-0x6d0946606d2b3c8e1f2a3b4c5d6e7f80", "/dev/disk/by-id/nvme-eui.0025385b71b0c2a1"} {
		if !rootDeviceRegexp.MatchString(hint) {
			t.Errorf("root_device rejects device hint %q", hint)
		}
	}
}

// TestAccRAIDVolumeTimeouts: timeouts.create bounds the wait for the
// controller's task and timeouts.delete bounds the delete; each names
// the value to raise.
func TestAccRAIDVolumeTimeouts(t *testing.T) {
	t.Parallel()
	t.Run("create", func(t *testing.T) {
		t.Parallel()
		// The task runs for 400 polls (20s at the test's 50ms poll
		// interval); with the default 20m the create would succeed.
		b := startBMC(t, bmcsim.Options{Vendor: bmcsim.Generic, TaskPolls: 400})
		ctrl, drives := controllerOf(bmcsim.Generic)
		resource.Test(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			CheckDestroy:             simVolumes(b, ctrl, 0),
			Steps: []resource.TestStep{{
				Config: volumeConfig(b, "  raid_type = \"RAID1\"\n  drives = "+hclList(drives[0], drives[1])+
					"\n  timeouts {\n    create = \"1s\"\n  }\n"),
				ExpectError: errorMatching("BMC Operation Timed Out", "Unable to create RAID volume",
					"raise `timeouts.create` (default: `20m`)", "/TaskService/TaskMonitors/"),
			}},
		})
		if n := len(b.sim.Volumes(b.sim.SystemIDs()[0], ctrl)); n != 0 {
			t.Fatalf("the timed-out task built %d volumes", n)
		}
	})
	t.Run("delete", func(t *testing.T) {
		t.Parallel()
		b := startBMC(t, bmcsim.Options{Vendor: bmcsim.Generic, TaskPolls: 1})
		ctrl, drives := controllerOf(bmcsim.Generic)
		cfg := func(deleteTimeout string) string {
			return volumeConfig(b, "  raid_type = \"RAID1\"\n  drives = "+hclList(drives[0], drives[1])+
				"\n  timeouts {\n    delete = \""+deleteTimeout+"\"\n  }\n")
		}
		resource.Test(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			CheckDestroy:             simVolumes(b, ctrl, 0),
			Steps: []resource.TestStep{
				{Config: cfg("100ms"), Check: simVolumes(b, ctrl, 1)},
				{
					// A BMC that answers in 250ms cannot log in within 100ms.
					PreConfig:   func() { b.sim.SetLatency(250 * time.Millisecond) },
					Config:      cfg("100ms"),
					Destroy:     true,
					ExpectError: errorMatching("BMC Operation Timed Out", "Unable to delete RAID volume", "raise `timeouts.delete` (default: `10m`)"),
				},
				{
					// The volume survived and stays in state; a longer timeout
					// is an in-place change.
					PreConfig: func() { b.sim.SetLatency(0) },
					Config:    cfg("1m"),
					ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(volumeAddr, plancheck.ResourceActionUpdate),
					}},
					Check: resource.ComposeAggregateTestCheckFunc(
						simVolumes(b, ctrl, 1),
						resource.TestCheckResourceAttr(volumeAddr, "timeouts.delete", "1m"),
					),
				},
			},
		})
	})
}
