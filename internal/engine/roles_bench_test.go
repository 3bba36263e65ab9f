package engine_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/agent"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// BenchmarkApplyRolesInPlace measures an in-place role change end to end:
// ApplyRoles stores the new desired set, the agent's long poll returns it
// at once, the agent writes the role's file under a scratch root, runs its
// script and reports, and ApplyRoles returns. One op is one converged
// change (loopback HTTP, a real agent loop in-process).
func BenchmarkApplyRolesInPlace(b *testing.B) {
	lab := newBootLab(b, b.TempDir())
	e := engine.NewEmbedded(lab.cfg)
	defer e.Close()
	lab.image(b, e)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	role := engine.Role{Name: "app", Parameters: map[string]engine.RoleParameter{"v": {Type: "number", Default: strp("0")}},
		Files:   []engine.RoleFile{{Path: "/etc/app.conf", Content: "version={{ .params.v }}\n"}},
		Scripts: []string{"test -s \"$METAL_ROOT/etc/app.conf\""}}
	if _, err := e.PutRole(ctx, role); err != nil {
		b.Fatal(err)
	}
	sel := engine.RoleSelection{Roles: []string{"app"}}
	if _, err := e.Provision(ctx, lab.bmc, engine.ProvisionSpec{Image: "debian", Agent: true, Roles: sel}); err != nil {
		b.Fatal(err)
	}
	inst, _ := lab.fleet.Machine("node-1").Disk.Installed()
	var conf roles.AgentConfig
	if err := json.Unmarshal([]byte(inst.Files[roles.DefaultConfigPath]), &conf); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	go func() {
		_ = agent.Run(ctx, agent.Config{Server: conf.Server, MachineID: conf.MachineID, Credential: conf.Credential,
			Root: dir, StatePath: dir + "/state.json", MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	}()
	b.ResetTimer()
	for i := range b.N {
		sel.Parameters = map[string]map[string]string{"app": {"v": strconv.Itoa(i + 1)}}
		st, err := e.ApplyRoles(ctx, lab.bmc, sel)
		if err != nil || !st.Converged() {
			b.Fatalf("ApplyRoles: %+v %v", st, err)
		}
	}
}
