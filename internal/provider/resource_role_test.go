package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/composable-metal/terraform-provider-metal/internal/daemon/daemontest"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
	"github.com/composable-metal/terraform-provider-metal/internal/machinesim"
	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// agentProcessEnv makes the test binary run as the role agent (TestMain).
const agentProcessEnv = "METAL_TEST_AGENT_PROCESS"

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// agentProcess is a real agent process (this test binary re-executed) on
// the "machine": its files go under root.
type agentProcess struct {
	root string
	mu   sync.Mutex
	log  strings.Builder
}

// startAgent starts the agent with the config and seeded state the
// simulated machine's install wrote, as the installed system would.
func startAgent(t *testing.T, inst machinesim.Installation) (*agentProcess, error) {
	return startAgentIn(t, t.TempDir(), inst)
}

// startAgentIn is startAgent with the agent's state (and its install
// directory) in dir.
func startAgentIn(t *testing.T, dir string, inst machinesim.Installation) (*agentProcess, error) {
	a := &agentProcess{root: filepath.Join(dir, "root")}
	conf, state := filepath.Join(dir, "agent.json"), filepath.Join(dir, "state.json")
	if inst.Files[roles.DefaultConfigPath] == "" || inst.Files[roles.DefaultStatePath] == "" {
		return nil, fmt.Errorf("the install wrote no agent config or state: files %v", keysOf(inst.Files))
	}
	for p, content := range map[string]string{conf: inst.Files[roles.DefaultConfigPath], state: inst.Files[roles.DefaultStatePath]} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(a.root, 0o755); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, os.Args[0], "-config", conf, "-root", a.root, "-state", state, "-v")
	cmd.Env = append(os.Environ(), agentProcessEnv+"=1")
	cmd.Stdout, cmd.Stderr = a, a
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent output:\n%s", a.output())
		}
	})
	return a, nil
}

func (a *agentProcess) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.Write(p)
}

func (a *agentProcess) output() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.String()
}

// agentRef is the agent a later step starts.
type agentRef struct{ a *agentProcess }

// file asserts a file the agent wrote on the machine ("" = absent).
func (r *agentRef) file(path, want string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		if r.a == nil {
			return fmt.Errorf("no agent is running")
		}
		b, err := os.ReadFile(filepath.Join(r.a.root, path))
		if want == "" {
			if !os.IsNotExist(err) {
				return fmt.Errorf("%s should not exist (read: %q, %w)", path, b, err)
			}
			return nil
		}
		if err != nil || string(b) != want {
			return fmt.Errorf("%s = %q (%w), want %q", path, b, err, want)
		}
		return nil
	}
}

func keysOf[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// rolesConfig is the three-role stack base -> runtime -> worker.
func rolesConfig(runtimeVersion, workerScript string) string {
	return fmt.Sprintf(`
resource "metal_role" "base" {
  name  = "base"
  files = [{ path = "/etc/metal-test/motd", content = "host {{ .machine.hostname }}\n" }]
}

resource "metal_role" "runtime" {
  name      = "runtime"
  requires  = [metal_role.base.ref]
  files     = [{ path = "/etc/metal-test/runtime.conf", content = "runtime=%s\n", mode = "0640" }]
  scripts   = ["echo applied-%s >> \"$METAL_ROOT/runtime.log\""]
  on_remove = "echo removed > \"$METAL_ROOT/runtime-removed\""
}

resource "metal_role" "worker" {
  name     = "worker"
  requires = [metal_role.runtime.ref]
  parameters = {
    endpoint = { type = "string" }
    port     = { type = "number", default = "6443" }
  }
  files   = [{ path = "/etc/metal-test/worker.env", content = "JOIN={{ .params.endpoint }}:{{ .params.port }}\n" }]
  scripts = [%q]
}
`, runtimeVersion, runtimeVersion, workerScript)
}

// TestAccMachineRoles: roles at install, then in place through a real
// agent process: a content change converges, a failing role fails the
// apply with its output and stays pending, removing roles runs on_remove.
func TestAccMachineRoles(t *testing.T) {
	forEachProvisionMode(t, func(t *testing.T, m *engineMode, rig provisionRig) {
		httpListen := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
		config := func(runtimeVersion, workerScript, machineRoles string) string {
			c := rig.configFor(m, fmt.Sprintf(`
  hostname        = "node1"
  roles           = [%s]
  role_parameters = { worker = { endpoint = "cp.example" } }
`, machineRoles))
			// A fixed HTTP port: the agent keeps its server URL across runs.
			c = strings.Replace(c, `http_listen = "127.0.0.1:0"`, fmt.Sprintf("http_listen = %q", httpListen), 1)
			return c + rolesConfig(runtimeVersion, workerScript)
		}
		a := &agentRef{}
		resource.Test(t, resource.TestCase{
			IsUnitTest:               true,
			ProtoV6ProviderFactories: protoV6ProviderFactories(),
			Steps: []resource.TestStep{
				{
					Config: config("v1", "echo worker-ok", "metal_role.worker.ref"),
					Check: resource.ComposeTestCheckFunc(
						resource.TestMatchResourceAttr("metal_machine.test", "rendered_user_data",
							regexp.MustCompile(`(?s)/etc/metal-test/motd.*/etc/metal-test/runtime.conf.*JOIN=cp.example:6443`)),
						resource.TestMatchResourceAttr("metal_role.worker", "ref", regexp.MustCompile(`^worker@[0-9a-f]{12}$`)),
						resource.TestCheckResourceAttr("metal_machine.test", "roles_failed.#", "0"),
						rig.installed(func(inst machinesim.Installation) error {
							if inst.Files["/etc/metal-test/motd"] != "host node1\n" || inst.Files["/etc/metal-test/worker.env"] != "JOIN=cp.example:6443\n" {
								return fmt.Errorf("role files at install: %q", inst.Files)
							}
							var err error
							a.a, err = startAgent(t, inst)
							return err
						}),
					),
				},
				{
					// A change two roles down reaches the machine in place.
					Config: config("v2", "echo worker-ok", "metal_role.worker.ref"),
					ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("metal_machine.test", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("metal_role.runtime", plancheck.ResourceActionUpdate),
					}},
					Check: resource.ComposeTestCheckFunc(
						a.file("etc/metal-test/runtime.conf", "runtime=v2\n"),
						a.file("runtime.log", "applied-v2\n"),
						// Unchanged roles are not redone.
						a.file("etc/metal-test/motd", ""),
					),
				},
				{
					Config:      config("v2", "echo boom-output >&2; exit 3", "metal_role.worker.ref"),
					ExpectError: regexp.MustCompile(`(?s)Role Failed On Machine.*role "worker" failed.*boom-output`),
				},
				{
					// The failed change is still pending.
					Config:             config("v2", "echo boom-output >&2; exit 3", "metal_role.worker.ref"),
					PlanOnly:           true,
					ExpectNonEmptyPlan: true,
				},
				{
					// Fixed; and then the machine drops worker and runtime.
					Config: config("v2", "echo worker-ok", "metal_role.worker.ref"),
					Check: resource.ComposeTestCheckFunc(
						a.file("etc/metal-test/worker.env", "JOIN=cp.example:6443\n"),
						resource.TestCheckResourceAttr("metal_machine.test", "roles_failed.#", "0"),
					),
				},
				{
					Config: strings.Replace(config("v2", "echo worker-ok", "metal_role.base.ref"),
						`role_parameters = { worker = { endpoint = "cp.example" } }`, "", 1),
					Check: resource.ComposeTestCheckFunc(
						a.file("runtime-removed", "removed\n"),
						a.file("etc/metal-test/runtime.conf", ""),
						a.file("etc/metal-test/worker.env", ""),
					),
				},
			},
		})
	})
}

// TestAccMachineRolesPlanErrors: role mistakes are caught while planning,
// each naming what is wrong.
func TestAccMachineRolesPlanErrors(t *testing.T) {
	rig := startProvisionRig(t, nil)
	base := rig.config(`
  roles = [metal_role.a.ref]
`)
	roleA := func(body string) string {
		return fmt.Sprintf(`
resource "metal_role" "a" {
  name = "a"
%s
}
`, body)
	}
	resource.Test(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{
				Config:      base + roleA(`  requires = ["nope"]`),
				ExpectError: regexp.MustCompile(`(?s)Role Not Found.*"a" requires role "nope", which does not exist`),
			},
			{
				Config:      base + roleA(`  files = [{ path = "etc/x", content = "" }]`),
				ExpectError: regexp.MustCompile(`(?s)files\[0\].path.*not an absolute path`),
			},
			{
				Config:      base + roleA(`  scripts = ["echo {{ .params.missing"]`),
				ExpectError: regexp.MustCompile(`(?s)Invalid Role.*scripts\[0\]`),
			},
			{
				Config:      base + roleA(`  parameters = { port = { type = "list" } }`),
				ExpectError: regexp.MustCompile(`(?s)parameters.*value must be one of:.*"string".*"number".*"bool"`),
			},
		},
	})
}

// TestAccMachineRolesMachineErrors: errors that need the machine's view
// (missing keys, parameters, conflicts) at plan time, once roles exist.
func TestAccMachineRolesMachineErrors(t *testing.T) {
	rig := startProvisionRig(t, nil)
	roles := `
resource "metal_role" "a" {
  name  = "a"
  files = [{ path = "/etc/shared", content = "{{ .machine.hostname }}" }]
}
resource "metal_role" "b" {
  name       = "b"
  parameters = { port = { type = "number" } }
  files      = [{ path = "/etc/b", content = "{{ .params.port }} {{ .machine.rack }}" }]
}
resource "metal_role" "c" {
  name  = "c"
  files = [{ path = "/etc/shared", content = "c" }]
}
`
	resource.Test(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{
				// The roles exist first; the machine is not created yet.
				Config: withoutMachine(rig.config("")) + roles,
			},
			{
				Config:      rig.config(`  roles = [metal_role.a.ref, metal_role.c.ref]`) + roles,
				ExpectError: regexp.MustCompile(`(?s)Roles Write The Same File.*"a" and "c" both write /etc/shared`),
			},
			{
				Config:      rig.config(`  roles = [metal_role.b.ref]`) + roles,
				ExpectError: regexp.MustCompile(`(?s)Invalid Role Parameter.*"b" parameter "port".*must set it`),
			},
			{
				Config: rig.config(`
  roles           = [metal_role.b.ref]
  role_parameters = { b = { port = "eighty" } }
`) + roles,
				ExpectError: regexp.MustCompile(`(?s)"port".*"eighty" is not a\s+number`),
			},
			{
				Config: rig.config(`
  roles           = [metal_role.b.ref]
  role_parameters = { b = { port = "80" } }
`) + roles,
				ExpectError: regexp.MustCompile(`(?s)Role Template Error.*files\[0\].content.*"rack", which is not set`),
			},
		},
	})
}

// withoutMachine is a rig configuration without its metal_machine.
func withoutMachine(config string) string {
	return config[:strings.Index(config, "\nresource \"metal_machine\"")]
}

// A role's JSON definition is what the catalog keeps; Read leaves state
// alone unless the catalog's differs (drift), then shows it.
func TestRoleDefinitionRoundTrip(t *testing.T) {
	m := roleResourceModel{}
	m.fromRole(roles.Role{Name: "x", Files: []roles.File{{Path: "/a", Content: "b", Mode: "0600"}}, Scripts: []string{"true"},
		Parameters: map[string]roles.Parameter{"p": {Type: "bool", Default: ptrTo("true")}}})
	got, known, diags := m.definition(t.Context())
	if diags.HasError() || !known {
		t.Fatalf("definition: %v known=%v", diags, known)
	}
	a, _ := json.Marshal(got)
	want := roles.Role{Name: "x", Files: []roles.File{{Path: "/a", Content: "b", Mode: "0600"}}, Scripts: []string{"true"},
		Parameters: map[string]roles.Parameter{"p": {Type: "bool", Default: ptrTo("true")}}}
	b, _ := json.Marshal(want)
	if string(a) != string(b) {
		t.Errorf("round trip:\n got %s\nwant %s", a, b)
	}
}

func ptrTo(s string) *string { return &s }

// TestAccRoleCycle: a requirement that closes a cycle is a plan-time error
// naming the cycle; a role others require cannot be destroyed first.
func TestAccRoleCycle(t *testing.T) {
	rig := startProvisionRig(t, nil)
	provider := withoutMachine(rig.config(""))
	roles := func(aRequires string) string {
		return provider + fmt.Sprintf(`
resource "metal_role" "a" {
  name     = "a"
  requires = %s
}
resource "metal_role" "b" {
  name     = "b"
  requires = [metal_role.a.ref]
}
`, aRequires)
	}
	resource.Test(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{Config: roles("null")},
			{
				Config:      roles(`["b"]`),
				ExpectError: regexp.MustCompile(`(?s)Role Dependency Cycle.*metal_role.a.*a -> b -> a`),
			},
			{
				Config: roles("null"),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("metal_role.a", "id", "a"),
					resource.TestCheckResourceAttrPair("metal_role.b", "requires.0", "metal_role.a", "ref"),
				),
			},
			{
				ResourceName:            "metal_role.b",
				ImportState:             true,
				ImportStateId:           "b",
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts"},
			},
		},
	})
}

// roles_failed lists failures of the current desired roles only.
func TestFailedRoles(t *testing.T) {
	report := func(gen uint64, rev string, statuses ...string) *engine.RoleReport {
		r := &engine.RoleReport{Revision: rev, Generation: gen}
		for i, s := range statuses {
			r.Results = append(r.Results, engine.RoleResult{Role: fmt.Sprintf("r%d", i), Status: s})
		}
		return r
	}
	for _, tc := range []struct {
		name string
		st   *engine.RoleStatus
		want []string
	}{
		{"no status", nil, nil},
		{"no report yet", &engine.RoleStatus{Revision: "a", Generation: 2}, nil},
		{"older generation", &engine.RoleStatus{Revision: "a", Generation: 2, Report: report(1, "a", "failed")}, nil},
		{"other revision", &engine.RoleStatus{Revision: "b", Generation: 2, Report: report(2, "a", "failed")}, nil},
		{"all ok", &engine.RoleStatus{Revision: "a", Generation: 2, Report: report(2, "a", "ok", "ok")}, nil},
		{"one failed", &engine.RoleStatus{Revision: "a", Generation: 2, Report: report(3, "a", "ok", "failed")}, []string{"r1"}},
	} {
		if got := failedRoles(tc.st); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// installedSystem runs, for real, what the simulated machine's installed
// system would: the role scripts through the install runner, and the agent
// where cloud-init starts it (after the scripts, before phone_home). It
// waits for the agent to deliver an install-failure report, so the apply
// that installs sees it.
type installedSystem struct {
	t       *testing.T
	machine *machinesim.Machine
	// late: the agent is not started by the install but by the test,
	// after the apply that installs.
	late bool
	mu   sync.Mutex
	at   time.Time // the installation the last of dirs belongs to
	dirs []string  // one agent directory per installation, latest last
}

const (
	installDirPath = roles.DefaultInstallDir
	installRunner  = installDirPath + "/" + roles.InstallRunner
)

// dir is the agent directory of the current installation: fresh (its
// install directory written from the installed files) after a reinstall.
func (s *installedSystem) dir() (string, machinesim.Installation, error) {
	inst, ok := s.machine.Disk.Installed()
	if !ok {
		return "", inst, fmt.Errorf("nothing installed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.dirs) > 0 && inst.InstalledAt.Equal(s.at) {
		return s.dirs[len(s.dirs)-1], inst, nil
	}
	dir := s.t.TempDir()
	for p, content := range inst.Files {
		rel, ok := strings.CutPrefix(p, installDirPath+"/")
		if !ok {
			continue
		}
		dst := filepath.Join(dir, roles.InstallDir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", inst, err
		}
		if err := os.WriteFile(dst, []byte(content), 0o700); err != nil {
			return "", inst, err
		}
	}
	s.at, s.dirs = inst.InstalledAt, append(s.dirs, dir)
	return dir, inst, nil
}

func (s *installedSystem) exec(ctx context.Context, argv []string) (int, bool) {
	switch {
	case len(argv) == 6 && argv[0] == "env" && argv[3] == installRunner:
		dir, _, err := s.dir()
		if err != nil {
			s.t.Errorf("install runner: %v", err)
			return 1, true
		}
		script, _ := strings.CutPrefix(argv[5], installDirPath+"/")
		cmd := exec.CommandContext(ctx, filepath.Join(dir, roles.InstallDir, roles.InstallRunner), argv[4],
			filepath.Join(dir, roles.InstallDir, filepath.FromSlash(script)))
		cmd.Env = append(os.Environ(), argv[1], argv[2])
		out, err := cmd.CombinedOutput()
		s.t.Logf("install runner %s: %v\n%s", argv[4:], err, out)
		if cmd.ProcessState == nil {
			return 127, true // did not start
		}
		return cmd.ProcessState.ExitCode(), true
	case len(argv) == 3 && argv[0] == "sh" && strings.Contains(argv[2], "enable --now metal-agent.service"):
		if s.late {
			return 0, true // started by the test later
		}
		if _, err := s.startAgent(ctx); err != nil {
			s.t.Errorf("starting the agent: %v", err)
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func (s *installedSystem) installs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dirs)
}

// startAgent starts the agent of the current installation and, when the
// install recorded a failure, waits until the agent delivered its report.
func (s *installedSystem) startAgent(ctx context.Context) (*agentProcess, error) {
	dir, inst, err := s.dir()
	if err != nil {
		return nil, err
	}
	a, err := startAgentIn(s.t, dir, inst)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, roles.InstallDir, roles.InstallFailed)); err != nil {
		return a, nil // nothing to report
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(a.output(), "report delivered") {
		select {
		case <-tick.C:
		case <-deadline:
			return nil, fmt.Errorf("the agent did not deliver the install report:\n%s", a.output())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return a, nil
}

// installFile reads a file the current installation's install directory holds.
func (s *installedSystem) installFile(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.dirs) == 0 {
		return ""
	}
	b, _ := os.ReadFile(filepath.Join(s.dirs[len(s.dirs)-1], roles.InstallDir, name))
	return string(b)
}

// TestAccMachineRoleFailsAtInstall: a role script that fails during the
// install (run for real by the install runner) fails the apply that
// installs, naming the role with its output; the machine stays in state,
// tainted, and the next apply with the role fixed reinstalls it.
func TestAccMachineRoleFailsAtInstall(t *testing.T) {
	for _, mode := range []string{"embedded", "remote"} {
		t.Run(mode, func(t *testing.T) {
			sys := &installedSystem{t: t, machine: &machinesim.Machine{}}
			sys.machine.Exec = sys.exec
			rig := startProvisionRig(t, sys.machine)
			m := &engineMode{name: mode}
			if mode == "remote" {
				d := daemontest.Start(t, daemontest.Options{DHCPPort: rig.dhcp.Port})
				m = &engineMode{name: mode, daemon: d, token: d.Token("create", "terraform")}
			}
			config := func(workerScript string) string {
				return rig.configFor(m, `
  hostname = "node1"
  roles    = [metal_role.worker.ref]
`) + fmt.Sprintf(`
resource "metal_role" "base" {
  name    = "base"
  scripts = ["echo base-ran > \"$(dirname \"$0\")/../base-ran\""]
}

resource "metal_role" "worker" {
  name     = "worker"
  requires = [metal_role.base.ref]
  scripts  = [%q]
}
`, workerScript)
			}
			resource.Test(t, resource.TestCase{
				IsUnitTest:               true,
				ProtoV6ProviderFactories: protoV6ProviderFactories(),
				Steps: []resource.TestStep{
					{
						Config:      config("echo boom-at-install >&2; exit 3"),
						ExpectError: regexp.MustCompile(`(?s)Role Failed At Install.*role "worker" failed.*boom-at-install.*exited with status 3.*tainted`),
					},
					{
						// Kept in state and tainted: fixing the role reinstalls.
						Config: config("echo worker-ok"),
						ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
							plancheck.ExpectResourceAction("metal_machine.test", plancheck.ResourceActionReplace),
						}},
						Check: resource.ComposeTestCheckFunc(
							resource.TestCheckResourceAttr("metal_machine.test", "roles_failed.#", "0"),
							func(*terraform.State) error {
								if n := sys.installs(); n != 2 {
									return fmt.Errorf("%d installations ran their scripts, want 2", n)
								}
								if got := sys.installFile(roles.InstallFailed); got != "" {
									return fmt.Errorf("the reinstall recorded a failure: %q", got)
								}
								if got := sys.installFile("worker.log"); got != "worker-ok\n" {
									return fmt.Errorf("worker.log = %q", got)
								}
								return nil
							},
						),
					},
				},
			})
			// The first install ran base, then stopped at worker.
			first := filepath.Join(sys.dirs[0], roles.InstallDir)
			if b, err := os.ReadFile(filepath.Join(first, "base-ran")); err != nil || string(b) != "base-ran\n" {
				t.Errorf("base at the first install: %q, %v", b, err)
			}
			if b, _ := os.ReadFile(filepath.Join(first, roles.InstallFailed)); string(b) != "" {
				t.Errorf("the failure was not taken by the agent: %q", b)
			}
		})
	}
}

// TestAccMachineRoleFailsAtInstallReportedLater: when the agent reports the
// install-time failure only after the apply (daemon mode, where the boot
// service outlives it), the next refresh shows it in roles_failed, the plan
// updates the machine, and fixing the role converges it in place, without
// a reinstall.
func TestAccMachineRoleFailsAtInstallReportedLater(t *testing.T) {
	sys := &installedSystem{t: t, machine: &machinesim.Machine{}, late: true}
	sys.machine.Exec = sys.exec
	rig := startProvisionRig(t, sys.machine)
	d := daemontest.Start(t, daemontest.Options{DHCPPort: rig.dhcp.Port})
	m := &engineMode{name: "remote", daemon: d, token: d.Token("create", "terraform")}
	config := func(workerScript string) string {
		return rig.configFor(m, `
  hostname = "node1"
  roles    = [metal_role.worker.ref]
`) + fmt.Sprintf(`
resource "metal_role" "worker" {
  name    = "worker"
  scripts = [%q]
}
`, workerScript)
	}
	agent := &agentRef{}
	resource.Test(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{
				Config: config("echo boom-at-install >&2; exit 3"),
				// The agent reports during the check: the refresh after it
				// finds the failure.
				ExpectNonEmptyPlan: true,
				Check: resource.ComposeTestCheckFunc(
					// Not known yet when the create ended.
					resource.TestCheckResourceAttr("metal_machine.test", "roles_failed.#", "0"),
					func(*terraform.State) error {
						var err error
						agent.a, err = sys.startAgent(context.Background())
						return err
					},
				),
			},
			{
				// The refresh records it; the plan after updates the machine.
				RefreshState:       true,
				ExpectNonEmptyPlan: true,
				Check:              resource.TestCheckResourceAttr("metal_machine.test", "roles_failed.0", "worker"),
			},
			{
				Config: config(`echo fixed > "$METAL_ROOT/worker-fixed"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("metal_machine.test", plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("metal_machine.test", "roles_failed.#", "0"),
					agent.file("worker-fixed", "fixed\n"),
					func(*terraform.State) error {
						if n := sys.installs(); n != 1 {
							return fmt.Errorf("%d installations, want 1: the fix must not reinstall", n)
						}
						return nil
					},
				),
			},
		},
	})
}
