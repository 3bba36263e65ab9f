package lab

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

func TestVMArgs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := os.Stat(OVMFVars); err != nil {
		t.Skip("ovmf not installed")
	}
	vm, err := NewVM(VMConfig{Name: "uefi-0", Firmware: UEFI, MAC: "52:54:00:99:02:00", UUID: "e774879e-28fa-56ad-a99c-84dd19da8aeb",
		Tap: "tap-uefi-0", Disk: "/d/disk.raw", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "OVMF_VARS.fd")); err != nil {
		t.Fatalf("no per-VM UEFI variable store: %v", err)
	}
	net := strings.Join(vm.Args(true, true), " ")
	for _, want := range []string{
		"-machine q35,accel=tcg", "-m 512",
		"-netdev tap,id=net0,ifname=tap-uefi-0,script=no,downscript=no",
		"-device virtio-net-pci,netdev=net0,mac=52:54:00:99:02:00,bootindex=1",
		"-device virtio-blk-pci,drive=disk0,bootindex=2",
		"-uuid e774879e-28fa-56ad-a99c-84dd19da8aeb",
		"if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"if=pflash,format=raw,unit=1,file=" + filepath.Join(dir, "OVMF_VARS.fd"),
		"-qmp unix:" + filepath.Join(dir, "qmp.sock") + ",server=on,wait=off",
		"-no-reboot",
	} {
		if !strings.Contains(net, want) {
			t.Errorf("network-first args lack %q:\n%s", want, net)
		}
	}
	disk := strings.Join(vm.Args(false, false), " ")
	if !strings.Contains(disk, "mac=52:54:00:99:02:00,bootindex=2") || !strings.Contains(disk, "drive=disk0,bootindex=1") || strings.Contains(disk, "-no-reboot") {
		t.Errorf("disk-first args:\n%s", disk)
	}
	bios, _ := NewVM(VMConfig{Name: "bios-0", MAC: "52:54:00:99:01:00", Tap: "t", Disk: "/d", Dir: t.TempDir(), Accel: "kvm", NIC: "e1000"})
	b := strings.Join(bios.Args(true, false), " ")
	if strings.Contains(b, "pflash") || !strings.Contains(b, "accel=kvm") || !strings.Contains(b, "-device e1000,netdev=net0") {
		t.Errorf("BIOS args:\n%s", b)
	}
	if _, err := NewVM(VMConfig{Name: "x", Firmware: "coreboot", MAC: "m", Tap: "t", Disk: "d", Dir: t.TempDir()}); err == nil {
		t.Error("unknown firmware accepted")
	}
}

func newFakeVM(t *testing.T, fw Firmware) *VM {
	t.Helper()
	if fw == UEFI {
		if _, err := os.Stat(OVMFVars); err != nil {
			t.Skip("ovmf not installed")
		}
	}
	vm, err := NewVM(VMConfig{Name: "vm", Firmware: fw, MAC: "52:54:00:99:01:00", Tap: "tap0", Disk: "/dev/null",
		Dir: t.TempDir(), QEMU: fakeQEMUScript(t), GracefulTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Close() })
	return vm
}

func waitStatus(t *testing.T, vm *VM, state string, boots uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := vm.Status()
		if st.State == state && st.Boots == boots {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v, want %s with %d boots (history %+v)", st, state, boots, vm.History())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func reset(t *testing.T, vm *VM, rt string) {
	t.Helper()
	if err := vm.Reset(context.Background(), rt); err != nil {
		t.Fatalf("%s: %v", rt, err)
	}
}

// The power and boot-order state machine against a fake QEMU.
func TestVMPowerAndBootOrder(t *testing.T) {
	t.Parallel()
	vm := newFakeVM(t, BIOS)
	waitStatus(t, vm, bmcsim.PowerOff, 0)

	// A one-time PXE boot: NIC first with -no-reboot; the guest's reboot
	// ends QEMU and the VM comes back from the disk, inside QEMU's own
	// reboots from then on.
	if err := os.WriteFile(filepath.Join(vm.cfg.Dir, "fake-reboot-after"), []byte("150"), 0o644); err != nil {
		t.Fatal(err)
	}
	vm.SetBootOverride(bmcsim.BootOverride{Target: "Pxe", Enabled: "Once", Mode: "Legacy"})
	reset(t, vm, "On")
	waitStatus(t, vm, bmcsim.PowerOn, 2)
	h := vm.History()
	if len(h) != 2 || !h[0].NetworkFirst || !h[0].NoReboot || h[1].NetworkFirst || h[1].NoReboot {
		t.Fatalf("starts %+v: want network-first once, then disk-first", h)
	}

	// Same order: a warm reset inside QEMU, no new process.
	reset(t, vm, "ForceRestart")
	waitStatus(t, vm, bmcsim.PowerOn, 3)
	if n := len(vm.History()); n != 2 {
		t.Fatalf("a same-order restart started a new QEMU (%d starts)", n)
	}

	// A new one-time override changes the order: a new process.
	vm.SetBootOverride(bmcsim.BootOverride{Target: "Pxe", Enabled: "Once"})
	reset(t, vm, "ForceRestart")
	waitStatus(t, vm, bmcsim.PowerOn, 4)
	if h := vm.History(); len(h) != 3 || !h[2].NetworkFirst {
		t.Fatalf("starts %+v: want a third, network-first start", h)
	}

	// ACPI power-off by a guest that handles it.
	reset(t, vm, "GracefulShutdown")
	waitStatus(t, vm, bmcsim.PowerOff, 4)

	// A guest that ignores ACPI loses power after GracefulTimeout.
	if err := os.WriteFile(filepath.Join(vm.cfg.Dir, "fake-ignore-acpi"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	reset(t, vm, "On")
	waitStatus(t, vm, bmcsim.PowerOn, 5)
	if h := vm.History(); h[len(h)-1].NetworkFirst {
		t.Fatal("the consumed override was used again")
	}
	start := time.Now()
	reset(t, vm, "GracefulShutdown")
	if vm.Status().State != bmcsim.PowerOn {
		t.Fatal("power went off before the guest had its chance")
	}
	waitStatus(t, vm, bmcsim.PowerOff, 5)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("power cut after %s, before GracefulTimeout", d)
	}

	// ForceOff is immediate; a continuous override stays.
	vm.SetBootOverride(bmcsim.BootOverride{Target: "Pxe", Enabled: "Continuous"})
	reset(t, vm, "On")
	waitStatus(t, vm, bmcsim.PowerOn, 6)
	reset(t, vm, "ForceOff")
	if vm.Status().State != bmcsim.PowerOff || vm.Running() {
		t.Fatal("ForceOff did not stop QEMU at once")
	}
	reset(t, vm, "On")
	waitStatus(t, vm, bmcsim.PowerOn, 7)
	h = vm.History()
	if last := h[len(h)-1]; !last.NetworkFirst || last.NoReboot {
		t.Fatalf("continuous override start %+v: want network first, guest reboots inside QEMU", last)
	}
	if err := vm.Reset(context.Background(), "Bogus"); err == nil {
		t.Fatal("unknown reset type accepted")
	}
	_ = vm.Close()
	if vm.Running() || vm.Reset(context.Background(), "On") == nil {
		t.Fatal("a closed VM must stay off")
	}
}

// Through the BMC simulator and the engine: the one-time PXE override
// reaches the VM before power-on.
func TestVMBehindBMCSimulator(t *testing.T) {
	t.Parallel()
	vm := newFakeVM(t, BIOS)
	sim := bmcsim.New(bmcsim.Options{Systems: []bmcsim.SystemSpec{{ID: "bios-0", BootMode: "Legacy", NICs: []bmcsim.NIC{{MAC: "52:54:00:99:01:00", LinkUp: true}}, Power: vm}}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, ca, err := sim.StartTLS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bmc := engine.BMC{Endpoint: url, Username: "admin", Password: "password", CACertificate: string(ca)}
	e := engine.NewEmbedded(engine.Config{PollInterval: 20 * time.Millisecond})
	if err := e.BootOnce(ctx, bmc, engine.BootOverride{Target: engine.BootPxe, Mode: engine.BootModeLegacy}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, vm, bmcsim.PowerOn, 1)
	if h := vm.History(); len(h) != 1 || !h[0].NetworkFirst || !h[0].NoReboot {
		t.Fatalf("starts %+v: want one network-first start", h)
	}
	st, _ := sim.System("bios-0")
	if st.BootEnabled != "Disabled" || !slices.Equal(st.Resets, []string{"On"}) {
		t.Fatalf("simulator after the boot: %+v", st)
	}
	inv, err := e.SetPower(ctx, bmc, engine.PowerOff, engine.PowerOptions{ForceOff: true})
	if err != nil || inv.PowerState != engine.PowerOff || vm.Running() {
		t.Fatalf("power off: %+v %v (running %v)", inv, err, vm.Running())
	}
}
