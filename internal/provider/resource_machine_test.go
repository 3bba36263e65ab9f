package provider

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	"github.com/hashicorp/terraform-plugin-testing/tfversion"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
)

const machineAddr = "metal_machine.test"

// testSystem is a fully specified system so every inventory value is known.
func testSystem(id string, poweredOn bool) bmcsim.SystemSpec {
	return bmcsim.SystemSpec{
		ID:           id,
		UUID:         "8a3c1f2e-1111-4c2b-9d3e-0123456789ab",
		Manufacturer: "Contoso",
		Model:        "3500RX",
		SerialNumber: "SN-" + id,
		BIOSVersion:  "P79 v1.45",
		CPUCount:     2,
		CPUModel:     "Multi-Core Intel(R) Xeon(R) processor 7xxx Series",
		MemoryGiB:    96,
		NICs: []bmcsim.NIC{
			{ID: "nic1", MAC: "52:54:00:aa:00:01", LinkUp: false},
			{ID: "nic2", MAC: "52:54:00:aa:00:02", LinkUp: true},
		},
		PoweredOn: poweredOn,
		BootMode:  "UEFI",
	}
}

func TestAccMachine_create(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *engineMode) {
		b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", false)}})
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			CheckDestroy:             simPower(b, "node1", "Off"),
			Steps: []resource.TestStep{
				{
					Config: m.machineConfig(b, ""),
					Check:  resource.ComposeTestCheckFunc(simPower(b, "node1", "On"), simLastReset(b, "node1", "On")),
					ConfigStateChecks: []statecheck.StateCheck{
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("id"), knownvalue.StringExact(b.url+"#node1")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("bmc").AtMapKey("system_id"), knownvalue.StringExact("node1")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("bmc").AtMapKey("insecure"), knownvalue.Bool(false)),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("power_state"), knownvalue.StringExact("on")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("on_destroy"), knownvalue.StringExact("power_off")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("uuid"), knownvalue.StringExact("8a3c1f2e-1111-4c2b-9d3e-0123456789ab")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("manufacturer"), knownvalue.StringExact("Contoso")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("model"), knownvalue.StringExact("3500RX")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("serial_number"), knownvalue.StringExact("SN-node1")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("bios_version"), knownvalue.StringExact("P79 v1.45")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("cpu_count"), knownvalue.Int64Exact(2)),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("cpu_model"), knownvalue.StringExact("Multi-Core Intel(R) Xeon(R) processor 7xxx Series")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("memory_gib"), knownvalue.Float64Exact(96)),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("boot_mode"), knownvalue.StringExact("UEFI")),
						// The first NIC has no link, so the default is the second.
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("boot_mac"), knownvalue.StringExact("52:54:00:aa:00:02")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("nics"), knownvalue.ListExact([]knownvalue.Check{
							knownvalue.ObjectExact(map[string]knownvalue.Check{
								"id": knownvalue.StringExact("nic1"), "mac": knownvalue.StringExact("52:54:00:aa:00:01"),
								"link_status": knownvalue.NotNull(), "link_up": knownvalue.Bool(false),
							}),
							knownvalue.ObjectExact(map[string]knownvalue.Check{
								"id": knownvalue.StringExact("nic2"), "mac": knownvalue.StringExact("52:54:00:aa:00:02"),
								"link_status": knownvalue.StringExact("LinkUp"), "link_up": knownvalue.Bool(true),
							}),
						})),
					},
				},
				{
					// Re-applying the same configuration changes nothing.
					Config: m.machineConfig(b, ""),
					ConfigPlanChecks: resource.ConfigPlanChecks{
						PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
					},
				},
			},
		})
	})
}

func TestAccMachine_import(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *engineMode) {
		b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", true)}})
		// Import takes credentials and trust from the provider only, so this
		// configuration keeps them there.
		config := m.providerConfig(fmt.Sprintf("  bmc_username = %q\n  bmc_password = %q\n  bmc_ca_certificate = %q\n", b.username, b.password, b.ca)) +
			fmt.Sprintf(`
	resource "metal_machine" "test" {
	  bmc = {
	    endpoint = %q
	  }
	}
	`, b.url)
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{
				{Config: config},
				{
					ResourceName:      machineAddr,
					ImportState:       true,
					ImportStateVerify: true,
					ImportStateIdFunc: func(*terraform.State) (string, error) { return b.url, nil },
				},
				{
					ResourceName:      machineAddr,
					ImportState:       true,
					ImportStateVerify: true,
					ImportStateIdFunc: func(*terraform.State) (string, error) { return b.url + "#node1", nil },
				},
				{
					ResourceName:  machineAddr,
					ImportState:   true,
					ImportStateId: b.url + "#",
					ExpectError:   errorMatching("Invalid Import ID", "nothing follows", `"<endpoint>#<system_id>"`),
				},
				{
					ResourceName:  machineAddr,
					ImportState:   true,
					ImportStateId: "bmc.example:443",
					ExpectError:   errorMatching("Invalid Import ID", "it has no scheme"),
				},
			},
		})
	})
}

func TestAccMachine_powerUpdate(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *engineMode) {
		b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", true)}})
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{
				{
					// Creating a machine that should be off shuts it down gracefully.
					Config: m.machineConfig(b, `  power_state = "off"`),
					Check:  resource.ComposeTestCheckFunc(simPower(b, "node1", "Off"), simLastReset(b, "node1", "GracefulShutdown")),
					ConfigStateChecks: []statecheck.StateCheck{
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("power_state"), knownvalue.StringExact("off")),
					},
				},
				{
					Config: m.machineConfig(b, `  power_state = "on"`),
					ConfigPlanChecks: resource.ConfigPlanChecks{
						PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(machineAddr, plancheck.ResourceActionUpdate)},
					},
					Check: resource.ComposeTestCheckFunc(simPower(b, "node1", "On"), simLastReset(b, "node1", "On")),
					ConfigStateChecks: []statecheck.StateCheck{
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("power_state"), knownvalue.StringExact("on")),
					},
				},
				{
					Config: m.machineConfig(b, `  power_state = "off"`),
					ConfigPlanChecks: resource.ConfigPlanChecks{
						PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(machineAddr, plancheck.ResourceActionUpdate)},
					},
					Check: resource.ComposeTestCheckFunc(simPower(b, "node1", "Off"), simLastReset(b, "node1", "GracefulShutdown")),
				},
			},
		})
	})
}

func TestAccMachine_drift(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *engineMode) {
		b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", false)}})
		config := m.machineConfig(b, "")
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{
				{Config: config, Check: simPower(b, "node1", "On")},
				{
					// Someone pulls the plug: refresh sees it and plans to power on.
					PreConfig:          func() { b.sim.SetPowerState("node1", false) },
					Config:             config,
					PlanOnly:           true,
					ExpectNonEmptyPlan: true,
					ConfigPlanChecks: resource.ConfigPlanChecks{
						PostApplyPostRefresh: []plancheck.PlanCheck{
							plancheck.ExpectResourceAction(machineAddr, plancheck.ResourceActionUpdate),
							plancheck.ExpectKnownValue(machineAddr, tfjsonpath.New("power_state"), knownvalue.StringExact("on")),
						},
					},
				},
				{
					Config: config,
					ConfigPlanChecks: resource.ConfigPlanChecks{
						PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(machineAddr, plancheck.ResourceActionUpdate)},
					},
					Check: resource.ComposeTestCheckFunc(simPower(b, "node1", "On"), simLastReset(b, "node1", "On")),
				},
			},
		})
	})
}

func TestAccMachine_destroyPowersOff(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *engineMode) {
		b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", true)}})
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			CheckDestroy:             resource.ComposeTestCheckFunc(simPower(b, "node1", "Off"), simLastReset(b, "node1", "GracefulShutdown")),
			Steps: []resource.TestStep{
				{Config: m.machineConfig(b, ""), Check: simPower(b, "node1", "On")},
			},
		})
	})
}

func TestAccMachine_onDestroyNone(t *testing.T) {
	b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", false)}})
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		CheckDestroy: func(*terraform.State) error {
			if err := simPower(b, "node1", "On")(nil); err != nil {
				return err
			}
			if st, _ := b.sim.System("node1"); len(st.Resets) != 1 {
				return fmt.Errorf("resets %v: destroy with on_destroy = \"none\" must send none", st.Resets)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: machineConfig(b, `  on_destroy = "none"`),
				Check:  simPower(b, "node1", "On"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("on_destroy"), knownvalue.StringExact("none")),
				},
			},
		},
	})
}

func TestAccMachine_disappears(t *testing.T) {
	b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", true), testSystem("node2", true)}})
	config := machineConfigBMC(b, `    system_id = "node1"`, "")
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{Config: config},
			{
				// The system is gone from the BMC: refresh drops it from state
				// (with a "Machine Gone From BMC" warning) and plans to create it.
				PreConfig:          func() { b.sim.RemoveSystem("node1") },
				Config:             config,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(machineAddr, plancheck.ResourceActionCreate),
					},
				},
			},
			{
				RefreshState:       true,
				ExpectNonEmptyPlan: true,
				Check: func(s *terraform.State) error {
					if _, ok := s.RootModule().Resources[machineAddr]; ok {
						return fmt.Errorf("%s is still in state after refresh", machineAddr)
					}
					return nil
				},
			},
			{
				// Once it is back, apply creates it again.
				PreConfig: func() { b.sim.AddSystem(testSystem("node1", false)) },
				Config:    config,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(machineAddr, plancheck.ResourceActionCreate)},
				},
				Check: simPower(b, "node1", "On"),
			},
		},
	})
}

func TestAccMachine_errors(t *testing.T) {
	t.Parallel()
	t.Run("unreachable", func(t *testing.T) {
		b := testBMC{url: closedPort(t), username: testUsername, password: testPassword}
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{{
				Config:      machineConfig(b, ""),
				ExpectError: errorMatching("BMC Unreachable", "Nothing answered at `bmc.endpoint`", "cannot reach the BMC at "+b.url),
			}},
		})
	})
	t.Run("wrong password", func(t *testing.T) {
		b := startBMC(t, bmcsim.Options{})
		b.password = "not-the-password"
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{{
				Config:      machineConfig(b, ""),
				ExpectError: errorMatching("BMC Authentication Failed", "METAL_BMC_USERNAME/METAL_BMC_PASSWORD"),
			}},
		})
	})
	t.Run("ambiguous system", func(t *testing.T) {
		b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{{ID: "blade-a"}, {ID: "blade-b"}}})
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{{
				Config:      machineConfig(b, ""),
				ExpectError: errorMatching("Ambiguous BMC System", `The BMC manages 2 systems: "blade-a", "blade-b".`, "Set `bmc.system_id`"),
			}},
		})
	})
	t.Run("malformed endpoint", func(t *testing.T) {
		b := startBMC(t, bmcsim.Options{})
		for _, bad := range []struct{ endpoint, why string }{
			{strings.TrimPrefix(b.url, "https://"), "it has no scheme"},
			{strings.Replace(b.url, "https://", "ftp://", 1), `scheme "ftp" is not http or https`},
			{strings.Replace(b.url, "https://", "https://root:calvin@", 1), "credentials do not belong in the URL"},
			{b.url + "/redfish/v1/Managers/1", "is not a Redfish system path"},
		} {
			bb := b
			bb.url = bad.endpoint
			resource.Test(t, resource.TestCase{
				IsUnitTest:               true,
				ProtoV6ProviderFactories: protoV6ProviderFactories(),
				Steps: []resource.TestStep{{
					Config:      machineConfig(bb, ""),
					PlanOnly:    true,
					ExpectError: errorMatching("Invalid BMC Endpoint", bad.why),
				}},
			})
		}
		if n := len(b.sim.Requests()); n != 0 {
			t.Errorf("plan-time validation contacted the BMC (%d requests)", n)
		}
	})
	t.Run("conflicting system", func(t *testing.T) {
		b := testBMC{url: "https://127.0.0.1:1/redfish/v1/Systems/1", username: "u", password: "p"}
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{{
				Config:      machineConfigBMC(b, `    system_id = "2"`, ""),
				PlanOnly:    true,
				ExpectError: errorMatching("Conflicting BMC System", `names system "1" but`, `is "2"`),
			}},
		})
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		b := startBMC(t, bmcsim.Options{})
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{{
				Config: providerConfig("") + fmt.Sprintf(`
resource "metal_machine" "test" {
  bmc = {
    endpoint = %q
    username = %q
    password = %q
    insecure = false
  }
}
`, b.url, b.username, b.password),
				ExpectError: errorMatching("Untrusted BMC Certificate", "`bmc.ca_certificate`", "insecure = true"),
			}},
		})
	})
	t.Run("boot_mac not on machine", func(t *testing.T) {
		b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", false)}})
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{{
				Config:      machineConfig(b, `  boot_mac = "52:54:00:ff:ff:ff"`),
				ExpectError: errorMatching("Boot MAC Not On Machine", "52:54:00:ff:ff:ff", "52:54:00:aa:00:01, 52:54:00:aa:00:02"),
			}},
		})
		if st, _ := b.sim.System("node1"); len(st.Resets) != 0 || st.PowerState != "Off" {
			t.Errorf("a rejected boot_mac must not touch the machine: state %s, resets %v", st.PowerState, st.Resets)
		}
	})
	t.Run("boot_mac invalid", func(t *testing.T) {
		resource.ParallelTest(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{{
				Config:      machineConfig(testBMC{url: "https://127.0.0.1:1", username: "u", password: "p"}, `  boot_mac = "not-a-mac"`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Invalid MAC Address`),
			}},
		})
	})
}

func TestAccMachine_bootMAC(t *testing.T) {
	b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", false)}})
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{
				// Any MAC notation works; it is kept as written.
				Config: machineConfig(b, `  boot_mac = "52-54-00-AA-00-01"`),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("boot_mac"), knownvalue.StringExact("52-54-00-AA-00-01")),
				},
			},
		},
	})
}

func TestAccMachine_passwordWriteOnly(t *testing.T) {
	// Not parallel: refresh and destroy take the password from the
	// environment, which t.Setenv changes for the whole process.
	b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", false)}})
	t.Setenv(envBMCPassword, b.password)
	config := func(version int) string {
		return providerConfig("") + fmt.Sprintf(`
resource "metal_machine" "test" {
  bmc = {
    endpoint            = %q
    username            = %q
    password_wo         = %q
    password_wo_version = %d
    ca_certificate      = %q
  }
}
`, b.url, b.username, b.password, version, b.ca)
	}
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		TerraformVersionChecks:   []tfversion.TerraformVersionCheck{tfversion.SkipBelow(tfversion.Version1_11_0)},
		CheckDestroy:             simPower(b, "node1", "Off"),
		Steps: []resource.TestStep{
			{
				Config: config(1),
				Check:  simPower(b, "node1", "On"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("bmc").AtMapKey("password_wo"), knownvalue.Null()),
					statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("bmc").AtMapKey("password"), knownvalue.Null()),
					statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("bmc").AtMapKey("password_wo_version"), knownvalue.Int64Exact(1)),
				},
			},
			{
				// A new version is an in-place update that reads with the new password.
				Config: config(2),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(machineAddr, plancheck.ResourceActionUpdate)},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("bmc").AtMapKey("password_wo_version"), knownvalue.Int64Exact(2)),
				},
			},
			{
				// Without a provider password, refresh cannot log in and says why.
				PreConfig:   func() { t.Setenv(envBMCPassword, "") },
				Config:      config(2),
				PlanOnly:    true,
				ExpectError: errorMatching("Missing BMC Password", "write-only", "`bmc_password`", "METAL_BMC_PASSWORD"),
			},
			{
				// With it back, refresh works again and destroy can log in.
				PreConfig: func() { t.Setenv(envBMCPassword, b.password) },
				Config:    config(2),
			},
		},
	})
}

func TestAccMachine_passwordConflicts(t *testing.T) {
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		TerraformVersionChecks:   []tfversion.TerraformVersionCheck{tfversion.SkipBelow(tfversion.Version1_11_0)},
		Steps: []resource.TestStep{{
			Config: providerConfig("") + `
resource "metal_machine" "test" {
  bmc = {
    endpoint    = "https://127.0.0.1:1"
    username    = "admin"
    password    = "one"
    password_wo = "two"
  }
}
`,
			PlanOnly:    true,
			ExpectError: errorMatching("Invalid Attribute Combination", "password_wo"),
		}},
	})
}

func TestAccMachine_vendors(t *testing.T) {
	t.Parallel()
	for _, v := range bmcsim.Vendors() {
		t.Run(string(v), func(t *testing.T) {
			b := startBMC(t, bmcsim.Options{Vendor: v})
			ids := b.sim.SystemIDs()
			if len(ids) != 1 {
				t.Fatalf("simulator systems: %v", ids)
			}
			id := ids[0]
			resource.ParallelTest(t, resource.TestCase{
				IsUnitTest:               true,
				ProtoV6ProviderFactories: protoV6ProviderFactories(),
				CheckDestroy:             simPower(b, id, "Off"),
				Steps: []resource.TestStep{{
					Config: machineConfig(b, ""),
					Check:  simPower(b, id, "On"),
					ConfigStateChecks: []statecheck.StateCheck{
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("bmc").AtMapKey("system_id"), knownvalue.StringExact(id)),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("power_state"), knownvalue.StringExact("on")),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("manufacturer"), knownvalue.NotNull()),
						statecheck.ExpectKnownValue(machineAddr, tfjsonpath.New("nics"), knownvalue.ListSizeExact(2)),
					},
				}},
			})
		})
	}
}

func TestAccMachine_insecure(t *testing.T) {
	b := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{testSystem("node1", false)}})
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{{
			Config: providerConfig("") + fmt.Sprintf(`
resource "metal_machine" "test" {
  bmc = {
    endpoint = %q
    username = %q
    password = %q
    insecure = true
  }
}
`, b.url, b.username, b.password),
			Check: simPower(b, "node1", "On"),
		}},
	})
}

func TestAccMachine_createTimeoutKeepsState(t *testing.T) {
	b := startBMC(t, bmcsim.Options{
		Systems:         []bmcsim.SystemSpec{testSystem("node1", false)},
		PowerTransition: time.Second,
	})
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		CheckDestroy:             simPower(b, "node1", "Off"),
		Steps: []resource.TestStep{
			{
				// Power-on takes longer than the create timeout allows.
				Config:      machineConfig(b, "  timeouts {\n    create = \"300ms\"\n  }"),
				ExpectError: errorMatching("BMC Operation Timed Out", "raise `timeouts.create` (default: `20m`)"),
			},
			{
				// The machine was kept in state, tainted, so the next apply
				// replaces it rather than losing track of it.
				Config: machineConfig(b, "  timeouts {\n    create = \"1m\"\n  }"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(machineAddr, plancheck.ResourceActionDestroyBeforeCreate),
					},
				},
				Check: simPower(b, "node1", "On"),
			},
		},
	})
}
