package provider

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
)

func TestAccMachineInventoryDataSource(t *testing.T) {
	b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{
		{ID: "blade-a", Manufacturer: "Contoso", Model: "3500RX", SerialNumber: "SN-A", UUID: "00000000-0000-4000-8000-00000000000a", PoweredOn: true},
		{ID: "blade-b", Manufacturer: "Contoso", Model: "3500RX", SerialNumber: "SN-B", UUID: "00000000-0000-4000-8000-00000000000b"},
	}})
	const addr = "data.metal_machine_inventory.test"
	system := func(id, serial, uuid, power string) knownvalue.Check {
		return knownvalue.ObjectExact(map[string]knownvalue.Check{
			"id":            knownvalue.StringExact(id),
			"name":          knownvalue.NotNull(),
			"uuid":          knownvalue.StringExact(uuid),
			"manufacturer":  knownvalue.StringExact("Contoso"),
			"model":         knownvalue.StringExact("3500RX"),
			"serial_number": knownvalue.StringExact(serial),
			"power_state":   knownvalue.StringExact(power),
		})
	}
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{{
			// Credentials come from the provider; the bmc block names only the BMC.
			Config: providerConfig(fmt.Sprintf("  bmc_username = %q\n  bmc_password = %q\n", b.username, b.password)) + fmt.Sprintf(`
data "metal_machine_inventory" "test" {
  bmc = {
    endpoint       = %q
    ca_certificate = %q
  }
}
`, b.url, b.ca),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(addr, tfjsonpath.New("systems"), knownvalue.ListExact([]knownvalue.Check{
					system("blade-a", "SN-A", "00000000-0000-4000-8000-00000000000a", "on"),
					system("blade-b", "SN-B", "00000000-0000-4000-8000-00000000000b", "off"),
				})),
			},
		}},
	})
	// Reading an inventory changes nothing on the BMC.
	for _, id := range []string{"blade-a", "blade-b"} {
		if st, _ := b.sim.System(id); len(st.Resets) != 0 {
			t.Errorf("system %s was reset: %v", id, st.Resets)
		}
	}
}

func TestAccMachineInventoryDataSource_wrongPassword(t *testing.T) {
	b := startBMC(t, bmcsim.Options{})
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{{
			Config: providerConfig("") + fmt.Sprintf(`
data "metal_machine_inventory" "test" {
  bmc = {
    endpoint       = %q
    username       = "admin"
    password       = "wrong"
    ca_certificate = %q
  }
}
`, b.url, b.ca),
			ExpectError: errorMatching("BMC Authentication Failed", "Unable to read machine inventory"),
		}},
	})
}
