package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	partStartSector = 2048 // 1 MiB alignment
	sectorSize      = 512
)

// AgentRoomMiB is the free space the image's file system keeps beyond its
// boot files, for the role agent the installer adds (the provider binary,
// 30-45 MiB) and the files of its roles.
const AgentRoomMiB = 80

// buildDiskImage writes the OS image the installer puts on disks: sector 0
// is syslinux's MBR boot code with one active FAT16 partition at 1 MiB; the
// partition holds syslinux (VBR + ldlinux.sys, for BIOS), systemd-boot as
// \EFI\BOOT\BOOTX64.EFI (for UEFI), the kernel, the initramfs and a marker
// file. Both boot loaders start the kernel with metal.mode=installed. It is
// built without mounting anything: mkfs.vfat --offset, syslinux --offset and
// mtools.
//
// The partition and its file system are AgentRoomMiB larger than the image
// file, which ends after the last allocated cluster: the free clusters are
// not shipped (a FAT file system does not care what they hold), so the
// image stays small while the installed system has room for the agent and
// its roles' files. Disks must hold the whole partition (DiskSizeMiB).
func buildDiskImage(dst, kernel, initrd, id string) error {
	var payload int64
	for _, f := range []string{kernel, initrd, SystemdBootEFI} {
		fi, err := os.Stat(f)
		if err != nil {
			return err
		}
		payload += fi.Size()
	}
	usedMiB := max((payload>>20)+4, 16)
	partMiB := usedMiB + AgentRoomMiB
	partSectors := partMiB << 20 / sectorSize
	total := int64(partStartSector)*sectorSize + partMiB<<20
	if err := os.WriteFile(dst, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(dst, total); err != nil {
		return err
	}
	if err := run("mkfs.vfat", "-F", "16", "-n", "METALOS", "-i", "4d45544c",
		"--offset", strconv.Itoa(partStartSector), "-h", strconv.Itoa(partStartSector),
		dst, strconv.FormatInt(partMiB<<10, 10)); err != nil {
		return err
	}
	off := strconv.Itoa(partStartSector * sectorSize)
	if err := run("syslinux", "--offset", off, "--install", dst); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "metal-lab-image-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	cmdline := "console=ttyS0,115200n8 quiet loglevel=3 panic=-1 metal.mode=installed"
	files := map[string]string{
		"syslinux.cfg": "DEFAULT metal\nPROMPT 0\nTIMEOUT 0\nLABEL metal\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND " + cmdline + "\n",
		"loader.conf":  "default metal.conf\ntimeout 0\n",
		"metal.conf":   "title composable-metal lab OS\nlinux /vmlinuz\ninitrd /initrd.img\noptions " + cmdline + "\n",
		"metal-image":  "composable-metal lab image " + id + "\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	img := dst + "@@" + off
	env := []string{"MTOOLS_SKIP_CHECK=1"}
	for _, dir := range []string{"::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries"} {
		if err := runEnv(env, "mmd", "-i", img, dir); err != nil {
			return err
		}
	}
	for src, to := range map[string]string{
		kernel:                             "::/vmlinuz",
		initrd:                             "::/initrd.img",
		SystemdBootEFI:                     "::/EFI/BOOT/BOOTX64.EFI",
		filepath.Join(tmp, "syslinux.cfg"): "::/syslinux.cfg",
		filepath.Join(tmp, "loader.conf"):  "::/loader/loader.conf",
		filepath.Join(tmp, "metal.conf"):   "::/loader/entries/metal.conf",
		filepath.Join(tmp, "metal-image"):  "::/metal-image",
	} {
		if err := runEnv(env, "mcopy", "-i", img, src, to); err != nil {
			return err
		}
	}
	if err := writeMBR(dst, partStartSector, uint32(partSectors)); err != nil {
		return err
	}
	// Cut the free tail off: the image ends with the last allocated
	// cluster (mtools allocates from the start), rounded up to a MiB.
	end, err := fatHighWater(dst, int64(partStartSector)*sectorSize)
	if err != nil {
		return err
	}
	size := (end + 1<<20 - 1) &^ (1<<20 - 1)
	if limit := int64(partStartSector)*sectorSize + usedMiB<<20; size > limit {
		return fmt.Errorf("the image's files end at byte %d, beyond the %d MiB planned for them", end, usedMiB)
	}
	return os.Truncate(dst, size)
}

// DiskSizeMiB is how large a disk the lab image needs: the MBR gap and the
// whole partition.
func DiskSizeMiB(image string) (int64, error) {
	f, err := os.Open(image)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	mbr := make([]byte, sectorSize)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return 0, fmt.Errorf("%s: %w", image, err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return 0, fmt.Errorf("%s has no MBR", image)
	}
	e := mbr[446:462]
	end := (int64(binary.LittleEndian.Uint32(e[8:])) + int64(binary.LittleEndian.Uint32(e[12:]))) * sectorSize
	return (end + 1<<20 - 1) >> 20, nil
}

// fatHighWater reads the FAT16 file system at byte off of path and returns
// the offset in path just after its last allocated cluster (or after the
// root directory when no cluster is allocated).
func fatHighWater(path string, off int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	bs := make([]byte, sectorSize)
	if _, err := f.ReadAt(bs, off); err != nil {
		return 0, err
	}
	bytesPerSec := int64(binary.LittleEndian.Uint16(bs[11:]))
	secPerClus := int64(bs[13])
	reserved := int64(binary.LittleEndian.Uint16(bs[14:]))
	fats := int64(bs[16])
	rootEntries := int64(binary.LittleEndian.Uint16(bs[17:]))
	fatSectors := int64(binary.LittleEndian.Uint16(bs[22:]))
	if bytesPerSec == 0 || secPerClus == 0 || fats == 0 || fatSectors == 0 || bs[510] != 0x55 || bs[511] != 0xaa {
		return 0, fmt.Errorf("%s: no FAT16 file system at byte %d", path, off)
	}
	fat := make([]byte, fatSectors*bytesPerSec)
	if _, err := f.ReadAt(fat, off+reserved*bytesPerSec); err != nil {
		return 0, err
	}
	last := int64(1) // clusters 0 and 1 are reserved
	for c := int64(len(fat)/2) - 1; c >= 2; c-- {
		if binary.LittleEndian.Uint16(fat[2*c:]) != 0 {
			last = c
			break
		}
	}
	firstData := reserved + fats*fatSectors + (rootEntries*32+bytesPerSec-1)/bytesPerSec
	return off + (firstData+(last-1)*secPerClus)*bytesPerSec, nil
}

// writeMBR puts syslinux's MBR code and a one-entry partition table (active,
// type 0x0e FAT16 LBA) into sector 0.
func writeMBR(path string, start, sectors uint32) error {
	code, err := os.ReadFile(SyslinuxMBR)
	if err != nil {
		return err
	}
	if len(code) > 440 {
		return fmt.Errorf("%s is %d bytes, more than the 440 of MBR code", SyslinuxMBR, len(code))
	}
	mbr := make([]byte, sectorSize)
	copy(mbr, code)
	binary.LittleEndian.PutUint32(mbr[440:], 0x4d45544c) // disk signature
	e := mbr[446:462]
	e[0] = 0x80                         // active
	e[1], e[2], e[3] = 0xfe, 0xff, 0xff // CHS: use LBA
	e[4] = 0x0e                         // FAT16, LBA
	e[5], e[6], e[7] = 0xfe, 0xff, 0xff
	binary.LittleEndian.PutUint32(e[8:], start)
	binary.LittleEndian.PutUint32(e[12:], sectors)
	mbr[510], mbr[511] = 0x55, 0xaa
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func runEnv(env []string, name string, args ...string) error {
	cmd := exec.CommandContext(context.Background(), name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
