package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// mkRole renders a role with a digest of its content.
func mkRole(name string, files []roles.File, scripts ...string) roles.Rendered {
	r := roles.Rendered{Name: name, Files: files, Scripts: scripts}
	return withDigest(r)
}

func withDigest(r roles.Rendered) roles.Rendered {
	r.Digest = ""
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	r.Digest = hex.EncodeToString(sum[:])
	return r
}

func withOnRemove(r roles.Rendered, script string) roles.Rendered {
	r.OnRemove = script
	return withDigest(r)
}

func withPackages(r roles.Rendered, pkgs ...string) roles.Rendered {
	r.Packages = pkgs
	return withDigest(r)
}

func file(path, content string) roles.File { return roles.File{Path: path, Content: content} }

// logScript appends a line to $METAL_ROOT/log.
func logScript(line string) string { return fmt.Sprintf("echo %q >> \"$METAL_ROOT/log\"\n", line) }

type fixture struct {
	root, stateDir string
	cfg            Config
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{root: t.TempDir(), stateDir: t.TempDir()}
	f.cfg = Config{
		Root: f.root, StatePath: filepath.Join(f.stateDir, "state.json"), MachineID: "m1",
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
	return f
}

func (f *fixture) path(p string) string { return filepath.Join(f.root, filepath.FromSlash(p)) }

func (f *fixture) read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(f.path(p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (f *fixture) write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(f.path(p)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.path(p), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) exists(p string) bool {
	_, err := os.Lstat(f.path(p))
	return err == nil
}

func (f *fixture) log(t *testing.T) string {
	t.Helper()
	if !f.exists("/log") {
		return ""
	}
	return f.read(t, "/log")
}

// summary is "role action status" per result.
func summary(rep roles.Report) []string {
	var s []string
	for _, r := range rep.Results {
		s = append(s, r.Role+" "+r.Action+" "+r.Status)
	}
	return s
}

func result(t *testing.T, rep roles.Report, role string) roles.Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.Role == role {
			return r
		}
	}
	t.Fatalf("no result for role %q in %v", role, summary(rep))
	return roles.Result{}
}

func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

// fakeCommand writes an executable shell script named name into dir.
func fakeCommand(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

type step struct {
	roles []roles.Rendered
	setup func(t *testing.T, f *fixture)
	want  []string
	check func(t *testing.T, f *fixture, rep roles.Report, st roles.State)
}

func TestApply(t *testing.T) {
	base := mkRole("base", []roles.File{{Path: "/etc/base.conf", Content: "base\n", Mode: "0600"}}, logScript("base"))
	web := mkRole("web", []roles.File{file("/srv/www/index.html", "hello\n")},
		logScript("web 1")+"echo printed by web",
		logScript("web 2")+`pwd > "$METAL_ROOT/pwd"; echo "$METAL_ROLE $METAL_MACHINE_ID" > "$METAL_ROOT/env"`)

	a := mkRole("a", []roles.File{file("/etc/a.conf", "a\n")}, logScript("a"))
	bBoom := mkRole("b", []roles.File{file("/etc/b.conf", "b\n")}, "echo boom; echo to-stderr >&2; exit 3")
	c := mkRole("c", []roles.File{file("/etc/c.conf", "c\n")}, logScript("c"))
	bReady := mkRole("b", nil, `[ -f "$METAL_ROOT/ready" ] || { echo not ready; exit 1; }`+"\n"+logScript("b"))
	touchReady := func(t *testing.T, f *fixture) { f.write(t, "/ready", "") }

	removable := func(name string) roles.Rendered {
		return withOnRemove(mkRole(name, []roles.File{file("/etc/"+name+".conf", name)}), logScript("remove "+name))
	}

	big := mkRole("big", nil, `i=0; while [ $i -lt 3000 ]; do echo "line $i 0123456789abcdef"; i=$((i+1)); done; echo end-marker`)

	tests := []struct {
		name  string
		cfg   func(t *testing.T, c *Config)
		seed  *roles.State
		steps []step
	}{
		{
			name: "fresh apply writes files and runs scripts in order",
			steps: []step{{
				roles: []roles.Rendered{base, web},
				want:  []string{"base applied ok", "web applied ok"},
				check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
					if got := f.read(t, "/etc/base.conf"); got != "base\n" {
						t.Errorf("base.conf = %q", got)
					}
					if got := f.read(t, "/srv/www/index.html"); got != "hello\n" {
						t.Errorf("index.html = %q", got)
					}
					for p, want := range map[string]os.FileMode{"/etc/base.conf": 0o600, "/srv/www/index.html": 0o644, "/srv/www": 0o755 | os.ModeDir} {
						if fi, err := os.Stat(f.path(p)); err != nil || fi.Mode() != want {
							t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
						}
					}
					if got := f.log(t); got != "base\nweb 1\nweb 2\n" {
						t.Errorf("scripts ran as %q", got)
					}
					if got := strings.TrimSpace(f.read(t, "/pwd")); got != f.root {
						t.Errorf("working directory %q, want %q", got, f.root)
					}
					if got := f.read(t, "/env"); got != "web m1\n" {
						t.Errorf("script environment %q", got)
					}
					wantContains(t, "web output", result(t, rep, "web").Output, "printed by web")
					if !slices.Equal(st.Order, []string{"base", "web"}) {
						t.Errorf("order %v", st.Order)
					}
					if got := st.Roles["web"]; got.Digest != web.Digest || got.Status != roles.StatusOK || !slices.Equal(got.Files, []string{"/srv/www/index.html"}) {
						t.Errorf("web recorded as %+v", got)
					}
					if st.Revision != "rev" || st.Generation != 1 {
						t.Errorf("state revision %q generation %d", st.Revision, st.Generation)
					}
					// No temporary files are left next to the written ones.
					if ents, _ := os.ReadDir(f.path("/etc")); len(ents) != 1 {
						t.Errorf("/etc holds %v", ents)
					}
				},
			}},
		},
		{
			name: "unchanged roles are skipped on a new generation",
			steps: []step{
				{roles: []roles.Rendered{base, web}, want: []string{"base applied ok", "web applied ok"}},
				{
					roles: []roles.Rendered{base, web},
					want:  []string{"base unchanged ok", "web unchanged ok"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						if got := f.log(t); got != "base\nweb 1\nweb 2\n" {
							t.Errorf("scripts ran again: %q", got)
						}
					},
				},
			},
		},
		{
			name: "a digest change rewrites files and deletes the ones dropped",
			steps: []step{
				{roles: []roles.Rendered{mkRole("a", []roles.File{file("/etc/a.conf", "v1"), file("/etc/a.old", "old")}, logScript("a v1"))},
					want: []string{"a applied ok"}},
				{
					roles: []roles.Rendered{mkRole("a", []roles.File{file("/etc/a.conf", "v2")}, logScript("a v2"))},
					want:  []string{"a applied ok"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						if got := f.read(t, "/etc/a.conf"); got != "v2" {
							t.Errorf("a.conf = %q", got)
						}
						if f.exists("/etc/a.old") {
							t.Error("/etc/a.old was not deleted")
						}
						if got := f.log(t); got != "a v1\na v2\n" {
							t.Errorf("scripts ran as %q", got)
						}
						if got := st.Roles["a"].Files; !slices.Equal(got, []string{"/etc/a.conf"}) {
							t.Errorf("files recorded %v", got)
						}
					},
				},
			},
		},
		{
			name: "a failed script stops the roles after it",
			steps: []step{{
				roles: []roles.Rendered{a, bBoom, c},
				want:  []string{"a applied ok", "b applied failed", "c applied failed"},
				check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
					wantContains(t, "b output", result(t, rep, "b").Output, "boom", "to-stderr", "script 1 of 1 failed: exit status 3")
					wantContains(t, "c output", result(t, rep, "c").Output, `not applied: role "b"`)
					if f.exists("/etc/c.conf") {
						t.Error("role c was applied after b failed")
					}
					if got := st.Roles["b"]; got.Status != roles.StatusFailed || got.Digest != bBoom.Digest || !slices.Equal(got.Files, []string{"/etc/b.conf"}) {
						t.Errorf("b recorded as %+v", got)
					}
					if _, ok := st.Roles["c"]; ok {
						t.Error("c recorded although not applied")
					}
					if !slices.Equal(st.Order, []string{"a", "b"}) {
						t.Errorf("order %v", st.Order)
					}
				},
			}},
		},
		{
			name: "a failed role is retried on a new generation with the same digest",
			steps: []step{
				{roles: []roles.Rendered{a, bReady, c}, want: []string{"a applied ok", "b applied failed", "c applied failed"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						wantContains(t, "b output", result(t, rep, "b").Output, "not ready")
					}},
				{
					setup: touchReady,
					roles: []roles.Rendered{a, bReady, c},
					want:  []string{"a unchanged ok", "b applied ok", "c applied ok"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						if got := f.log(t); got != "a\nb\nc\n" {
							t.Errorf("scripts ran as %q", got)
						}
						if !slices.Equal(st.Order, []string{"a", "b", "c"}) {
							t.Errorf("order %v", st.Order)
						}
					},
				},
			},
		},
		{
			name: "removed roles run on_remove in reverse order and lose their files",
			steps: []step{
				{roles: []roles.Rendered{removable("r1"), removable("r2"), removable("r3")},
					want: []string{"r1 applied ok", "r2 applied ok", "r3 applied ok"}},
				{
					roles: []roles.Rendered{removable("r1"), a},
					want:  []string{"r3 removed ok", "r2 removed ok", "r1 unchanged ok", "a applied ok"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						if got := f.log(t); got != "remove r3\nremove r2\na\n" {
							t.Errorf("scripts ran as %q", got)
						}
						if f.exists("/etc/r2.conf") || f.exists("/etc/r3.conf") {
							t.Error("files of removed roles remain")
						}
						if !f.exists("/etc/r1.conf") {
							t.Error("file of a kept role deleted")
						}
						if !slices.Equal(st.Order, []string{"r1", "a"}) || len(st.Roles) != 2 {
							t.Errorf("state %+v", st)
						}
					},
				},
			},
		},
		{
			name: "a seeded state is not re-applied and shared files survive a removal",
			seed: &roles.State{
				Revision: "seeded",
				Roles: map[string]roles.AppliedRole{
					"a":   {Digest: a.Digest, Status: roles.StatusOK, Files: []string{"/etc/a.conf"}},
					"old": {Digest: "0ld", Status: roles.StatusOK, Files: []string{"/etc/a.conf", "/etc/old.conf"}, OnRemove: logScript("remove old")},
				},
				Order: []string{"a", "old"},
			},
			steps: []step{{
				setup: func(t *testing.T, f *fixture) {
					f.write(t, "/etc/a.conf", "a\n")
					f.write(t, "/etc/old.conf", "old\n")
				},
				roles: []roles.Rendered{a},
				want:  []string{"old removed ok", "a unchanged ok"},
				check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
					if got := f.log(t); got != "remove old\n" {
						t.Errorf("scripts ran as %q", got)
					}
					if !f.exists("/etc/a.conf") {
						t.Error("/etc/a.conf, which role a writes, was deleted")
					}
					if f.exists("/etc/old.conf") {
						t.Error("/etc/old.conf remains")
					}
				},
			}},
		},
		{
			name: "a failed on_remove keeps the role and its files until a retry succeeds",
			steps: []step{
				{roles: []roles.Rendered{withOnRemove(a, `[ -f "$METAL_ROOT/ready" ] || { echo cannot remove; exit 1; }`)},
					want: []string{"a applied ok"}},
				{
					roles: nil,
					want:  []string{"a removed failed"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						wantContains(t, "a output", result(t, rep, "a").Output, "cannot remove", "on_remove failed: exit status 1")
						if !f.exists("/etc/a.conf") {
							t.Error("files deleted although on_remove failed")
						}
						if got := st.Roles["a"]; got.Status != roles.StatusFailed || len(got.Files) != 1 {
							t.Errorf("a recorded as %+v", got)
						}
					},
				},
				{
					setup: touchReady,
					roles: []roles.Rendered{c},
					want:  []string{"a removed ok", "c applied ok"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						if f.exists("/etc/a.conf") {
							t.Error("/etc/a.conf remains")
						}
						if !slices.Equal(st.Order, []string{"c"}) || len(st.Roles) != 1 {
							t.Errorf("state %+v", st)
						}
					},
				},
			},
		},
		{
			name: "paths that would escape the root are refused",
			steps: []step{
				{roles: []roles.Rendered{mkRole("rel", []roles.File{file("etc/relative", "x")}), c},
					want: []string{"rel applied failed", "c applied failed"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						wantContains(t, "output", result(t, rep, "rel").Output, `file path "etc/relative" is not absolute`)
					}},
				{roles: []roles.Rendered{mkRole("dotdot", []roles.File{file("/etc/../../escaped", "x")})},
					want: []string{"rel removed ok", "dotdot applied failed"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						wantContains(t, "output", result(t, rep, "dotdot").Output, `file path "/etc/../../escaped" has a .. component`)
						if _, err := os.Stat(filepath.Join(filepath.Dir(f.root), "escaped")); err == nil {
							t.Error("a file was written outside the root")
						}
					}},
				{
					setup: func(t *testing.T, f *fixture) {
						if err := os.Symlink(f.stateDir, f.path("/link")); err != nil {
							t.Fatal(err)
						}
					},
					roles: []roles.Rendered{mkRole("symlink", []roles.File{file("/link/escaped", "x")})},
					want:  []string{"dotdot removed ok", "symlink applied failed"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						wantContains(t, "output", result(t, rep, "symlink").Output, "/link/escaped")
						if _, err := os.Stat(filepath.Join(f.stateDir, "escaped")); err == nil {
							t.Error("a file was written through a symbolic link out of the root")
						}
					},
				},
			},
		},
		{
			name: "#! scripts run directly, others with the shell",
			cfg:  func(t *testing.T, c *Config) { c.Shell = "/nonexistent/shell" },
			steps: []step{{
				roles: []roles.Rendered{
					mkRole("shebang", nil, "#!/bin/sh\n"+logScript("shebang")),
					mkRole("plain", nil, logScript("plain")),
				},
				want: []string{"shebang applied ok", "plain applied failed"},
				check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
					if got := f.log(t); got != "shebang\n" {
						t.Errorf("scripts ran as %q", got)
					}
					wantContains(t, "plain output", result(t, rep, "plain").Output, "/nonexistent/shell")
				},
			}},
		},
		{
			name: "packages are installed non-interactively with apt-get",
			cfg: func(t *testing.T, c *Config) {
				dir := t.TempDir()
				c.PackageManager = fakeCommand(t, dir, "apt-get", `echo "$DEBIAN_FRONTEND $*" >> "`+dir+`/calls"; echo installing`)
				t.Setenv("FAKE_PM_CALLS", filepath.Join(dir, "calls"))
			},
			steps: []step{{
				roles: []roles.Rendered{withPackages(mkRole("pk", nil, logScript("after packages")), "nginx", "curl")},
				want:  []string{"pk applied ok"},
				check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
					b, err := os.ReadFile(os.Getenv("FAKE_PM_CALLS"))
					if err != nil {
						t.Fatal(err)
					}
					if got := strings.TrimSpace(string(b)); !strings.HasPrefix(got, "noninteractive -q -y ") || !strings.HasSuffix(got, " install nginx curl") {
						t.Errorf("apt-get called as %q", got)
					}
					wantContains(t, "output", result(t, rep, "pk").Output, "+ apt-get -q -y", "install nginx curl", "installing")
					if got := f.log(t); got != "after packages\n" {
						t.Errorf("scripts ran as %q", got)
					}
				},
			}},
		},
		{
			name: "a failed apt-get install is retried after apt-get update",
			cfg: func(t *testing.T, c *Config) {
				dir := t.TempDir()
				c.PackageManager = fakeCommand(t, dir, "apt-get", `echo "$*" >> "`+dir+`/calls"
case "$*" in
*update) touch "`+dir+`/updated" ;;
*) [ -f "`+dir+`/updated" ] || { echo "E: Unable to locate package nginx"; exit 100; } ;;
esac`)
				t.Setenv("FAKE_PM_CALLS", filepath.Join(dir, "calls"))
			},
			steps: []step{{
				roles: []roles.Rendered{withPackages(mkRole("pk", nil), "nginx")},
				want:  []string{"pk applied ok"},
				check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
					b, _ := os.ReadFile(os.Getenv("FAKE_PM_CALLS"))
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					if len(lines) != 3 || !strings.HasSuffix(lines[0], "install nginx") || lines[1] != "-q update" || !strings.HasSuffix(lines[2], "install nginx") {
						t.Errorf("apt-get called as %q", lines)
					}
					wantContains(t, "output", result(t, rep, "pk").Output, "Unable to locate package")
				},
			}},
		},
		{
			name: "the package manager is detected on PATH",
			cfg: func(t *testing.T, c *Config) {
				dir := t.TempDir()
				fakeCommand(t, dir, "dnf", `echo "dnf $*"`)
				t.Setenv("PATH", dir)
			},
			steps: []step{{
				roles: []roles.Rendered{withPackages(mkRole("pk", nil), "nginx")},
				want:  []string{"pk applied ok"},
				check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
					wantContains(t, "output", result(t, rep, "pk").Output, "dnf install -y nginx")
				},
			}},
		},
		{
			name: "no package manager fails the role naming the packages",
			cfg:  func(t *testing.T, c *Config) { t.Setenv("PATH", t.TempDir()) },
			steps: []step{{
				roles: []roles.Rendered{withPackages(mkRole("pk", nil), "nginx", "curl")},
				want:  []string{"pk applied failed"},
				check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
					wantContains(t, "output", result(t, rep, "pk").Output, "installing nginx, curl", "no package manager found")
				},
			}},
		},
		{
			name: "bad modes and package names fail the role",
			cfg:  func(t *testing.T, c *Config) { c.PackageManager = fakeCommand(t, t.TempDir(), "apk", "exit 0") },
			steps: []step{
				{roles: []roles.Rendered{mkRole("m", []roles.File{{Path: "/etc/m", Content: "x", Mode: "0999"}})},
					want: []string{"m applied failed"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						wantContains(t, "output", result(t, rep, "m").Output, `file /etc/m: mode "0999"`)
						if f.exists("/etc/m") {
							t.Error("file written despite a bad mode")
						}
					}},
				{roles: []roles.Rendered{withPackages(mkRole("p", nil), "-oops")},
					want: []string{"m removed ok", "p applied failed"},
					check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
						wantContains(t, "output", result(t, rep, "p").Output, `package name "-oops" is not valid`)
					}},
			},
		},
		{
			name: "output is the bounded tail",
			steps: []step{{
				roles: []roles.Rendered{big},
				want:  []string{"big applied ok"},
				check: func(t *testing.T, f *fixture, rep roles.Report, st roles.State) {
					out := result(t, rep, "big").Output
					if len(out) > roles.MaxOutput || !strings.HasPrefix(out, truncatedMarker) || !strings.HasSuffix(out, "end-marker\n") {
						t.Errorf("output of %d bytes: %q...%q", len(out), out[:40], out[len(out)-40:])
					}
				},
			}},
		},
		{
			name: "a role listed twice is refused",
			steps: []step{{
				roles: []roles.Rendered{a, a},
				want:  []string{"a applied ok", "a applied failed"},
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.cfg != nil {
				tc.cfg(t, &f.cfg)
			}
			state := roles.State{}
			if tc.seed != nil {
				state = *tc.seed
			}
			for i, s := range tc.steps {
				if s.setup != nil {
					s.setup(t, f)
				}
				d := roles.Desired{MachineID: "m1", Revision: "rev", Generation: uint64(i + 1), Roles: s.roles}
				rep, next := Apply(context.Background(), f.cfg, d, state)
				if got := summary(rep); !slices.Equal(got, s.want) {
					t.Fatalf("step %d: results %q, want %q\n%+v", i+1, got, s.want, rep.Results)
				}
				if rep.Revision != d.Revision || rep.Generation != d.Generation {
					t.Errorf("step %d: report for %q/%d", i+1, rep.Revision, rep.Generation)
				}
				for _, r := range rep.Results {
					if len(r.Output) > roles.MaxOutput {
						t.Errorf("step %d: output of %s is %d bytes", i+1, r.Role, len(r.Output))
					}
				}
				if s.check != nil {
					s.check(t, f, rep, next)
				}
				// The state survives a round trip through its file.
				if err := SaveState(f.cfg.StatePath, next); err != nil {
					t.Fatal(err)
				}
				if state, _ = LoadState(f.cfg.StatePath); state.Generation != d.Generation {
					t.Fatalf("step %d: reloaded state %+v", i+1, state)
				}
			}
		})
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "state.json")
	s, err := LoadState(p)
	if err != nil || s.Roles == nil || len(s.Roles) != 0 || s.Revision != "" {
		t.Fatalf("missing state: %+v, %v", s, err)
	}
	want := roles.State{Revision: "r", Generation: 3, Roles: map[string]roles.AppliedRole{
		"b": {Digest: "d2", Status: roles.StatusOK}, "a": {Digest: "d1", Status: roles.StatusFailed, Files: []string{"/x"}},
	}}
	if err := SaveState(p, want); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, %v", fi.Mode(), err)
	}
	got, err := LoadState(p)
	if err != nil {
		t.Fatal(err)
	}
	// A state without an order (as an install config may seed it) lists
	// its roles by name.
	if !slices.Equal(got.Order, []string{"a", "b"}) || got.Roles["a"].Files[0] != "/x" || got.Generation != 3 {
		t.Fatalf("round trip: %+v", got)
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := os.WriteFile(p, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState(p); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt state: %v", err)
	}
}

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "/etc/x", want: "/etc/x"},
		{in: "/etc//y/./z", want: "/etc/y/z"},
		{in: "", err: "empty"},
		{in: "etc/x", err: "not absolute"},
		{in: "/etc/../x", err: ".. component"},
		{in: "/..", err: ".. component"},
		{in: "/", err: "root directory"},
		{in: "/a\x00b", err: "NUL"},
	} {
		got, err := cleanPath(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("cleanPath(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want os.FileMode
		ok   bool
	}{
		{"", 0o644, true},
		{"0644", 0o644, true},
		{"755", 0o755, true},
		{"0o600", 0o600, true},
		{"4755", 0o755 | os.ModeSetuid, true},
		{"1777", 0o777 | os.ModeSticky, true},
		{"0999", 0, false},
		{"17777", 0, false},
		{"rw-r--r--", 0, false},
	} {
		got, err := parseMode(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMode(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestResolveOwner(t *testing.T) {
	const me = 4242
	for _, tc := range []struct {
		spec       string
		euid, egid int
		want       ownership
		err        string
	}{
		{spec: "", euid: 0, egid: 0, want: ownership{0, 0, true}},
		{spec: "", euid: me, egid: me, want: ownership{}},
		{spec: "0:0", euid: 0, want: ownership{0, 0, true}},
		{spec: "4242:4242", euid: me, egid: me, want: ownership{me, me, false}},
		{spec: "4242:7", euid: me, egid: me, want: ownership{me, 7, true}},
		{spec: "0:0", euid: me, egid: me, err: "only root can give a file to another user (the agent runs as uid 4242)"},
		{spec: "root", euid: 0, want: ownership{0, 0, true}},
		{spec: "root:root", euid: me, egid: me, err: "only root"},
		{spec: "no-such-user-xyz", euid: 0, err: "no-such-user-xyz"},
		{spec: "root:no-such-group-xyz", euid: 0, err: "no-such-group-xyz"},
		{spec: ":root", euid: 0, err: "want user[:group]"},
		{spec: "root:", euid: 0, err: "want user[:group]"},
	} {
		got, err := resolveOwner(tc.spec, tc.euid, tc.egid)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("resolveOwner(%q, %d) = %+v, %v; want error %q", tc.spec, tc.euid, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("resolveOwner(%q, %d) = %+v, %v; want %+v", tc.spec, tc.euid, got, err, tc.want)
		}
	}
}

func TestTail(t *testing.T) {
	var tl tail
	tl.note("first")
	_, _ = tl.Write([]byte("no newline"))
	tl.note("after %d", 1)
	if got := tl.String(); got != "first\nno newline\nafter 1\n" {
		t.Fatalf("tail %q", got)
	}
	// Whatever the sizes of the writes, the tail stays in bounds.
	for _, chunk := range []int{1, 999, 4096, roles.MaxOutput, 3 * roles.MaxOutput} {
		tl = tail{}
		for range 3*roles.MaxOutput/chunk + 1 {
			_, _ = tl.Write([]byte(strings.Repeat("x", chunk-1) + "\n"))
		}
		_, _ = tl.Write([]byte("end"))
		if got := tl.String(); len(got) > roles.MaxOutput || !strings.HasPrefix(got, truncatedMarker) || !strings.HasSuffix(got, "\nend") {
			t.Errorf("chunks of %d: tail of %d bytes", chunk, len(got))
		}
	}
	// Multi-byte runes cut by the bound are dropped, not split.
	tl = tail{}
	_, _ = tl.Write([]byte(strings.Repeat("é", roles.MaxOutput)))
	got := tl.String()
	if len(got) > roles.MaxOutput || !strings.HasPrefix(got, truncatedMarker) || strings.ContainsRune(got, '?') {
		t.Fatalf("tail of %d bytes starting %q", len(got), got[:30])
	}
}
