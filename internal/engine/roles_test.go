package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

func strp(s string) *string { return &s }

// testAgent speaks the agent protocol by hand, from the config the
// simulated machine's install wrote.
type testAgent struct {
	t    *testing.T
	conf roles.AgentConfig
}

func (a *testAgent) desired(ctx context.Context, cred string, have roles.Desired, wait int) (*roles.Desired, int) {
	a.t.Helper()
	u := fmt.Sprintf("%s%s?revision=%s&generation=%d&wait=%d", a.conf.Server, roles.PathDesired, have.Revision, have.Generation, wait)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode
	}
	var d roles.Desired
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		a.t.Fatal(err)
	}
	return &d, resp.StatusCode
}

func (a *testAgent) report(ctx context.Context, rep roles.Report) {
	a.t.Helper()
	b, _ := json.Marshal(rep)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.conf.Server+roles.PathReport, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+a.conf.Credential)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		a.t.Fatalf("report: %s", resp.Status)
	}
}

func TestRoleCatalog(t *testing.T) {
	t.Parallel()
	lab := newBootLab(t, t.TempDir())
	e := engine.NewEmbedded(lab.cfg)
	defer e.Close()
	ctx := context.Background()

	var me *engine.MissingRoleError
	if _, err := e.PutRole(ctx, engine.Role{Name: "app", Requires: []string{"base"}}); !errors.As(err, &me) || me.Role != "base" {
		t.Fatalf("PutRole with a missing requirement = %v", err)
	}
	base, err := e.PutRole(ctx, engine.Role{Name: "base", Files: []engine.RoleFile{{Path: "/etc/motd", Content: "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRole(ctx, engine.Role{Name: "app", Requires: []string{base.Ref}}); err != nil {
		t.Fatal(err)
	}
	// base requiring app closes a cycle: refused, by CheckRole too.
	var ce *engine.CycleError
	cyclic := engine.Role{Name: "base", Requires: []string{"app"}}
	if err := e.CheckRole(ctx, cyclic); !errors.As(err, &ce) {
		t.Fatalf("CheckRole = %v, want a cycle", err)
	}
	if _, err := e.PutRole(ctx, cyclic); !errors.As(err, &ce) || !strings.Contains(err.Error(), "base -> app -> base") && !strings.Contains(err.Error(), "app -> base -> app") {
		t.Fatalf("PutRole = %v, want the cycle named", err)
	}
	if got, err := e.Role(ctx, "base"); err != nil || got.Ref != base.Ref {
		t.Fatalf("the refused change must not be stored: %+v %v", got, err)
	}
	if err := e.DeleteRole(ctx, "base"); !errors.Is(err, engine.ErrRoleInUse) || !strings.Contains(err.Error(), "app") {
		t.Fatalf("DeleteRole(base) = %v, want in use by app", err)
	}
	if err := e.DeleteRole(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Role(ctx, "app"); !errors.Is(err, engine.ErrRoleNotFound) {
		t.Fatalf("Role(app) after delete = %v", err)
	}
	if err := e.DeleteRole(ctx, "app"); err != nil {
		t.Fatalf("deleting a gone role: %v", err)
	}

	// Plan-time checks of a machine's roles.
	if _, err := e.PutRole(ctx, engine.Role{Name: "web", Parameters: map[string]engine.RoleParameter{"port": {Type: "number"}},
		Files: []engine.RoleFile{{Path: "/etc/web", Content: "{{ .params.port }} {{ .machine.hostname }}"}}}); err != nil {
		t.Fatal(err)
	}
	var pe *engine.ParameterError
	if err := e.CheckRoles(ctx, engine.RoleSelection{Roles: []string{"web"}}, engine.RoleFacts{}); !errors.As(err, &pe) || pe.Parameter != "port" {
		t.Fatalf("CheckRoles without port = %v", err)
	}
	if err := e.CheckRoles(ctx, engine.RoleSelection{Roles: []string{"web"}, Parameters: map[string]map[string]string{"web": {"port": "80"}}}, engine.RoleFacts{}); err != nil {
		t.Fatalf("CheckRoles = %v", err)
	}
	// A ref to a definition the catalog does not hold yet cannot be checked.
	if err := e.CheckRoles(ctx, engine.RoleSelection{Roles: []string{"web@000000000000"}}, engine.RoleFacts{}); err != nil {
		t.Fatalf("CheckRoles of a pending ref = %v, want nil", err)
	}
}

func TestRolesAtInstallAndInPlace(t *testing.T) {
	t.Parallel()
	lab := newBootLab(t, t.TempDir())
	e := engine.NewEmbedded(lab.cfg)
	defer e.Close()
	lab.image(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	base, err := e.PutRole(ctx, engine.Role{Name: "base", Files: []engine.RoleFile{{Path: "/etc/motd", Content: "welcome to {{ .machine.hostname }}\n"}}})
	if err != nil {
		t.Fatal(err)
	}
	worker, err := e.PutRole(ctx, engine.Role{Name: "worker", Requires: []string{base.Ref},
		Parameters: map[string]engine.RoleParameter{"endpoint": {Type: "string"}, "port": {Type: "number", Default: strp("6443")}},
		Files:      []engine.RoleFile{{Path: "/etc/worker.env", Content: "JOIN={{ .params.endpoint }}:{{ .params.port }}\n", Mode: "0600"}},
		Scripts:    []string{"systemctl restart worker"}, OnRemove: "systemctl stop worker"})
	if err != nil {
		t.Fatal(err)
	}
	sel := engine.RoleSelection{Roles: []string{worker.Ref}, Parameters: map[string]map[string]string{"worker": {"endpoint": "cp.example"}}}
	if _, err := e.Provision(ctx, lab.bmc, engine.ProvisionSpec{Image: "debian", Hostname: "node1", Agent: true, Roles: sel}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	inst, ok := lab.fleet.Machine("node-1").Disk.Installed()
	if !ok {
		t.Fatal("nothing installed")
	}
	if inst.Files["/etc/motd"] != "welcome to node1\n" || inst.Files["/etc/worker.env"] != "JOIN=cp.example:6443\n" {
		t.Fatalf("role files at install = %q, %q", inst.Files["/etc/motd"], inst.Files["/etc/worker.env"])
	}
	var conf roles.AgentConfig
	if err := json.Unmarshal([]byte(inst.Files[roles.DefaultConfigPath]), &conf); err != nil || conf.Credential == "" {
		t.Fatalf("agent config %q: %v", inst.Files[roles.DefaultConfigPath], err)
	}
	var seeded roles.State
	if err := json.Unmarshal([]byte(inst.Files[roles.DefaultStatePath]), &seeded); err != nil || strings.Join(seeded.Order, ",") != "base,worker" {
		t.Fatalf("seeded agent state %q: %v", inst.Files[roles.DefaultStatePath], err)
	}
	a := &testAgent{t: t, conf: conf}

	// The credential authenticates; a forged one does not.
	if _, code := a.desired(ctx, conf.MachineID+".forged", roles.Desired{}, 0); code != http.StatusUnauthorized {
		t.Fatalf("forged credential: %d", code)
	}
	d, code := a.desired(ctx, conf.Credential, roles.Desired{}, 0)
	if code != http.StatusOK || d.Revision != seeded.Revision || d.Generation != seeded.Generation || len(d.Roles) != 2 {
		t.Fatalf("desired = %d %+v, want the seeded revision %s", code, d, seeded.Revision)
	}
	// Nothing new: the long poll ends empty.
	if _, code := a.desired(ctx, conf.Credential, *d, 0); code != http.StatusNoContent {
		t.Fatalf("unchanged desired: %d, want 204", code)
	}

	// In place: a parameter change; the agent long-polls, gets it, reports ok.
	apply := func(sel engine.RoleSelection, result func(roles.Desired) roles.Report) (*engine.RoleStatus, error) {
		type out struct {
			st  *engine.RoleStatus
			err error
		}
		done := make(chan out, 1)
		go func() {
			st, err := e.ApplyRoles(ctx, lab.bmc, sel)
			done <- out{st, err}
		}()
		next, code := a.desired(ctx, conf.Credential, *d, roles.MaxWait)
		if code != http.StatusOK {
			t.Fatalf("long poll: %d", code)
		}
		a.report(ctx, result(*next))
		d = next
		o := <-done
		return o.st, o.err
	}
	sel.Parameters["worker"]["endpoint"] = "cp2.example"
	st, err := apply(sel, func(n roles.Desired) roles.Report {
		if n.Generation != seeded.Generation+1 || n.Roles[1].Files[0].Content != "JOIN=cp2.example:6443\n" || n.Roles[0].Digest != d.Roles[0].Digest {
			t.Errorf("new desired = %+v", n)
		}
		rep := roles.Report{Revision: n.Revision, Generation: n.Generation}
		for _, r := range n.Roles {
			rep.Results = append(rep.Results, roles.Result{Role: r.Name, Digest: r.Digest, Action: roles.ActionApplied, Status: roles.StatusOK})
		}
		return rep
	})
	if err != nil || !st.Converged() {
		t.Fatalf("ApplyRoles = %+v, %v", st, err)
	}

	// A failing role fails ApplyRoles with its name and output.
	sel.Parameters["worker"]["endpoint"] = "cp3.example"
	_, err = apply(sel, func(n roles.Desired) roles.Report {
		return roles.Report{Revision: n.Revision, Generation: n.Generation, Results: []roles.Result{
			{Role: "base", Action: roles.ActionUnchanged, Status: roles.StatusOK},
			{Role: "worker", Action: roles.ActionApplied, Status: roles.StatusFailed, Output: "worker.service: exit 3"},
		}}
	})
	var rf *engine.RoleFailedError
	if !errors.As(err, &rf) || len(rf.Failed) != 1 || rf.Failed[0].Role != "worker" || !strings.Contains(err.Error(), "exit 3") {
		t.Fatalf("ApplyRoles with a failing role = %v", err)
	}
	st, err = e.RoleStatus(ctx, lab.bmc)
	if err != nil || st.Converged() || st.Report == nil || st.Report.Generation != d.Generation {
		t.Fatalf("RoleStatus after a failure = %+v, %v", st, err)
	}

	// No agent report in time.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if _, err := e.ApplyRoles(short, lab.bmc, engine.RoleSelection{Roles: []string{"base"}}); !errors.Is(err, engine.ErrAgentTimeout) || !strings.Contains(err.Error(), "last asked") {
		t.Fatalf("ApplyRoles without an agent = %v", err)
	}
	// A bad parameter is refused before anything is stored.
	var pe *engine.ParameterError
	if _, err := e.ApplyRoles(ctx, lab.bmc, engine.RoleSelection{Roles: []string{"worker"}}); !errors.As(err, &pe) {
		t.Fatalf("ApplyRoles without endpoint = %v", err)
	}
}

func TestApplyRolesNeedsAnAgent(t *testing.T) {
	t.Parallel()
	lab := newBootLab(t, t.TempDir())
	e := engine.NewEmbedded(lab.cfg)
	defer e.Close()
	lab.image(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.Provision(ctx, lab.bmc, engine.ProvisionSpec{Image: "debian"}); err != nil {
		t.Fatal(err)
	}
	if inst, _ := lab.fleet.Machine("node-1").Disk.Installed(); inst.Files[roles.DefaultConfigPath] != "" {
		t.Fatal("an install without roles got the agent")
	}
	if _, err := e.ApplyRoles(ctx, lab.bmc, engine.RoleSelection{}); !errors.Is(err, engine.ErrNoAgent) {
		t.Fatalf("ApplyRoles = %v, want ErrNoAgent", err)
	}
}
