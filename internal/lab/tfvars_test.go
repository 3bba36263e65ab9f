package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// terraform.tfvars.json carries the provider's boot_service, the OS image
// with its files' sums, and each machine's BMC.
func TestWriteTFVars(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	inst := &Installer{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"), Image: filepath.Join(dir, "disk.raw")}
	for _, f := range []string{inst.Kernel, inst.Initrd, inst.Image} {
		if err := os.WriteFile(f, []byte(filepath.Base(f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Dir: dir, BIOS: 1, UEFI: 1}.withDefaults()
	r := &Running{Config: cfg}
	for i, p := range cfg.Machines() {
		vm, err := NewVM(VMConfig{Name: p.Name, Firmware: p.Firmware, MAC: p.MAC, UUID: p.UUID, Tap: p.Tap, Disk: filepath.Join(dir, p.Name+".raw"), Dir: filepath.Join(dir, "vms", p.Name), Accel: "tcg"})
		if err != nil {
			t.Fatal(err)
		}
		r.Machines = append(r.Machines, &Machine{MachinePlan: p, VM: vm, SystemID: p.Name, Endpoint: "https://127.0.0.1:" + string(rune('1'+i)) + "443"})
	}
	if err := r.Manifest(inst).WriteTFVars(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, TFVarsFile))
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Lab TFLab }
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	v := got.Lab
	sum := sha256.Sum256([]byte("initrd"))
	if v.OSImage.Install != "image" || v.OSImage.Initrd.URL != "file://"+inst.Initrd || v.OSImage.Initrd.SHA256 != hex.EncodeToString(sum[:]) ||
		v.OSImage.Image.SHA256 == "" || v.OSImage.Kernel.SHA256 == "" || v.OSImage.RootDevice != "/dev/vda" || len(v.OSImage.KernelArgs) == 0 {
		t.Errorf("os_image: %+v", v.OSImage)
	}
	bs := v.BootService
	if bs.Address != "10.99.0.1" || bs.Interface != "br-lab" || bs.HTTPListen != "10.99.0.1:8080" || bs.StateDir != filepath.Join(dir, "state") ||
		bs.DHCP != (TFDHCP{Mode: "authoritative", Listen: "0.0.0.0:67", Subnet: "10.99.0.0/24", RangeStart: "10.99.0.100", RangeEnd: "10.99.0.199"}) {
		t.Errorf("boot_service: %+v", bs)
	}
	if v.Namespace != "metal-lab" || v.BMCCAFile != filepath.Join(dir, "bmc-ca.pem") || v.BMCUsername != "admin" || v.BMCPassword != "password" {
		t.Errorf("lab: %+v", v)
	}
	if len(v.Machines) != 2 || v.Machines["bios-0"].Firmware != BIOS || v.Machines["uefi-0"].Firmware != UEFI ||
		v.Machines["uefi-0"].Endpoint != "https://127.0.0.1:2443" || v.Machines["bios-0"].SystemID != "bios-0" || v.Machines["bios-0"].MAC == "" {
		t.Errorf("machines: %+v", v.Machines)
	}
	if err := os.Remove(inst.Image); err != nil {
		t.Fatal(err)
	}
	if err := r.Manifest(inst).WriteTFVars(dir); err == nil {
		t.Error("a missing installer file was not reported")
	}
}
