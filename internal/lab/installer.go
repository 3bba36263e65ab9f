package lab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed installer/init.sh
var initScript []byte

//go:embed installer/udhcpc.script
var udhcpcScript []byte

// builderVersion changes whenever the build recipe does, so cached
// builds from an older recipe are not reused.
const builderVersion = "lab-installer-4"

// installerModules are the drivers the installer loads (with their
// dependencies) before DHCP: Debian builds them as modules. vfat and its
// code pages mount the image's partition, where the installer puts the
// role agent and the installed system runs it (the kernel cannot load
// the code pages itself: there is no modprobe).
var installerModules = []string{"virtio_pci", "virtio_net", "virtio_blk", "e1000", "nls_cp437", "nls_ascii", "nls_utf8", "vfat"}

// Installer is the lab's OS image: the kernel and initramfs that iPXE
// boots to install, and the disk image they write.
type Installer struct {
	// Kernel is the Debian kernel (bzImage with an EFI stub).
	Kernel string
	// Initrd is the busybox initramfs (cpio.gz) that installs, wipes, or
	// acts as the installed system (see installer/init.sh).
	Initrd string
	// Image is the raw disk image written to the machines: an MBR with
	// syslinux's boot code and one active FAT partition holding syslinux
	// (BIOS), systemd-boot (UEFI, \EFI\BOOT\BOOTX64.EFI), the kernel and
	// the initramfs started with metal.mode=installed.
	Image string
	// KernelVersion is the /lib/modules directory name.
	KernelVersion string
}

// KernelArgs are the image's extra kernel arguments for the lab: a serial
// console, quiet boot (printk on an emulated UART is slow under TCG) and
// panic=-1, which with QEMU's -no-reboot turns a failed install into an
// immediate exit instead of a hang.
var KernelArgs = []string{"console=ttyS0,115200n8", "quiet", "loglevel=3", "panic=-1"}

// findKernel picks the newest /boot/vmlinuz-* that has modules.
func findKernel() (path, version string, err error) {
	m, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Strings(m)
	for i := len(m) - 1; i >= 0; i-- {
		v := strings.TrimPrefix(filepath.Base(m[i]), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err == nil {
			return m[i], v, nil
		}
	}
	return "", "", fmt.Errorf("no /boot/vmlinuz-* with modules in /lib/modules: install linux-image-amd64")
}

// BuildInstaller builds (or reuses from dir) the installer and the disk
// image. The cache key covers the recipe, the scripts and the host files
// used, so a kernel or busybox upgrade rebuilds.
func BuildInstaller(dir string) (*Installer, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	kernel, kver, err := findKernel()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%s\x00%s\x00", builderVersion, kver)
	h.Write(initScript)
	h.Write(udhcpcScript)
	for _, f := range []string{kernel, BusyboxStatic, SyslinuxMBR, SystemdBootEFI} {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("installer input: %w", err)
		}
		_, _ = fmt.Fprintf(h, "%s\x00%d\x00%d\x00", f, fi.Size(), fi.ModTime().UnixNano())
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	out := filepath.Join(dir, "installer", key)
	inst := &Installer{
		Kernel:        filepath.Join(out, "vmlinuz"),
		Initrd:        filepath.Join(out, "initrd.img"),
		Image:         filepath.Join(out, "disk.img"),
		KernelVersion: kver,
	}
	if _, err := os.Stat(filepath.Join(out, "done")); err == nil {
		return inst, nil
	}
	tmp := out + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if err := copyFile(kernel, filepath.Join(tmp, "vmlinuz")); err != nil {
		return nil, err
	}
	if err := buildInitramfs(filepath.Join(tmp, "initrd.img"), kver); err != nil {
		return nil, fmt.Errorf("building the installer initramfs: %w", err)
	}
	if err := buildDiskImage(filepath.Join(tmp, "disk.img"), filepath.Join(tmp, "vmlinuz"), filepath.Join(tmp, "initrd.img"), key); err != nil {
		return nil, fmt.Errorf("building the disk image: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "done"), []byte(key+"\n"), 0o644); err != nil {
		return nil, err
	}
	_ = os.RemoveAll(out)
	if err := os.Rename(tmp, out); err != nil {
		return nil, err
	}
	return inst, nil
}

// moduleOrder resolves names (e.g. "virtio_net") to module files in load
// order, dependencies first, from modules.dep.
func moduleOrder(modDir string, names []string) ([]string, error) {
	f, err := os.Open(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	deps := map[string][]string{} // relative path -> deps
	byName := map[string]string{} // module name -> relative path
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		base := strings.TrimSuffix(filepath.Base(mod), filepath.Ext(mod))
		base = strings.TrimSuffix(base, ".ko")
		byName[strings.ReplaceAll(base, "-", "_")] = mod
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var order []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(m string) {
		if seen[m] {
			return
		}
		seen[m] = true
		for _, d := range deps[m] {
			visit(d)
		}
		order = append(order, m)
	}
	for _, n := range names {
		m, ok := byName[n]
		if !ok {
			// Built into the kernel: nothing to load.
			if builtin, _ := os.ReadFile(filepath.Join(modDir, "modules.builtin")); bytes.Contains(builtin, []byte("/"+n+".ko")) {
				continue
			}
			return nil, fmt.Errorf("module %s is neither in modules.dep nor built in", n)
		}
		visit(m)
	}
	return order, nil
}

func buildInitramfs(dst, kver string) error {
	modDir := filepath.Join("/lib/modules", kver)
	mods, err := moduleOrder(modDir, installerModules)
	if err != nil {
		return err
	}
	bb, err := os.ReadFile(BusyboxStatic)
	if err != nil {
		return err
	}
	entries := []cpioEntry{
		{Name: "bin", Mode: modeDir | 0o755}, {Name: "sbin", Mode: modeDir | 0o755},
		{Name: "dev", Mode: modeDir | 0o755}, {Name: "proc", Mode: modeDir | 0o755},
		{Name: "sys", Mode: modeDir | 0o755}, {Name: "tmp", Mode: modeDir | 0o1777},
		{Name: "run", Mode: modeDir | 0o755}, {Name: "etc", Mode: modeDir | 0o755},
		{Name: "lib", Mode: modeDir | 0o755}, {Name: "lib/modules", Mode: modeDir | 0o755},
		{Name: "dev/console", Mode: modeChar | 0o600, RdevMajor: 5, RdevMinor: 1},
		{Name: "dev/null", Mode: modeChar | 0o666, RdevMajor: 1, RdevMinor: 3},
		{Name: "bin/busybox", Mode: modeFile | 0o755, Data: bb},
		{Name: "bin/sh", Mode: 0o120000 | 0o777, Data: []byte("busybox")},
		{Name: "init", Mode: modeFile | 0o755, Data: initScript},
		{Name: "etc/udhcpc.script", Mode: modeFile | 0o755, Data: udhcpcScript},
	}
	var list strings.Builder
	for _, m := range mods {
		data, err := os.ReadFile(filepath.Join(modDir, m))
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(m), ".ko")
		entries = append(entries, cpioEntry{Name: "lib/modules/" + name + ".ko", Mode: modeFile | 0o644, Data: data})
		list.WriteString(name + "\n")
	}
	entries = append(entries, cpioEntry{Name: "etc/metal-modules", Mode: modeFile | 0o644, Data: []byte(list.String())})
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if err := writeCPIO(f, entries); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// run runs a command and includes its output in the error.
func run(name string, args ...string) error {
	out, err := exec.CommandContext(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
