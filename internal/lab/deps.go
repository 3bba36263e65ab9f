package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Host files the lab is built from, all from Debian packages.
var (
	// OVMFCode and OVMFVars are UEFI firmware (package ovmf).
	OVMFCode = "/usr/share/OVMF/OVMF_CODE.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS.fd"
	// IPXEDir holds undionly.kpxe and ipxe.efi (package ipxe, a dependency
	// of ipxe-qemu), for the boot service's TFTP and HTTP binaries.
	IPXEDir = "/usr/lib/ipxe"
	// BusyboxStatic is the installer's userland (package busybox-static).
	BusyboxStatic = "/bin/busybox"
	// SyslinuxMBR, SyslinuxModules: BIOS disk boot (packages syslinux,
	// syslinux-common).
	SyslinuxMBR = "/usr/lib/syslinux/mbr/mbr.bin"
	// SystemdBootEFI boots the disk under UEFI (package systemd-boot-efi).
	SystemdBootEFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
)

// Requirement is something the lab needs from the host and the Debian
// package that provides it.
type Requirement struct {
	What    string // a command name or an absolute path
	Package string
}

// Requirements lists what the lab needs. Commands are looked up on PATH.
func Requirements() []Requirement {
	return []Requirement{
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"qemu-img", "qemu-utils"},
		{"/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"},
		{IPXEDir + "/ipxe.efi", "ipxe"},
		{OVMFCode, "ovmf"},
		{OVMFVars, "ovmf"},
		{BusyboxStatic, "busybox-static"},
		{"/boot/vmlinuz-*", "linux-image-amd64"},
		{"mkfs.vfat", "dosfstools"},
		{"mcopy", "mtools"},
		{"syslinux", "syslinux"},
		{SyslinuxMBR, "syslinux-common"},
		{SystemdBootEFI, "systemd-boot-efi"},
		{"ip", "iproute2"},
	}
}

// Packages lists the Debian packages behind Requirements.
func Packages() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range Requirements() {
		if !seen[r.Package] {
			seen[r.Package] = true
			out = append(out, r.Package)
		}
	}
	sort.Strings(out)
	return out
}

// present reports whether a requirement is met.
func (r Requirement) present() bool {
	if !strings.HasPrefix(r.What, "/") {
		_, err := exec.LookPath(r.What)
		return err == nil
	}
	m, _ := filepath.Glob(r.What)
	return len(m) > 0
}

// Missing returns the unmet requirements.
func Missing() []Requirement {
	var out []Requirement
	for _, r := range Requirements() {
		if !r.present() {
			out = append(out, r)
		}
	}
	return out
}

// MissingPackages names the Debian packages that would meet Missing().
func MissingPackages() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range Missing() {
		if !seen[r.Package] {
			seen[r.Package] = true
			out = append(out, r.Package)
		}
	}
	sort.Strings(out)
	return out
}

// InstallCommand is the apt-get line that installs pkgs.
func InstallCommand(pkgs []string) string {
	return "apt-get update && apt-get install -y --no-install-recommends " + strings.Join(pkgs, " ")
}

// EnsurePackages installs missing Debian packages with apt-get (root only).
// out receives apt's output.
func EnsurePackages(ctx context.Context, out *os.File) error {
	pkgs := MissingPackages()
	if len(pkgs) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the lab needs Debian packages %s: run as root, or install them with: %s", strings.Join(pkgs, " "), InstallCommand(pkgs))
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("the lab needs Debian packages %s and apt-get is not available", strings.Join(pkgs, " "))
	}
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w", args[0], err)
		}
	}
	if m := MissingPackages(); len(m) > 0 {
		return fmt.Errorf("still missing after apt-get install: %s", strings.Join(m, " "))
	}
	return nil
}

// ErrNotRoot means the lab needs root (network namespaces, taps, raw
// sockets, port 67).
var ErrNotRoot = errors.New("the VM lab needs root: network namespaces, tap devices and the boot service's DHCP port")
