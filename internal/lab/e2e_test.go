package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// The end-to-end test runs in two processes: the outer one (root
// namespace) builds the installer, creates the lab namespace, re-runs this
// test inside it with `ip netns exec` (the boot service binds DHCP to the
// bridge there), then tears the lab down and checks nothing is left.
const (
	envLab    = "METAL_LAB"
	envInner  = "METAL_LAB_E2E_INNER"
	envParams = "METAL_LAB_E2E_PARAMS"
)

type e2eParams struct {
	Config    Config     `json:"config"`
	Installer *Installer `json:"installer"`
	// RA is false to measure boots without router advertisements.
	RA bool `json:"ra"`
	// WaitFor is booted (default) or provisioned (the bench: install only).
	WaitFor string `json:"wait_for"`
	// AgentBinary, when set, is the role agent the boot service serves: the
	// first machine is then installed with roles, which are changed in
	// place once it booted (see rolesInPlace).
	AgentBinary string `json:"agent_binary,omitempty"`
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q is not a count", name, v)
	}
	return n
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func TestLabEndToEnd(t *testing.T) {
	if os.Getenv(envLab) != "1" {
		t.Skip("the VM lab end-to-end test runs with METAL_LAB=1 (as root, with QEMU; several minutes without KVM)")
	}
	if os.Getenv(envInner) == "1" {
		innerEndToEnd(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skipf("METAL_LAB=1 but %v", ErrNotRoot)
	}
	if miss := MissingPackages(); len(miss) > 0 {
		t.Skipf("METAL_LAB=1 but Debian packages are missing (QEMU, firmware or installer inputs): %s", InstallCommand(miss))
	}
	root := repoRoot(t)
	wait := engine.WaitBooted
	if os.Getenv("METAL_LAB_E2E_WAIT") == engine.WaitProvisioned {
		wait = engine.WaitProvisioned
	}
	// The full run changes a machine's roles in place; its agent builds
	// while the installer builds and the accelerator is probed.
	var agentBinary func() (string, error)
	if wait == engine.WaitBooted && os.Getenv("METAL_LAB_E2E_ROLES") != "0" {
		agentBinary = startAgentBuild(t, root)
	}
	inst, err := BuildInstaller(filepath.Join(root, ".lab"))
	if err != nil {
		t.Fatal(err)
	}
	accel, err := Accel(filepath.Join(root, ".lab"), inst)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Dir: filepath.Join(root, ".lab", "e2e"), Namespace: "metal-lab-e2e", Accel: accel,
		BIOS: envInt(t, "METAL_LAB_E2E_BIOS", 1), UEFI: envInt(t, "METAL_LAB_E2E_UEFI", 1),
	}.withDefaults()
	cfg.Logger = nil
	if err := os.RemoveAll(cfg.Dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("accelerator: %s; installer %s", accel, filepath.Dir(inst.Kernel))
	if NamespaceExists(cfg.Namespace) {
		t.Logf("removing namespace %s left by an earlier run", cfg.Namespace)
		_ = TeardownNetwork(cfg)
	}
	if err := SetupNetwork(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := TeardownNetwork(cfg); err != nil {
			t.Errorf("teardown: %v", err)
		}
		assertNothingLeft(t, cfg)
		if !t.Failed() {
			// Keep e2e-times.json; the disks and the boot service state
			// only matter when something failed.
			_ = os.RemoveAll(filepath.Join(cfg.Dir, "vms"))
			_ = os.RemoveAll(filepath.Join(cfg.Dir, "state"))
		}
	})

	var agent string
	if agentBinary != nil {
		start := time.Now()
		if agent, err = agentBinary(); err != nil {
			t.Fatal(err)
		}
		t.Logf("role agent %s (waited %s for its build)", agent, time.Since(start).Round(time.Millisecond))
	}
	params, _ := json.Marshal(e2eParams{Config: cfg, Installer: inst, RA: os.Getenv("METAL_LAB_RA") != "0", WaitFor: wait, AgentBinary: agent})
	cmd := exec.Command("ip", "netns", "exec", cfg.Namespace, os.Args[0],
		"-test.run=^TestLabEndToEnd$", "-test.count=1", "-test.v", "-test.timeout=20m")
	cmd.Env = append(os.Environ(), envInner+"=1", envParams+"="+string(params))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	start := time.Now()
	err = cmd.Run()
	t.Logf("inside the namespace: %s", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("the end-to-end run inside namespace %s failed: %v (its output is above)", cfg.Namespace, err)
	}
}

// assertNothingLeft checks that no namespace, QEMU process or tap of the
// lab survives.
func assertNothingLeft(t *testing.T, cfg Config) {
	t.Helper()
	if NamespaceExists(cfg.Namespace) {
		t.Errorf("namespace %s still exists", cfg.Namespace)
	}
	if pids := LabProcesses(cfg.Dir); len(pids) > 0 {
		t.Errorf("QEMU processes of the lab still running: %v", pids)
	}
	out, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, m := range cfg.Machines() {
		if bytes.Contains(out, []byte(" "+m.Tap+":")) {
			t.Errorf("tap %s exists in the root namespace", m.Tap)
		}
	}
}

// e2eTimes is what one machine's provisioning took, measured from the
// Provision call.
type e2eTimes struct {
	Machine    string        `json:"machine"`
	Firmware   Firmware      `json:"firmware"`
	FirstDHCP  time.Duration `json:"first_dhcp"`
	Script     time.Duration `json:"script"`
	Initrd     time.Duration `json:"initrd"`
	Config     time.Duration `json:"config"`
	Provision  time.Duration `json:"provisioned"`
	Booted     time.Duration `json:"booted"`
	PowerOnAt  time.Duration `json:"power_on"`
	ScriptToCB time.Duration `json:"script_to_provisioned"`
	// QEMUToProvisioned is from QEMU's start to the provisioned callback,
	// what bench/lab-provision compares.
	QEMUToProvisioned time.Duration `json:"qemu_to_provisioned"`
}

func innerEndToEnd(t *testing.T) {
	var p e2eParams
	if err := json.Unmarshal([]byte(os.Getenv(envParams)), &p); err != nil {
		t.Fatalf("%s: %v", envParams, err)
	}
	cfg, inst := p.Config, p.Installer
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if !InNamespace(cfg) {
		t.Fatalf("not inside namespace %s", cfg.Namespace)
	}
	r, err := StartMachines(cfg, inst)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = r.Close()
		for _, m := range r.Machines {
			if m.VM.Running() {
				t.Errorf("%s: QEMU still running after Close", m.Name)
			}
		}
	}()
	boot := cfg.BootConfig()
	boot.RouterAdvertisements = &p.RA
	boot.AgentBinary = p.AgentBinary
	e := engine.NewEmbedded(engine.Config{Logger: cfg.Logger, PollInterval: 250 * time.Millisecond, Boot: &boot})
	defer func() { _ = e.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	img, err := e.EnsureImage(ctx, ImageSpec("lab-os", inst))
	if err != nil {
		t.Fatal(err)
	}

	// With an agent, the first machine gets roles.
	var withRoles *Machine
	if p.AgentBinary != "" {
		withRoles = r.Machines[0]
		putLabRoles(ctx, t, e)
	}

	// Provision every machine at once, waiting until it booted from disk.
	start := time.Now()
	var wg sync.WaitGroup
	results := make([]*engine.ProvisionResult, len(r.Machines))
	errs := make([]error, len(r.Machines))
	for i, m := range r.Machines {
		spec := engine.ProvisionSpec{Image: "lab-os", Hostname: m.Name, RootDevice: "/dev/vda", WaitFor: p.WaitFor}
		if m == withRoles {
			spec.Agent, spec.Roles = true, installRoles
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = e.Provision(ctx, m.BMC(r.CA), spec)
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	failed := false
	for i, m := range r.Machines {
		if errs[i] != nil {
			failed = true
			tl, _ := e.Timeline(ctx, m.BMC(r.CA))
			t.Errorf("%s: %v\ntimeline:\n%s\nserial console (tail):\n%s", m.Name, errs[i], engine.FormatTimeline(tl), tail(m.VM.SerialLog(), 40))
		}
	}
	if failed {
		return
	}

	var times []e2eTimes
	for i, m := range r.Machines {
		res := results[i]
		// Provision returns as soon as the boot service saw the DHCP ACK
		// of the installed system; the ACK's timeline event and the
		// system's console line follow a moment later.
		booted := p.WaitFor == engine.WaitBooted
		want := []string{
			"engine/registered", "engine/pxe_boot_requested", "dhcp/offer", "dhcp/ack", "http/script", "http/kernel", "http/initrd",
			"http/booting", "http/config/image.env", "http/writing-image", "http/image", "http/image-written", "http/provisioned",
		}
		if m == withRoles {
			want = slices.Insert(want, len(want)-1, "http/installing-agent", "http/agent-installed")
		}
		tl := res.Timeline
		if booted {
			want = append(want, "dhcp/ack")
			tl = waitTimeline(ctx, t, e, m.BMC(r.CA))
			waitSerial(t, m, "METAL-LAB-BOOTED-FROM-DISK", time.Minute)
		}
		t.Logf("%s (%s) timeline:\n%s", m.Name, m.Firmware, engine.FormatTimeline(tl))
		if got := stages(tl); !inOrder(got, want) {
			t.Errorf("%s: timeline %v does not contain %v in order", m.Name, got, want)
		}
		waitSerial(t, m, "METAL-LAB-INSTALLED", 30*time.Second)
		// One network boot (NIC first, -no-reboot), then the disk.
		if h := m.VM.History(); booted && (len(h) != 2 || !h[0].NetworkFirst || !h[0].NoReboot || h[1].NetworkFirst || h[1].NoReboot) {
			t.Errorf("%s: QEMU starts %+v, want one network-first boot then one disk-first boot", m.Name, h)
		}
		if res.IPAddress == "" {
			t.Errorf("%s: no IP address in the result", m.Name)
		}
		times = append(times, timesOf(m, tl, start))
	}

	// In place: the machine with roles gets changed ones from its agent.
	var applied *engine.RoleStatus
	var applyWall time.Duration
	if withRoles != nil {
		applied, applyWall = rolesInPlace(ctx, t, e, withRoles, r.CA)
	}

	// Power off and read the disks back: the image as written, except on
	// the machine with roles, whose partition its agent wrote to.
	for _, m := range r.Machines {
		powerOff(ctx, t, e, m, r.CA)
		if m == withRoles {
			checkRolesOnDisk(t, m, inst.Image, applied)
			continue
		}
		if err := sameBytes(m.Disk, inst.Image, img.ImageSize); err != nil {
			t.Errorf("%s: %v", m.Name, err)
		}
	}
	// Deprovision. In the full run every machine is wiped first (another
	// network boot, into the installer's wipe mode), concurrently.
	wipe := p.WaitFor == engine.WaitBooted
	wipeStart := time.Now()
	for i, m := range r.Machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.Deprovision(ctx, m.BMC(r.CA), "lab-os", wipe)
		}()
	}
	wg.Wait()
	wipeWall := time.Since(wipeStart)
	for i, m := range r.Machines {
		if errs[i] != nil {
			t.Errorf("%s: Deprovision (wipe %v): %v\nserial console (tail):\n%s", m.Name, wipe, errs[i], tail(m.VM.SerialLog(), 30))
			continue
		}
		if wipe {
			waitSerial(t, m, "METAL-LAB-WIPED", 30*time.Second)
		}
		powerOff(ctx, t, e, m, r.CA)
		if wipe {
			if err := zeroBytes(m.Disk, img.ImageSize); err != nil {
				t.Errorf("%s: after the wipe: %v", m.Name, err)
			}
		}
		if tl, _ := e.Timeline(ctx, m.BMC(r.CA)); len(tl) != 0 {
			t.Errorf("%s: a deprovisioned machine still has a timeline:\n%s", m.Name, engine.FormatTimeline(tl))
		}
	}
	if wipe {
		t.Logf("wiped %d machines concurrently in %s", len(r.Machines), wipeWall.Round(time.Millisecond))
	}

	t.Logf("accelerator %s, router advertisements %v, %d machines provisioned concurrently in %s", r.Machines[0].VM.Config().Accel, p.RA, len(r.Machines), wall.Round(time.Millisecond))
	for _, x := range times {
		t.Logf("%-7s %-4s power-on %6s  first DHCP %6s  script %6s  initrd %6s  image.env %6s  provisioned %6s  booted %6s",
			x.Machine, x.Firmware, rd(x.PowerOnAt), rd(x.FirstDHCP), rd(x.Script), rd(x.Initrd), rd(x.Config), rd(x.Provision), rd(x.Booted))
	}
	summary := map[string]any{"accel": r.Machines[0].VM.Config().Accel, "ra": p.RA, "wall": wall, "machines": times}
	if withRoles != nil {
		t.Logf("%s: roles changed in place in %s", withRoles.Name, applyWall.Round(time.Millisecond))
		summary["apply_roles"] = applyWall
	}
	b, _ := json.MarshalIndent(summary, "", "  ")
	_ = os.WriteFile(filepath.Join(cfg.Dir, "e2e-times.json"), b, 0o644)
}

// waitTimeline polls the machine's timeline until it has a DHCP ACK after
// the provisioned callback (10s at most).
func waitTimeline(ctx context.Context, t *testing.T, e *engine.Embedded, bmc engine.BMC) []engine.TimelineEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tl, err := e.Timeline(ctx, bmc)
		if err != nil {
			t.Fatal(err)
		}
		if inOrder(stages(tl), []string{"http/provisioned", "dhcp/ack"}) || time.Now().After(deadline) {
			return tl
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSerial waits for a line on the VM's serial console.
func waitSerial(t *testing.T, m *Machine, marker string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		b, _ := os.ReadFile(m.VM.SerialLog())
		if bytes.Contains(b, []byte(marker)) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: no %s on the serial console within %s:\n%s", m.Name, marker, limit, tail(m.VM.SerialLog(), 40))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// powerOff turns the machine off through its BMC and checks QEMU is gone.
func powerOff(ctx context.Context, t *testing.T, e *engine.Embedded, m *Machine, ca []byte) {
	t.Helper()
	inv, err := e.SetPower(ctx, m.BMC(ca), engine.PowerOff, engine.PowerOptions{ForceOff: true})
	if err != nil || inv.PowerState != engine.PowerOff {
		t.Errorf("%s: power off: %+v %v", m.Name, inv, err)
	}
	if m.VM.Running() {
		t.Errorf("%s: QEMU still running after the BMC powered it off", m.Name)
	}
}

// zeroBytes checks that the first n bytes of a disk are zero.
func zeroBytes(disk string, n int64) error {
	f, err := os.Open(disk)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		return err
	}
	for i, c := range b {
		if c != 0 {
			return fmt.Errorf("disk %s has data at byte %d", disk, i)
		}
	}
	return nil
}

func rd(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }

func timesOf(m *Machine, tl []engine.TimelineEvent, start time.Time) e2eTimes {
	x := e2eTimes{Machine: m.Name, Firmware: m.Firmware}
	if h := m.VM.History(); len(h) > 0 {
		x.PowerOnAt = h[0].Time.Sub(start)
	}
	provisioned := false
	for _, ev := range tl {
		d := ev.Time.Sub(start)
		switch s := ev.Source + "/" + ev.Stage; {
		case s == "dhcp/offer" && x.FirstDHCP == 0:
			x.FirstDHCP = d
		case s == "http/script" && x.Script == 0:
			x.Script = d
		case s == "http/initrd" && x.Initrd == 0:
			x.Initrd = d
		case s == "http/config/image.env" && x.Config == 0:
			x.Config = d
		case s == "http/provisioned":
			x.Provision, provisioned = d, true
		case s == "dhcp/ack" && provisioned && x.Booted == 0:
			x.Booted = d
		}
	}
	x.ScriptToCB = x.Provision - x.Script
	x.QEMUToProvisioned = x.Provision - x.PowerOnAt
	return x
}

func stages(tl []engine.TimelineEvent) []string {
	out := make([]string, len(tl))
	for i, ev := range tl {
		out[i] = ev.Source + "/" + ev.Stage
	}
	return out
}

// inOrder reports whether want is a subsequence of got.
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// sameBytes compares the first n bytes of a disk with an image file.
func sameBytes(disk, image string, n int64) error {
	a, err := os.ReadFile(image)
	if err != nil {
		return err
	}
	if int64(len(a)) != n {
		return fmt.Errorf("image %s is %d bytes, the boot service cached %d", image, len(a), n)
	}
	f, err := os.Open(disk)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		return fmt.Errorf("reading %s: %w", disk, err)
	}
	if !bytes.Equal(a, b) {
		i := -1
		for j := range a {
			if a[j] != b[j] {
				i = j
				break
			}
		}
		return fmt.Errorf("disk %s differs from the image at byte %d", disk, i)
	}
	return nil
}

func tail(path string, lines int) string {
	b, _ := os.ReadFile(path)
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
