package provider

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"

	"github.com/composable-metal/terraform-provider-metal/internal/api"
	"github.com/composable-metal/terraform-provider-metal/internal/daemon/daemontest"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
	"github.com/composable-metal/terraform-provider-metal/internal/machinesim"
)

// TestAccRoleDataSource: a workspace uses a role another workspace owns on
// the same boot service daemon. The data source reads it, a machine
// installs with its ref, and when the owner changes the role the machine's
// next plan is an in-place update; an unknown name is an error naming it.
func TestAccRoleDataSource(t *testing.T) {
	rig := startProvisionRig(t, nil)
	d := daemontest.Start(t, daemontest.Options{DHCPPort: rig.dhcp.Port})
	m := &engineMode{name: "remote", daemon: d, token: d.Token("create", "terraform")}

	// The workspace that owns the role, through the daemon's API.
	owner, err := api.NewClient(api.Config{Endpoint: d.Endpoint, Token: d.Token("create", "platform"), TLSFingerprint: d.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	def := "6443"
	putRole := func(motd string) *engine.RoleInfo {
		info, err := owner.PutRole(ctx, engine.Role{
			Name: "base", Description: "message of the day",
			Parameters: map[string]engine.RoleParameter{"port": {Type: "number", Default: &def, Description: "API port"}},
			Files:      []engine.RoleFile{{Path: "/etc/motd", Content: motd, Mode: "0644"}},
			Packages:   []string{"chrony"},
			Scripts:    []string{"echo hi"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	v1 := putRole("v1 on {{ .machine.hostname }}\n")

	agent := &agentRef{}
	config := rig.configFor(m, `
  hostname = "node1"
  roles    = [data.metal_role.base.ref]
`) + `
data "metal_role" "base" {
  name = "base"
}
`
	resource.Test(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{
				Config: config,
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("data.metal_role.base", "ref", v1.Ref),
					resource.TestCheckResourceAttr("data.metal_role.base", "description", "message of the day"),
					resource.TestCheckResourceAttr("data.metal_role.base", "parameters.port.type", "number"),
					resource.TestCheckResourceAttr("data.metal_role.base", "parameters.port.default", "6443"),
					resource.TestCheckResourceAttr("data.metal_role.base", "files.0.path", "/etc/motd"),
					resource.TestCheckResourceAttr("data.metal_role.base", "files.0.mode", "0644"),
					resource.TestCheckNoResourceAttr("data.metal_role.base", "files.0.owner"),
					resource.TestCheckResourceAttr("data.metal_role.base", "packages.0", "chrony"),
					resource.TestCheckNoResourceAttr("data.metal_role.base", "requires"),
					rig.installed(func(inst machinesim.Installation) error {
						if inst.Files["/etc/motd"] != "v1 on node1\n" {
							return fmt.Errorf("/etc/motd at install = %q", inst.Files["/etc/motd"])
						}
						var err error
						agent.a, err = startAgent(t, inst)
						return err
					}),
				),
			},
			{
				// The owner changes the role: this workspace's machine updates
				// in place.
				PreConfig: func() {
					if v2 := putRole("v2\n"); v2.Ref == v1.Ref {
						t.Fatalf("ref did not change: %s", v2.Ref)
					}
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("metal_machine.test", plancheck.ResourceActionUpdate),
				}},
				Check: agent.file("etc/motd", "v2\n"),
			},
			{
				Config:      config + `data "metal_role" "missing" { name = "no-such-role" }`,
				ExpectError: regexp.MustCompile(`(?s)Role Not Found.*no role "no-such-role"`),
			},
		},
	})
}
