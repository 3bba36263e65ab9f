package lab

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The archive is one the kernel (and cpio(1)) unpacks.
func TestWriteCPIO(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	var buf bytes.Buffer
	err := writeCPIO(&buf, []cpioEntry{
		{Name: "etc", Mode: modeDir | 0o755},
		{Name: "etc/hello", Mode: modeFile | 0o644, Data: []byte("hi\n")},
		{Name: "bin/sh", Mode: 0o120000 | 0o777, Data: []byte("busybox")},
		{Name: "bin", Mode: modeDir | 0o755},
		{Name: "odd", Mode: modeFile | 0o600, Data: []byte("12345")},
	})
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idm", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v %s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/hello")); string(b) != "hi\n" {
		t.Fatalf("etc/hello = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "odd")); string(b) != "12345" {
		t.Fatalf("odd = %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "bin/sh")); l != "busybox" {
		t.Fatalf("bin/sh -> %q", l)
	}
}

func TestModuleOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dep := "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n" +
		"kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n" +
		"kernel/net/core/failover.ko:\n" +
		"kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko\n" +
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n"
	_ = os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/virtio/virtio.ko\n"), 0o644)
	got, err := moduleOrder(dir, []string{"virtio", "virtio_pci", "virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	want := "kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci.ko kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko kernel/drivers/net/virtio_net.ko"
	if strings.Join(got, " ") != want {
		t.Fatalf("order\n got %v\nwant %s", got, want)
	}
	if _, err := moduleOrder(dir, []string{"nosuch"}); err == nil {
		t.Fatal("unknown module accepted")
	}
}

// The real build, from the host's Debian packages (skipped without them).
func TestBuildInstaller(t *testing.T) {
	t.Parallel()
	if miss := MissingPackages(); len(miss) > 0 {
		t.Skipf("Debian packages missing: %s", InstallCommand(miss))
	}
	dir := t.TempDir()
	inst, err := BuildInstaller(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := BuildInstaller(dir)
	if err != nil || *again != *inst {
		t.Fatalf("second build: %+v %v, want the cached %+v", again, err, inst)
	}

	// The initramfs: init, busybox, the udhcpc hook and the drivers in
	// load order.
	f, err := os.Open(inst.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	for _, want := range []string{"init\x00", "bin/busybox\x00", "etc/udhcpc.script\x00", "lib/modules/virtio_net.ko\x00", "lib/modules/failover.ko\x00", "lib/modules/virtio_blk.ko\x00", "lib/modules/vfat.ko\x00", "lib/modules/fat.ko\x00", "lib/modules/nls_cp437.ko\x00", "etc/metal-modules\x00"} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("initramfs lacks %q", strings.TrimSuffix(want, "\x00"))
		}
	}
	if i, j := bytes.Index(raw, []byte("failover\nnet_failover\n")), bytes.Index(raw, []byte("virtio_net\n")); i < 0 || j < i {
		t.Errorf("module order: failover, net_failover must precede virtio_net")
	}

	// The disk image: an MBR with one active FAT16 partition at 1 MiB
	// holding both boot loaders and their configuration.
	img, err := os.ReadFile(inst.Image)
	if err != nil {
		t.Fatal(err)
	}
	if img[510] != 0x55 || img[511] != 0xaa || img[446] != 0x80 || img[450] != 0x0e {
		t.Fatalf("MBR: signature % x, entry % x", img[510:512], img[446:462])
	}
	// The partition is AgentRoomMiB larger than the image, which ends with
	// the last allocated cluster.
	need, err := DiskSizeMiB(inst.Image)
	if err != nil {
		t.Fatal(err)
	}
	if need < int64(len(img)>>20)+AgentRoomMiB || need > int64(Config{}.withDefaults().DiskMiB) {
		t.Errorf("the image (%d bytes) needs %d MiB disks; want %d MiB of room for the agent, within the default disk", len(img), need, AgentRoomMiB)
	}
	if end, err := fatHighWater(inst.Image, 1<<20); err != nil || end > int64(len(img)) || int64(len(img))-end >= 1<<20 {
		t.Errorf("the last allocated cluster ends at %d (%v); the image is %d bytes", end, err, len(img))
	}
	part := inst.Image + "@@1048576"
	for _, c := range []struct{ path, want string }{
		{"::/syslinux.cfg", "metal.mode=installed"},
		{"::/loader/entries/metal.conf", "metal.mode=installed"},
		{"::/loader/loader.conf", "timeout 0"},
		{"::/metal-image", "composable-metal lab image"},
	} {
		cmd := exec.Command("mtype", "-i", part, c.path)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: %v %q", c.path, err, out)
		}
	}
	cmd := exec.Command("mdir", "-a", "-b", "-i", part, "::/", "::/EFI/BOOT")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	for _, want := range []string{"VMLINUZ", "INITRD.IMG", "LDLINUX.SYS", "BOOTX64.EFI"} {
		if !strings.Contains(strings.ToUpper(string(out)), want) {
			t.Errorf("partition lacks %s: %v\n%s", want, err, out)
		}
	}
}
