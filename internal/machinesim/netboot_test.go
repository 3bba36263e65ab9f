package machinesim

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/dhcp"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/httpboot"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
)

var (
	mac1 = mustMAC("52:54:00:aa:bb:01")
	ip1  = netip.MustParseAddr("127.0.0.42")
)

func netboot(t *testing.T, m *Machine) (*Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*ioTimeout)
	defer cancel()
	return m.NetBoot(ctx)
}

func firmwares() []struct {
	name     string
	arch     iana.Arch
	platform string
} {
	return []struct {
		name     string
		arch     iana.Arch
		platform string
	}{
		{"bios", iana.INTEL_X86PC, "pcbios"},
		{"uefi", iana.EFI_X86_64, "efi"},
	}
}

// The full cloud-init install, then the next boot of the provisioned
// machine boots its disk.
func TestNetBootCloudInitThenLocalBoot(t *testing.T) {
	t.Parallel()
	for _, fw := range firmwares() {
		t.Run(fw.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			l.provision("node1", mac1, ip1, render.KindCloudInit)
			m := &Machine{MAC: mac1, Arch: fw.arch, DHCPServer: l.dhcpAddr, Logger: l.logger()}

			res, err := netboot(t, m)
			if err != nil {
				t.Fatalf("NetBoot: %v\n%s", err, res)
			}
			// What the DHCP server saw: iPXE on this firmware.
			req := l.lastLookup()
			wantVC := map[iana.Arch]string{iana.INTEL_X86PC: "PXEClient:Arch:00000:UNDI:002001", iana.EFI_X86_64: "PXEClient:Arch:00007:UNDI:003016"}[fw.arch]
			if req.Client != dhcp.ClientIPXE || !req.HasArch || req.Arch != fw.arch || req.VendorClass != wantVC || req.UserClass != "iPXE" {
				t.Errorf("DHCP client facts: %+v", req.ClientFacts)
			}

			wantStages := []string{"dhcp", "script", "kernel", "initrd", "config/meta-data", "config/user-data", "config/network-config", "provisioned"}
			if diff := cmp.Diff(wantStages, res.Stages); diff != "" {
				t.Errorf("stages (-want +got):\n%s", diff)
			}
			if res.LeaseIP != ip1 || res.ServerID != netip.MustParseAddr("127.0.0.1") || !res.Provisioned ||
				res.BootedFrom != BootedFromNetwork || res.Installer != InstallerCloudInit || !slices.Equal(res.Reported, []string{"booting"}) {
				t.Errorf("result: %s", res)
			}
			if res.ScriptURL != httpboot.ScriptURL(l.base, l.machine("node1").token) {
				t.Errorf("script URL is not the machine's")
			}
			wantImages := []Image{
				{Name: "script.ipxe", Stage: "script"},
				{Name: "kernel", Stage: "kernel", Size: int64(len(l.kernel)), SHA256: sum(l.kernel)},
				{Name: "initrd", Stage: "initrd", Size: int64(len(l.initrd)), SHA256: sum(l.initrd)},
			}
			got := slices.Clone(res.Images)
			got[0].Size, got[0].SHA256 = 0, ""
			if diff := cmp.Diff(wantImages, got); diff != "" {
				t.Errorf("images (-want +got):\n%s", diff)
			}

			// The boot service saw the same story, from the leased address.
			wantServer := []string{"script", "kernel", "initrd", "booting", "config/meta-data", "config/user-data", "config/network-config", "provisioned"}
			if diff := cmp.Diff(wantServer, l.stages("node1")); diff != "" {
				t.Errorf("server timeline (-want +got):\n%s", diff)
			}
			if canBind(ip1) {
				for _, e := range l.eventList("node1") {
					if !strings.HasPrefix(e.Remote, ip1.String()+":") {
						t.Errorf("%s came from %s, want the leased %s", e.Stage, e.Remote, ip1)
					}
				}
			}
			if !l.machine("node1").provisioned {
				t.Error("the backend was not told provisioned")
			}

			// The disk holds what was served.
			inst, ok := m.Disk.Installed()
			if !ok {
				t.Fatal("nothing installed")
			}
			want := Installation{
				Kind:         InstallerCloudInit,
				KernelSHA256: sum(l.kernel),
				InitrdSHA256: sum(l.initrd),
				Configs: map[string]string{
					"meta-data":      sum(l.rendered(t, "node1", "meta-data")),
					"user-data":      sum(l.rendered(t, "node1", "user-data")),
					"network-config": sum(l.rendered(t, "node1", "network-config")),
				},
				Hostname:   "node1.example.com",
				InstanceID: "node1",
				Network: Network{MAC: mac1.String(), Addresses: []string{"192.0.2.17/24"}, Gateway: "192.0.2.1",
					DNS: []string{"192.0.2.53"}, SearchDomains: []string{"example.com"}},
				SSHAuthorizedKeys: l.machine("node1").vars.SSHAuthorizedKeys,
				UserDataParts:     []string{"text/cloud-config"},
			}
			inst.InstalledAt = time.Time{}
			if diff := cmp.Diff(want, inst); diff != "" {
				t.Errorf("installation (-want +got):\n%s", diff)
			}

			// Next boot: DHCP now hands out the local-boot script.
			res2, err := netboot(t, m)
			if err != nil {
				t.Fatalf("second NetBoot: %v\n%s", err, res2)
			}
			if res2.BootedFrom != BootedFromDisk || !slices.Equal(res2.Stages, []string{"dhcp", "script", "disk"}) ||
				res2.ScriptURL != httpboot.ByMACScriptURL(l.base, mac1.String()) || res2.Provisioned {
				t.Errorf("second boot: %s", res2)
			}
			if installs, wipes, boots := m.Disk.Stats(); installs != 1 || wipes != 0 || boots != 1 {
				t.Errorf("disk stats: %d installs, %d wipes, %d boots", installs, wipes, boots)
			}
			if n := len(l.stages("node1")); n != len(wantServer) {
				t.Errorf("the local boot touched the machine's token routes: %v", l.stages("node1"))
			}
			l.noLeaks(t, res.String(), res2.String())
		})
	}
}

func TestNetBootKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind     render.Kind
		stages   []string
		reported []string
		check    func(t *testing.T, l *lab, inst Installation)
	}{
		{
			kind:     render.KindKickstart,
			stages:   []string{"dhcp", "script", "kernel", "initrd", "config/kickstart", "provisioned"},
			reported: []string{"booting", "installing"},
			check: func(t *testing.T, l *lab, inst Installation) {
				if inst.Configs["kickstart"] != sum(l.rendered(t, "node1", "kickstart")) || inst.TargetDevice != "/dev/sda" ||
					inst.Network.MAC != mac1.String() || inst.Network.DHCP || len(inst.SSHAuthorizedKeys) != 1 {
					t.Errorf("installation %+v", inst)
				}
			},
		},
		{
			kind:     render.KindIgnition,
			stages:   []string{"dhcp", "script", "kernel", "initrd", "image", "config/ignition", "provisioned"},
			reported: []string{"booting"},
			check: func(t *testing.T, l *lab, inst Installation) {
				if inst.Configs["ignition"] != sum(l.rendered(t, "node1", "ignition")) || inst.TargetDevice != "/dev/sda" ||
					inst.ImageSHA256 != sum(l.image) || inst.ImageSize != int64(len(l.image)) || inst.MachineID != "node1" ||
					inst.Files["/etc/hostname"] != "node1.example.com\n" || inst.Network.MAC != mac1.String() || len(inst.SSHAuthorizedKeys) != 1 {
					t.Errorf("installation %+v", inst)
				}
			},
		},
		{
			kind:     render.KindImage,
			stages:   []string{"dhcp", "script", "kernel", "initrd", "config/image.env", "image", "config/meta-data", "config/user-data", "config/network-config", "provisioned"},
			reported: []string{"booting", "writing-image", "image-written"},
			check: func(t *testing.T, l *lab, inst Installation) {
				if inst.Configs["image.env"] != sum(l.rendered(t, "node1", "image.env")) || inst.TargetDevice != "/dev/sda" ||
					inst.ImageSHA256 != sum(l.image) || inst.MachineID != "node1" || inst.InstanceID != "node1" ||
					inst.Network.MAC != mac1.String() {
					t.Errorf("installation %+v", inst)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(string(tc.kind), func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			l.provision("node1", mac1, ip1, tc.kind)
			m := &Machine{MAC: mac1, Arch: iana.EFI_X86_64, DHCPServer: l.dhcpAddr, Logger: l.logger()}
			res, err := netboot(t, m)
			if err != nil {
				t.Fatalf("NetBoot: %v\n%s", err, res)
			}
			if diff := cmp.Diff(tc.stages, res.Stages); diff != "" {
				t.Errorf("stages (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.reported, res.Reported); diff != "" {
				t.Errorf("reported (-want +got):\n%s", diff)
			}
			if !res.Provisioned || res.Installer != string(tc.kind) || !l.machine("node1").provisioned {
				t.Errorf("result %s", res)
			}
			inst, ok := m.Disk.Installed()
			if !ok {
				t.Fatal("nothing installed")
			}
			if inst.Kind != string(tc.kind) || inst.KernelSHA256 != sum(l.kernel) || inst.InitrdSHA256 != sum(l.initrd) ||
				inst.Hostname != "node1.example.com" || !slices.Equal(inst.Network.Addresses, []string{"192.0.2.17/24"}) ||
				inst.Network.Gateway != "192.0.2.1" || !slices.Equal(inst.Network.DNS, []string{"192.0.2.53"}) {
				t.Errorf("installation %+v", inst)
			}
			tc.check(t, l, inst)
			l.noLeaks(t, res.String())
		})
	}
}

// Kind ipxe with a script template that chains the kernel: a live system,
// nothing installed, nothing reported.
func TestNetBootLiveKernel(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	lm := l.provision("node1", mac1, ip1, render.KindIPXE)
	l.mu.Lock()
	lm.vars.Templates = map[string]string{"script.ipxe": "#!ipxe\necho {{ .hostname }}\nchain {{ .urls.kernel }} console=ttyS0\n"}
	l.mu.Unlock()
	m := &Machine{MAC: mac1, DHCPServer: l.dhcpAddr, Logger: l.logger()}
	res, err := netboot(t, m)
	if err != nil {
		t.Fatalf("NetBoot: %v", err)
	}
	if res.BootedFrom != BootedFromNetwork || res.Installer != "" || res.Provisioned ||
		!slices.Equal(res.Stages, []string{"dhcp", "script", "kernel"}) {
		t.Errorf("result %s", res)
	}
	if _, ok := m.Disk.Installed(); ok {
		t.Error("a live system installed something")
	}
}

// Create, destroy (wipe), and the empty disk after it.
func TestNetBootWipe(t *testing.T) {
	t.Parallel()
	for _, fw := range firmwares() {
		t.Run(fw.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			l.provision("node1", mac1, ip1, render.KindCloudInit)
			m := &Machine{MAC: mac1, Arch: fw.arch, DHCPServer: l.dhcpAddr, Logger: l.logger()}
			if res, err := netboot(t, m); err != nil {
				t.Fatalf("install: %v\n%s", err, res)
			}
			l.deprovision("node1")
			res, err := netboot(t, m)
			if err != nil {
				t.Fatalf("wipe: %v\n%s", err, res)
			}
			if res.Installer != InstallerWipe || !res.Provisioned || res.BootedFrom != BootedFromNetwork ||
				!slices.Equal(res.Stages, []string{"dhcp", "script", "kernel", "initrd", "wipe", "provisioned"}) ||
				!slices.Equal(res.Reported, []string{"booting", "wiping", "wiped"}) {
				t.Errorf("wipe result %s", res)
			}
			if _, ok := m.Disk.Installed(); ok {
				t.Error("the disk still holds an installation")
			}
			// Provisioned again (meaning wiped): local boot of an empty disk.
			res, err = netboot(t, m)
			if !errors.Is(err, ErrNoOS) || asStageError(t, err).Stage != StageDisk || res.BootedFrom != BootedFromDisk {
				t.Fatalf("boot after wipe: %v\n%s", err, res)
			}
			if _, wipes, boots := m.Disk.Stats(); wipes != 1 || boots != 0 {
				t.Errorf("disk: %d wipes, %d boots", wipes, boots)
			}
			l.noLeaks(t, res.String(), err.Error())
		})
	}
}

func TestNetBootBadToken(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	lm := l.provision("node1", mac1, ip1, render.KindCloudInit)
	wrong, err := httpboot.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	lm.scriptToken = wrong
	l.mu.Unlock()
	m := &Machine{MAC: mac1, DHCPServer: l.dhcpAddr, Logger: l.logger()}
	res, err := netboot(t, m)
	se := asStageError(t, err)
	if se.Stage != "script" || se.Status != http.StatusForbidden || se.Method != http.MethodGet {
		t.Fatalf("error %v", err)
	}
	if !slices.Equal(res.Stages, []string{"dhcp"}) || res.BootedFrom != "" {
		t.Errorf("result %s", res)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(res.String(), wrong) || strings.Contains(l.mlogs.String(), wrong) {
		t.Errorf("the token leaked: %v / %s", err, res)
	}
	if !strings.Contains(err.Error(), "stage script") || !strings.Contains(err.Error(), "/boot/REDACTED/script.ipxe") {
		t.Errorf("error does not name the stage and redacted URL: %v", err)
	}
}

// A kernel the boot service cannot serve: the rendered script retries five
// times, reports "failed" and reboots; the error names the kernel stage.
func TestNetBootKernelMissing(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	lm := l.provision("node1", mac1, ip1, render.KindCloudInit)
	l.mu.Lock()
	lm.vars.Image.KernelSHA256 = sum([]byte("not in the cache"))
	l.mu.Unlock()
	var (
		mu     sync.Mutex
		sleeps []time.Duration
	)
	m := &Machine{MAC: mac1, DHCPServer: l.dhcpAddr, Logger: l.logger(), Sleep: func(_ context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		sleeps = append(sleeps, d)
		return nil
	}}
	res, err := netboot(t, m)
	if !errors.Is(err, ErrRebooted) {
		t.Fatalf("error %v, want ErrRebooted", err)
	}
	se := asStageError(t, err)
	if se.Stage != "kernel" || se.Status != http.StatusNotFound {
		t.Fatalf("error %v", err)
	}
	if !slices.Equal(res.Reported, []string{"failed"}) || res.BootedFrom != "" {
		t.Errorf("result %s", res)
	}
	kernelTries := 0
	for _, e := range l.eventList("node1") {
		if e.Stage == httpboot.StageKernel && e.Status == http.StatusNotFound {
			kernelTries++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	s5, s60 := 5*time.Second, 60*time.Second
	if kernelTries != 5 || !slices.Equal(sleeps, []time.Duration{s5, s5, s5, s5, s60}) {
		t.Errorf("%d kernel fetches, sleeps %v", kernelTries, sleeps)
	}
}

func TestNetBootUnknownMachine(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	m := &Machine{MAC: mac1, DHCPServer: l.dhcpAddr, DHCPTimeout: 100 * time.Millisecond}
	res, err := netboot(t, m)
	if se := asStageError(t, err); se.Stage != StageDHCP {
		t.Fatalf("error %v", err)
	}
	if len(res.Stages) != 0 || res.LeaseIP.IsValid() {
		t.Errorf("result %s", res)
	}
}

// A network config bound to another NIC would leave the installed system
// offline: the install fails before anything is reported.
func TestNetBootNetworkForAnotherNIC(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	lm := l.provision("node1", mac1, ip1, render.KindCloudInit)
	l.mu.Lock()
	lm.vars.MACs = []string{"52:54:00:aa:bb:99"}
	l.mu.Unlock()
	m := &Machine{MAC: mac1, DHCPServer: l.dhcpAddr}
	res, err := netboot(t, m)
	if se := asStageError(t, err); se.Stage != StageInstall || !strings.Contains(se.Error(), "52:54:00:aa:bb:99") {
		t.Fatalf("error %v", err)
	}
	if res.Provisioned || l.machine("node1").provisioned {
		t.Error("provisioned anyway")
	}
}

// The machine keeps working through the boot service's AllowedSources: a
// token bound to another address is refused like a bad token.
func TestNetBootSourceBinding(t *testing.T) {
	t.Parallel()
	if !canBind(ip1) {
		t.Skip("this host cannot bind 127.0.0.42")
	}
	l := newLab(t)
	lm := l.provision("node1", mac1, ip1, render.KindCloudInit)
	l.mu.Lock()
	lm.allowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.43/32")}
	l.mu.Unlock()
	m := &Machine{MAC: mac1, DHCPServer: l.dhcpAddr}
	_, err := netboot(t, m)
	if se := asStageError(t, err); se.Stage != "script" || se.Status != http.StatusForbidden {
		t.Fatalf("error %v", err)
	}
}
