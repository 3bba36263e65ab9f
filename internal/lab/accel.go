package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ProbeTimeout bounds the KVM probe: a working KVM boots the probe to
// userspace in a second or two, TCG in about 8s; a broken nested KVM hangs.
var ProbeTimeout = 15 * time.Second

// Accel returns the accelerator for the lab's VMs: METAL_LAB_ACCEL when set
// ("kvm" or "tcg"), else the cached result of ProbeKVM in dir, else a fresh
// probe.
//
// /dev/kvm can exist and still not work (a nested CPU without vmx/svm:
// "-cpu host" aborts and the default CPU hangs once the kernel runs), so
// the probe boots the installer kernel with metal.probe=1 under KVM and
// waits for its marker.
func Accel(dir string, inst *Installer) (string, error) {
	if a := os.Getenv("METAL_LAB_ACCEL"); a != "" {
		if a != "kvm" && a != "tcg" {
			return "", fmt.Errorf("METAL_LAB_ACCEL=%q: want kvm or tcg", a)
		}
		return a, nil
	}
	cache := filepath.Join(dir, "accel")
	key := inst.KernelVersion + " " + qemuVersion()
	if b, err := os.ReadFile(cache); err == nil {
		if k, a, ok := strings.Cut(strings.TrimSpace(string(b)), "\t"); ok && k == key {
			return a, nil
		}
	}
	a := "tcg"
	if ProbeKVM(context.Background(), inst) {
		a = "kvm"
	}
	_ = os.MkdirAll(dir, 0o755)
	_ = os.WriteFile(cache, []byte(key+"\t"+a+"\n"), 0o644)
	return a, nil
}

func qemuVersion() string {
	out, _ := exec.CommandContext(context.Background(), "qemu-system-x86_64", "--version").Output()
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

// ProbeKVM reports whether a KVM guest boots the installer kernel to its
// userspace within ProbeTimeout.
func ProbeKVM(ctx context.Context, inst *Installer) bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	_ = f.Close()
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-machine", "q35,accel=kvm", "-m", "256", "-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-nic", "none", "-no-reboot",
		"-kernel", inst.Kernel, "-initrd", inst.Initrd, "-append", "console=ttyS0 quiet panic=-1 metal.probe=1")
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run()
	return bytes.Contains(out.Bytes(), []byte("METAL-PROBE-OK"))
}
