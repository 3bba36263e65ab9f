package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// Roles in the lab (TestLabEndToEnd's full run): the first machine is
// installed with the role "motd"; the installer puts the agent on the
// image's FAT partition and the installed system runs it, with the roles'
// files under /root of that partition (see installer/init.sh). Once the
// machine booted, the test changes motd's parameter and adds "banner",
// waits for the agent's report, and after power-off reads both files from
// the VM's disk with mtools.

// installRoles are the machine's roles at install.
var installRoles = engine.RoleSelection{
	Roles:      []string{"motd"},
	Parameters: map[string]map[string]string{"motd": {"message": "installed"}},
}

// changedRoles are what the test changes them to in place.
var changedRoles = engine.RoleSelection{
	Roles:      []string{"motd", "banner"},
	Parameters: map[string]map[string]string{"motd": {"message": "changed in place"}},
}

const (
	motdPath   = "/etc/motd-lab"
	bannerPath = "/etc/lab/banner"
)

// wantMotd is motdPath's content for a message on machine m.
func wantMotd(message string, m *Machine) string { return message + " on " + m.Name + "\n" }

// putLabRoles puts the roles the test uses into the catalog.
func putLabRoles(ctx context.Context, t *testing.T, e *engine.Embedded) {
	t.Helper()
	def := "nobody"
	for _, r := range []engine.Role{
		{
			Name: "motd", Description: "the lab's message of the day",
			Parameters: map[string]engine.RoleParameter{"message": {Type: "string", Default: &def}},
			Files:      []engine.RoleFile{{Path: motdPath, Content: "{{ .params.message }} on {{ .machine.hostname }}\n"}},
		},
		{
			Name: "banner", Requires: []string{"motd"},
			Files: []engine.RoleFile{{Path: bannerPath, Content: "boot MAC {{ .machine.boot_mac }}\n", Mode: "0600"}},
		},
	} {
		if _, err := e.PutRole(ctx, r); err != nil {
			t.Fatalf("PutRole %s: %v", r.Name, err)
		}
	}
}

// startAgentBuild builds the role agent in the background; the returned
// function waits for it and returns its path.
func startAgentBuild(t *testing.T, root string) func() (string, error) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "metal-agent")
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = buildAgent(root, dst)
	}()
	// Registered after t.TempDir's cleanup, so it runs first.
	t.Cleanup(func() { <-done })
	return func() (string, error) {
		<-done
		return dst, err
	}
}

// buildAgent builds this repository's binary, which is the role agent
// (`terraform-provider-metal agent`): static (CGO_ENABLED=0), so it runs on
// the lab's busybox system, and stripped, to keep its download short.
func buildAgent(root, dst string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building the role agent needs the go command on PATH: %w", err)
	}
	start := time.Now()
	cmd := exec.Command(goCmd, "build", "-ldflags=-s -w", "-o", dst, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the role agent: %w\n%s", err, bytes.TrimSpace(out))
	}
	if time.Since(start) > 5*time.Minute {
		return errors.New("building the role agent took more than 5 minutes")
	}
	return nil
}

// rolesInPlace checks that the agent applied the install-time roles at
// first boot, then changes the roles and waits for the agent to converge
// them, checking that nothing was reinstalled. It returns the final status
// and how long ApplyRoles took.
func rolesInPlace(ctx context.Context, t *testing.T, e *engine.Embedded, m *Machine, ca []byte) (*engine.RoleStatus, time.Duration) {
	t.Helper()
	bmc := m.BMC(ca)
	fail := func(format string, args ...any) {
		t.Helper()
		tl, _ := e.Timeline(ctx, bmc)
		t.Errorf("%s: %s\ntimeline:\n%s\nserial console (tail):\n%s", m.Name, fmt.Sprintf(format, args...), engine.FormatTimeline(tl), tail(m.VM.SerialLog(), 40))
	}
	waitSerial(t, m, "METAL-LAB-AGENT-STARTED", 30*time.Second)

	// The image has no cloud-init: the agent starts without a state and
	// applies the install-time roles itself.
	first, err := waitRoleReport(ctx, e, bmc, 90*time.Second)
	if err != nil {
		fail("the agent's first report: %v", err)
		return nil, 0
	}
	if !first.Converged() || len(first.Report.Results) != 1 || first.Report.Results[0].Action != roles.ActionApplied {
		fail("first report %+v, want motd applied", first.Report)
		return nil, 0
	}

	actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	st, err := e.ApplyRoles(actx, bmc, changedRoles)
	took := time.Since(start)
	if err != nil {
		fail("ApplyRoles: %v", err)
		return nil, took
	}
	if !st.Converged() || st.Generation <= first.Generation || strings.Join(st.Roles, ",") != "motd,banner" {
		fail("after ApplyRoles: %+v (report %+v), want motd and banner converged after generation %d", st, st.Report, first.Generation)
	}
	actions := map[string]string{}
	for _, res := range st.Report.Results {
		actions[res.Role] = res.Action
	}
	if actions["motd"] != roles.ActionApplied || actions["banner"] != roles.ActionApplied {
		fail("report %+v, want motd and banner applied", st.Report)
	}

	// Without a reinstall: one registration, one network boot, one
	// install; the change shows as requested and reported.
	tl, err := e.Timeline(ctx, bmc)
	if err != nil {
		t.Fatal(err)
	}
	got := stages(tl)
	for _, s := range []string{"engine/registered", "engine/pxe_boot_requested", "http/script", "http/config/image.env", "http/provisioned"} {
		if n := count(got, s); n != 1 {
			fail("%d %s events, want 1 (no reinstall)", n, s)
		}
	}
	if want := []string{"http/agent-installed", "http/provisioned", "agent/roles_reported", "engine/roles_requested", "agent/roles_reported"}; !inOrder(got, want) {
		fail("timeline %v does not contain %v in order", got, want)
	}
	if h := m.VM.History(); len(h) != 2 || h[1].NetworkFirst {
		fail("QEMU starts %+v, want the install's network boot and one disk boot", h)
	}
	return st, took
}

// waitRoleReport waits for the agent's first report.
func waitRoleReport(ctx context.Context, e *engine.Embedded, bmc engine.BMC, limit time.Duration) (*engine.RoleStatus, error) {
	deadline := time.Now().Add(limit)
	for {
		st, err := e.RoleStatus(ctx, bmc)
		if err != nil {
			return nil, err
		}
		if st.Report != nil {
			return st, nil
		}
		if time.Now().After(deadline) {
			seen := "the agent never asked for its roles"
			if !st.AgentSeen.IsZero() {
				seen = "the agent last asked at " + st.AgentSeen.Format(time.RFC3339)
			}
			return st, fmt.Errorf("no report within %s (%s)", limit, seen)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkRolesOnDisk reads the powered-off machine's disk: the image's MBR,
// its files, and the roles' files and agent state the agent wrote to the
// partition, which must be the changed ones.
func checkRolesOnDisk(t *testing.T, m *Machine, image string, st *engine.RoleStatus) {
	t.Helper()
	if err := sameMBR(m.Disk, image); err != nil {
		t.Errorf("%s: %v", m.Name, err)
	}
	part := m.Disk + "@@" + strconv.Itoa(partStartSector*sectorSize)
	read := func(p string) string {
		cmd := exec.Command("mtype", "-i", part, "::"+p)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
			}
			t.Errorf("%s: reading %s from the disk: %v", m.Name, p, err)
		}
		return string(out)
	}
	if got := read("/metal-image"); !strings.HasPrefix(got, "composable-metal lab image ") {
		t.Errorf("%s: /metal-image on the disk = %q", m.Name, got)
	}
	if got, want := read("/root"+motdPath), wantMotd(changedRoles.Parameters["motd"]["message"], m); got != want {
		t.Errorf("%s: %s on the disk = %q, want %q", m.Name, motdPath, got, want)
	}
	if got, want := read("/root"+bannerPath), "boot MAC "+strings.ToLower(m.MAC)+"\n"; got != want {
		t.Errorf("%s: %s on the disk = %q, want %q", m.Name, bannerPath, got, want)
	}
	var state roles.State
	if err := json.Unmarshal([]byte(read("/metal/state.json")), &state); err != nil {
		t.Errorf("%s: the agent's state on the disk: %v", m.Name, err)
	} else if st != nil && (state.Revision != st.Revision || state.Generation != st.Generation || strings.Join(state.Order, ",") != "motd,banner") {
		t.Errorf("%s: the agent's state on the disk is %+v, want revision %s generation %d", m.Name, state, st.Revision, st.Generation)
	}
}

// sameMBR compares the disk's first sector with the image's.
func sameMBR(disk, image string) error {
	read := func(p string) ([]byte, error) {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer func() { _ = f.Close() }()
		b := make([]byte, sectorSize)
		_, err = f.ReadAt(b, 0)
		return b, err
	}
	a, err := read(image)
	if err != nil {
		return err
	}
	b, err := read(disk)
	if err != nil {
		return err
	}
	if !bytes.Equal(a, b) {
		return fmt.Errorf("the MBR of %s differs from the image's", disk)
	}
	return nil
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
