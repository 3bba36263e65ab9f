package provider

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
)

// biosAttrOf is a writable attribute per vendor with a non-default value
// and a second non-default value of another attribute.
var biosAttrOf = map[bmcsim.Vendor][4]string{
	bmcsim.Generic:    {"ProcHyperthreading", "Disabled", "PowerProfile", "MaxPerformance"},
	bmcsim.Dell:       {"LogicalProc", "Disabled", "SriovGlobalEnable", "Enabled"},
	bmcsim.HPE:        {"ProcHyperthreading", "Disabled", "Sriov", "Disabled"},
	bmcsim.Supermicro: {"HyperThreading", "Disable", "SR-IOVSupport", "Disabled"},
}

func biosConfig(b testBMC, attrs string) string {
	return machineConfig(b, "  bios_profile = metal_bios_profile.test\n") + fmt.Sprintf(`
resource "metal_bios_profile" "test" {
  name       = "compute"
  attributes = %s
}
`, attrs)
}

func simBIOS(b testBMC, attr, want string) func(*terraform.State) error {
	return func(*terraform.State) error {
		id := b.sim.SystemIDs()[0]
		cur, pend, _ := b.sim.BIOSAttributes(id)
		if fmt.Sprint(cur[attr]) != want || len(pend) != 0 {
			return fmt.Errorf("BIOS %s = %v (pending %v), want %s", attr, cur[attr], pend, want)
		}
		return nil
	}
}

// TestAccMachineBIOSProfilePerVendor: the profile is applied at create,
// a changed profile updates the machine in place, and an out-of-band BIOS
// change shows as drift and is put back.
func TestAccMachineBIOSProfilePerVendor(t *testing.T) {
	t.Parallel()
	for _, v := range bmcsim.Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			b := startBMC(t, bmcsim.Options{Vendor: v})
			a := biosAttrOf[v]
			one := fmt.Sprintf("{ %q = %q }", a[0], a[1])
			two := fmt.Sprintf("{ %q = %q, %q = %q }", a[0], a[1], a[2], a[3])
			resource.Test(t, resource.TestCase{
				IsUnitTest:               true,
				ProtoV6ProviderFactories: protoV6ProviderFactories(),
				Steps: []resource.TestStep{
					{Config: biosConfig(b, one), Check: simBIOS(b, a[0], a[1])},
					{
						Config:           biosConfig(b, two),
						ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("metal_machine.test", plancheck.ResourceActionUpdate)}},
						Check:            resource.ComposeAggregateTestCheckFunc(simBIOS(b, a[0], a[1]), simBIOS(b, a[2], a[3])),
					},
					{
						PreConfig:          func() { b.sim.SetBIOSAttribute(b.sim.SystemIDs()[0], a[2], "drifted") },
						Config:             biosConfig(b, two),
						PlanOnly:           true,
						ExpectNonEmptyPlan: true,
					},
					{Config: biosConfig(b, two), Check: simBIOS(b, a[2], a[3])},
				},
			})
		})
	}
}

// TestAccMachineBIOSProfileBadValues: a value the BIOS refuses and an
// attribute the registry does not know each give their diagnostic.
func TestAccMachineBIOSProfileBadValues(t *testing.T) {
	t.Parallel()
	t.Run("did not stick", func(t *testing.T) {
		t.Parallel()
		b := startBMC(t, bmcsim.Options{Vendor: bmcsim.Dell})
		resource.Test(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{{
				Config:      biosConfig(b, `{ ProcCStates = "Disabled" }`),
				ExpectError: errorMatching("BIOS Settings Did Not Stick", `ProcCStates: wanted "Disabled", the BIOS has "Enabled"`, "Attributes not applied: ProcCStates"),
			}},
		})
	})
	t.Run("unknown attribute", func(t *testing.T) {
		t.Parallel()
		b := startBMC(t, bmcsim.Options{Vendor: bmcsim.HPE})
		resource.Test(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{{
				Config:      biosConfig(b, `{ Bogus = "x", WorkloadProfile = "Turbo" }`),
				ExpectError: errorMatching("Invalid BIOS Profile", "Bogus is not a BIOS attribute of this system", `WorkloadProfile = "Turbo" is not allowed`),
			}},
		})
	})
	t.Run("maintenance window needs a start", func(t *testing.T) {
		t.Parallel()
		resource.Test(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{{
				Config: providerConfig("") + `
resource "metal_bios_profile" "test" {
  name       = "p"
  attributes = { A = "1" }
  apply_time = "AtMaintenanceWindowStart"
}
`,
				ExpectError: errorMatching("Missing Maintenance Window Start"),
			}},
		})
	})
}
