package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// installCloudInit renders the cloud-init install config of a machine with
// roles and does what cloud-init would with its write_files and the role
// scripts in runcmd, for real, under root. It returns the desired roles.
func installCloudInit(t *testing.T, root string, rs []roles.Role) roles.Desired {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	v := render.MachineVars{
		MachineID: "m1", Hostname: "m1.example.com", MACs: []string{"52:54:00:00:00:01"}, BootMAC: "52:54:00:00:00:01",
		BaseURL: "http://192.0.2.1:8080/", Token: "tok_" + strings.Repeat("A", 42), Kind: render.KindCloudInit,
		Image: render.Image{KernelSHA256: strings.Repeat("1", 64), InitrdSHA256: strings.Repeat("2", 64)},
		Roles: rs, Agent: &render.Agent{Credential: testCredential, Generation: 3},
	}
	doc, err := render.Config(v, "user-data")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		WriteFiles []struct {
			Path, Content, Permissions string
		} `yaml:"write_files"`
		Runcmd []any `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal(doc, &cfg); err != nil {
		t.Fatalf("user-data: %v\n%s", err, doc)
	}
	under := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	for _, f := range cfg.WriteFiles {
		if f.Path == roles.DefaultConfigPath {
			continue
		}
		must(t, os.MkdirAll(filepath.Dir(under(f.Path)), 0o755))
		must(t, os.WriteFile(under(f.Path), []byte(f.Content), 0o700))
	}
	// The role scripts are the runcmd entries that go through the runner
	// (the last one fetches and starts the agent).
	runner := roles.DefaultInstallDir + "/" + roles.InstallRunner
	for _, c := range cfg.Runcmd {
		argv, ok := c.([]any)
		if !ok || len(argv) < 6 || argv[3] != runner {
			continue
		}
		cmd := exec.Command(under(runner), argv[4].(string), under(argv[5].(string)))
		cmd.Env = append(os.Environ(), argv[1].(string), argv[2].(string))
		out, err := cmd.CombinedOutput()
		t.Logf("runcmd %v: %v\n%s", argv[4:], err, out)
	}
	d, err := v.DesiredRoles()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestInstallFailureReported(t *testing.T) {
	root := t.TempDir()
	d := installCloudInit(t, root, []roles.Role{
		{Name: "base", Scripts: []string{`echo base-ran > "$(dirname "$0")/../base-ran"`}},
		{Name: "runtime", Requires: []string{"base"}, Scripts: []string{"echo pulling images", "echo 'registry unreachable' >&2; exit 3"}},
		{Name: "worker", Requires: []string{"runtime"}, Scripts: []string{`echo worker-ran > "$(dirname "$0")/../worker-ran"`}},
	})
	install := filepath.Join(root, filepath.FromSlash(roles.DefaultInstallDir))
	if _, err := os.Stat(filepath.Join(install, "base-ran")); err != nil {
		t.Fatalf("base's script did not run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(install, "worker-ran")); err == nil {
		t.Fatal("worker's script ran after runtime failed")
	}

	fs, srv := newFakeServer(t, d)
	f, logs := remoteFixture(t, srv)
	f.cfg.StatePath = filepath.Join(root, "var/lib/metal-agent/state.json")
	f.cfg.MachineID = "m1"
	rep, err := Once(context.Background(), f.cfg)
	if err != nil || rep != nil {
		t.Fatalf("Once = %+v, %v; want nothing new to apply after delivering the install report", rep, err)
	}
	if len(fs.reports) != 1 {
		t.Fatalf("reports = %+v, want the install report", fs.reports)
	}
	got := fs.reports[0]
	if got.Revision != d.Revision || got.Generation != 3 || len(got.Results) != 3 {
		t.Fatalf("report %+v, want revision %s generation 3 and three results", got, d.Revision)
	}
	want := []struct{ role, status, output string }{
		{"base", roles.StatusOK, ""},
		{"runtime", roles.StatusFailed, "pulling images\nregistry unreachable\nat install: a script of role \"runtime\" exited with status 3"},
		{"worker", roles.StatusFailed, `not applied at install: role "runtime", which comes before it, failed`},
	}
	for i, w := range want {
		r := got.Results[i]
		if r.Role != w.role || r.Status != w.status || r.Output != w.output {
			t.Errorf("result %d = %+v, want %+v", i, r, w)
		}
	}
	if !strings.Contains(logs.String(), "a role failed at install") {
		t.Errorf("no warning logged:\n%s", logs)
	}
	st, err := LoadState(f.cfg.StatePath)
	must(t, err)
	if st.Roles["base"].Status != roles.StatusOK || st.Roles["runtime"].Status != roles.StatusFailed || st.Roles["worker"].Status != roles.StatusFailed {
		t.Fatalf("state %+v: want runtime and worker recorded as failed", st.Roles)
	}

	// Reported once.
	if _, err := Once(context.Background(), f.cfg); err != nil || len(fs.reports) != 1 {
		t.Fatalf("second Once: %v, %d reports", err, len(fs.reports))
	}

	// The next generation retries the failed roles (and only them) in place.
	d.Generation++
	d.Roles[1].Scripts = []string{"echo fixed"}
	fs.mu.Lock()
	fs.desired = d
	fs.mu.Unlock()
	rep, err = Once(context.Background(), f.cfg)
	if err != nil || rep == nil {
		t.Fatalf("Once after the fix = %+v, %v", rep, err)
	}
	for i, action := range []string{roles.ActionUnchanged, roles.ActionApplied, roles.ActionApplied} {
		if r := rep.Results[i]; r.Action != action || r.Status != roles.StatusOK {
			t.Errorf("after the fix, result %d = %+v, want %s ok", i, r, action)
		}
	}
}

func TestInstallSuccessSendsNothing(t *testing.T) {
	root := t.TempDir()
	d := installCloudInit(t, root, []roles.Role{{Name: "base", Scripts: []string{"echo ok"}}})
	fs, srv := newFakeServer(t, d)
	f, _ := remoteFixture(t, srv)
	f.cfg.StatePath = filepath.Join(root, "var/lib/metal-agent/state.json")
	must(t, SaveState(f.cfg.StatePath, roles.SeedState(d)))
	if rep, err := Once(context.Background(), f.cfg); err != nil || rep != nil || len(fs.reports) != 0 {
		t.Fatalf("Once = %+v, %v, reports %+v: the seeded state is right, nothing to do", rep, err, fs.reports)
	}
}

func TestReadInstallFailure(t *testing.T) {
	for _, tc := range []struct {
		name, content, err string
	}{
		{"no status", "base\n", "exit status"},
		{"not a number", "base\nboom\n", "exit status"},
		{"traversal", "../../etc/passwd\n1\n", "not a role name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			must(t, os.WriteFile(filepath.Join(dir, roles.InstallFailed), []byte(tc.content), 0o600))
			if _, err := readInstallFailure(dir); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

// A failure of a role the seeded state does not list is still reported,
// and the recorded roles stay as they were.
func TestInstallReportUnknownRole(t *testing.T) {
	st := roles.State{Revision: "r", Generation: 2, Roles: map[string]roles.AppliedRole{"base": {Digest: "d1", Status: roles.StatusOK}}, Order: []string{"base"}}
	rep, next := installReport(st, installFailure{role: "ghost", status: 1, output: "no such thing\n"})
	if len(rep.Results) != 2 || rep.Results[0].Status != roles.StatusOK ||
		rep.Results[1].Role != "ghost" || rep.Results[1].Status != roles.StatusFailed ||
		rep.Results[1].Output != "no such thing\nat install: a script of role \"ghost\" exited with status 1" {
		t.Fatalf("report %+v", rep)
	}
	if next.Roles["base"].Status != roles.StatusOK || len(next.Roles) != 1 || rep.Revision != "r" || rep.Generation != 2 {
		t.Fatalf("state %+v, report %+v", next, rep)
	}
}
