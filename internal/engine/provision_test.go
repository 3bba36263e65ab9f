package engine_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
	"github.com/composable-metal/terraform-provider-metal/internal/machinesim"
)

const testMAC = "52:54:00:aa:00:01"

type bootLab struct {
	cfg      engine.Config
	dhcpAddr *net.UDPAddr
	sim      *bmcsim.Simulator
	bmc      engine.BMC
	fleet    *machinesim.Fleet
	kernel   []byte
}

// newBootLab wires a simulated BMC whose machine network-boots (over real
// loopback sockets) from the engine's boot service.
func newBootLab(t testing.TB, stateDir string) *bootLab {
	t.Helper()
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dhcpAddr := l.LocalAddr().(*net.UDPAddr)
	_ = l.Close()
	lab := &bootLab{dhcpAddr: dhcpAddr}
	lab.cfg = engine.Config{PollInterval: 5 * time.Millisecond, Boot: &engine.BootConfig{
		Address:    netip.MustParseAddr("127.0.0.1"),
		HTTPListen: "127.0.0.1:0",
		StateDir:   stateDir,
		DHCP: engine.DHCPConfig{
			Mode: engine.DHCPAuthoritative, Listen: dhcpAddr.String(),
			Subnet:     netip.MustParsePrefix("127.0.0.0/8"),
			RangeStart: netip.MustParseAddr("127.0.0.100"), RangeEnd: netip.MustParseAddr("127.0.0.200"),
		},
	}}
	lab.fleet = machinesim.NewFleet(machinesim.FleetConfig{DHCPServer: dhcpAddr, DHCPTimeout: 2 * time.Second})
	t.Cleanup(lab.fleet.Close)
	// Registered up front so tests can boot the same machine by hand too.
	lab.fleet.Add("node-1", &machinesim.Machine{MAC: mustMAC(testMAC), DHCPServer: dhcpAddr, DHCPTimeout: 2 * time.Second})
	lab.sim, lab.bmc = startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{{
		ID: "node-1", NICs: []bmcsim.NIC{{ID: "eth0", MAC: testMAC, LinkUp: true}}, BootMode: "UEFI",
		OnBoot: lab.fleet.OnBoot,
	}}})
	return lab
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

func (lab *bootLab) image(t testing.TB, e engine.Engine) {
	t.Helper()
	dir := t.TempDir()
	lab.kernel = []byte("a kernel that boots")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return "file://" + p
	}
	if _, err := e.EnsureImage(context.Background(), engine.ImageSpec{
		Name: "debian", Kind: "cloud-init",
		Kernel: engine.ArtifactSource{URL: write("vmlinuz", lab.kernel)},
		Initrd: engine.ArtifactSource{URL: write("initrd.img", []byte("an initrd"))},
	}); err != nil {
		t.Fatalf("EnsureImage: %v", err)
	}
}

func stages(tl []engine.TimelineEvent) []string {
	out := make([]string, 0, len(tl))
	for _, ev := range tl {
		out = append(out, ev.Source+"/"+ev.Stage)
	}
	return out
}

// inOrder reports whether want appears in got as a subsequence.
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestProvisionInstallsAndWaitsForTheCallback(t *testing.T) {
	t.Parallel()
	lab := newBootLab(t, t.TempDir())
	e := engine.NewEmbedded(lab.cfg)
	defer e.Close()
	lab.image(t, e)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := e.Provision(ctx, lab.bmc, engine.ProvisionSpec{
		Image: "debian", Hostname: "node1", SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3Nza test@example"},
		WaitFor: engine.WaitProvisioned,
	})
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	want := []string{"engine/registered", "engine/pxe_boot_requested", "dhcp/offer", "dhcp/ack", "http/script", "http/kernel", "http/initrd", "http/config/user-data", "http/provisioned"}
	if got := stages(res.Timeline); !inOrder(got, want) {
		t.Fatalf("timeline %v does not contain %v in order", got, want)
	}
	ip, err := netip.ParseAddr(res.IPAddress)
	if err != nil || ip.Less(netip.MustParseAddr("127.0.0.100")) || netip.MustParseAddr("127.0.0.200").Less(ip) {
		t.Fatalf("leased address %q is not from the range", res.IPAddress)
	}
	st, _ := lab.sim.System("node-1")
	if st.PowerState != "On" || st.BootMode != "UEFI" {
		t.Fatalf("system after provisioning: %+v", st)
	}
	inst, ok := lab.fleet.Machine("node-1").Disk.Installed()
	if !ok {
		t.Fatal("nothing was installed on the machine's disk")
	}
	sum := sha256.Sum256(lab.kernel)
	if inst.Hostname != "node1" || inst.KernelSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("installed: %+v", inst)
	}
	// The leased address is rendered as static configuration.
	if inst.Network.DHCP || len(inst.Network.Addresses) != 1 || !strings.HasPrefix(inst.Network.Addresses[0], res.IPAddress+"/") {
		t.Fatalf("installed network %+v should carry the leased %s", inst.Network, res.IPAddress)
	}

	// The protocol counters behind /metrics saw the install.
	stats, ok := e.BootStats()
	if !ok || stats.DHCPReceived["DISCOVER"] == 0 || stats.DHCPSent["OFFER"] == 0 || stats.DHCPSent["ACK"] == 0 ||
		stats.HTTPBytes < uint64(len(lab.kernel)) {
		t.Fatalf("boot stats after an install: %+v (serving %v)", stats, ok)
	}

	// Only a hash of the provisioning token is stored.
	recs, err := lab.fleet.WaitBoots(ctx, "node-1", 1)
	if err != nil || len(recs) == 0 || !strings.Contains(recs[0].Result.ScriptURL, "/boot/") {
		t.Fatalf("no recorded network boot with a script URL: %+v", recs)
	}
	token := strings.Split(strings.SplitN(recs[0].Result.ScriptURL, "/boot/", 2)[1], "/")[0]
	db, err := os.ReadFile(filepath.Join(lab.cfg.Boot.StateDir, "metal.db"))
	if err != nil || len(token) < 16 {
		t.Fatalf("reading the store: %v (token %q)", err, token)
	}
	if strings.Contains(string(db), token) {
		t.Fatal("the plaintext provisioning token is in the state file")
	}

	// The installed machine boots again: the boot service now hands out a
	// local-boot script and the old token is refused.
	again, err := lab.fleet.Machine("node-1").NetBoot(ctx)
	if err != nil || again.BootedFrom != "disk" {
		t.Fatalf("second network boot: %v, %+v", err, again)
	}

	if err := e.Deprovision(ctx, lab.bmc, "debian", false); err != nil {
		t.Fatal(err)
	}
	probe := &machinesim.Machine{MAC: mustMAC(testMAC), DHCPServer: lab.dhcpAddr, DHCPTimeout: 200 * time.Millisecond}
	if r, err := probe.NetBoot(ctx); err == nil {
		t.Fatalf("a deregistered machine still got a DHCP answer: %+v", r)
	}
}

func TestProvisionWaitsForBooted(t *testing.T) {
	t.Parallel()
	lab := newBootLab(t, t.TempDir())
	e := engine.NewEmbedded(lab.cfg)
	defer e.Close()
	lab.image(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	done := make(chan error, 1)
	go func() {
		_, err := e.Provision(ctx, lab.bmc, engine.ProvisionSpec{Image: "debian", WaitFor: engine.WaitBooted})
		done <- err
	}()
	if _, err := lab.fleet.WaitBoots(ctx, "node-1", 1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("Provision returned before the installed system came up: %v", err)
	default:
	}
	// The installed system's first boot asks DHCP for its address.
	if _, err := lab.fleet.Machine("node-1").NetBoot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Provision(wait_for=booted): %v", err)
	}
}

func TestProvisionFailureCarriesTheTimeline(t *testing.T) {
	t.Parallel()
	stateDir := t.TempDir()
	lab := newBootLab(t, stateDir)
	e := engine.NewEmbedded(lab.cfg)
	defer e.Close()
	lab.image(t, e)
	// The kernel leaves the cache: every fetch fails, the boot script gives
	// up and reports "failed", and Provision must say so without waiting
	// for its deadline.
	sum := sha256.Sum256(lab.kernel)
	if err := os.Remove(filepath.Join(stateDir, "artifacts", "sha256", hex.EncodeToString(sum[:]))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := e.Provision(ctx, lab.bmc, engine.ProvisionSpec{Image: "debian"})
	var perr *engine.ProvisionError
	if !errors.As(err, &perr) {
		t.Fatalf("got %v, want a ProvisionError", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatal("a reported failure should end the wait at once")
	}
	if !strings.Contains(err.Error(), "failure") || !strings.Contains(engine.FormatTimeline(perr.Timeline), "kernel") {
		t.Fatalf("error should name the failure and the timeline the kernel fetch: %v\n%s", err, engine.FormatTimeline(perr.Timeline))
	}
}

// A restarted boot service (the provider process ends, the next run starts
// it again) keeps registrations, leases and timelines.
func TestBootServiceRestartLosesNothing(t *testing.T) {
	t.Parallel()
	stateDir := t.TempDir()
	lab := newBootLab(t, stateDir)
	e := engine.NewEmbedded(lab.cfg)
	lab.image(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := e.Provision(ctx, lab.bmc, engine.ProvisionSpec{Image: "debian"})
	if err != nil {
		t.Fatal(err)
	}
	before := len(res.Timeline)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e2 := engine.NewEmbedded(lab.cfg)
	defer e2.Close()
	if _, err := e2.Image(ctx, "debian"); err != nil {
		t.Fatalf("image lost across restart: %v", err)
	}
	if err := e2.ServeBoot(); err != nil {
		t.Fatal(err)
	}
	again, err := lab.fleet.Machine("node-1").NetBoot(ctx)
	if err != nil {
		t.Fatalf("network boot after restart: %v", err)
	}
	if again.LeaseIP.String() != res.IPAddress {
		t.Fatalf("lease after restart = %s, want the persisted %s", again.LeaseIP, res.IPAddress)
	}
	if again.BootedFrom != "disk" {
		t.Fatalf("a provisioned machine should boot its disk after restart, got %q", again.BootedFrom)
	}
	tl, err := e2.Timeline(ctx, engine.BMC{Endpoint: lab.bmc.Endpoint, SystemID: "node-1"})
	if err != nil || len(tl) <= before || !inOrder(stages(tl), []string{"engine/registered", "http/provisioned", "dhcp/ack"}) {
		t.Fatalf("timeline after restart (%d events before): %v %v", before, stages(tl), err)
	}
}

func TestProvisionWithoutBootServiceIsAClearError(t *testing.T) {
	t.Parallel()
	_, bmc := startBMC(t, bmcsim.Options{})
	_, err := engine.NewEmbedded(engine.Config{}).Provision(context.Background(), bmc, engine.ProvisionSpec{Image: "x"})
	if !errors.Is(err, engine.ErrBootServiceNotConfigured) {
		t.Fatalf("got %v", err)
	}
}

func TestMissingIPXEBinariesFailAtStart(t *testing.T) {
	t.Parallel()
	lab := newBootLab(t, t.TempDir())
	lab.cfg.Boot.IPXEDir = t.TempDir()
	lab.cfg.Boot.TFTP = engine.TFTPConfig{Enabled: true, Listen: "127.0.0.1:0"}
	_, err := engine.NewEmbedded(lab.cfg).Provision(context.Background(), lab.bmc, engine.ProvisionSpec{Image: "x"})
	if err == nil || !strings.Contains(err.Error(), "undionly.kpxe") || !strings.Contains(err.Error(), "apt-get install ipxe") {
		t.Fatalf("got %v, want an error naming the missing binary and the fix", err)
	}
}
