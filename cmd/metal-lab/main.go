// Command metal-lab runs a local lab of QEMU VMs behind Redfish BMC
// simulators, network-booting from the provider's boot service, with no
// hardware:
//
//	metal-lab up [-bios 1] [-uefi 1]   build the installer, create the lab, print its settings
//	metal-lab status                   print the settings of the running lab
//	metal-lab down                     stop everything and remove the namespace (idempotent)
//
// Everything lives in the network namespace "metal-lab": a bridge br-lab
// with 10.99.0.1/24 and one tap per VM. The BMC simulators listen on
// 127.0.0.1 inside that namespace, and the boot service must bind its DHCP
// to br-lab there, so Terraform (or a test) runs inside it too:
//
//	ip netns exec metal-lab terraform apply
//
// State, disks, logs and the cached installer build live in -dir (.lab).
// It needs root (namespaces, taps, port 67) and installs the Debian
// packages it needs (QEMU, OVMF, iPXE ROMs, busybox, a kernel, syslinux,
// systemd-boot) with apt-get when they are missing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/ra"
	"github.com/composable-metal/terraform-provider-metal/internal/lab"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "metal-lab:", err)
		os.Exit(1)
	}
}

const usage = `usage: metal-lab <command> [flags]

commands:
  up       build the installer (cached), create the lab namespace and start
           the VMs' BMC simulators; prints the BMC endpoints, the CA file and
           the boot_service settings
  status   print the running lab's settings again
  down     stop the BMC simulators and VMs and delete the namespace
           (idempotent; -purge also removes the installer cache)
  build    only build the installer and disk image
  ra       answer IPv6 router solicitations on -interface until interrupted
           (what the boot service does; for bench/lab-provision's baseline)
  qemu-cmd print the QEMU command line of planned machine -name (network
           first, -no-reboot) with -tap, -disk and -vm-dir, one argument a line
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		_, _ = fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	fs := flag.NewFlagSet("metal-lab "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".lab", "lab state directory")
	ns := fs.String("namespace", "metal-lab", "network namespace")
	bios := fs.Int("bios", 1, "BIOS (SeaBIOS) VMs")
	uefi := fs.Int("uefi", 1, "UEFI (OVMF) VMs")
	mem := fs.Int("memory", 512, "memory per VM in MiB")
	accel := fs.String("accel", "auto", "QEMU accelerator: auto (probe KVM, fall back to TCG), kvm or tcg")
	bmcPort := fs.Int("bmc-port", 9443, "port of the first BMC simulator on 127.0.0.1 in the namespace (0: any)")
	noInstall := fs.Bool("no-install", false, "do not apt-get install missing packages")
	purge := fs.Bool("purge", false, "down: also remove the installer cache (the whole -dir)")
	verbose := fs.Bool("v", false, "serve: debug logs")
	iface := fs.String("interface", "", "ra: the interface to answer router solicitations on")
	name := fs.String("name", "bios-0", "qemu-cmd: the planned machine (bios-N or uefi-N)")
	tap := fs.String("tap", "", "qemu-cmd: tap device (default: the machine's)")
	disk := fs.String("disk", "", "qemu-cmd: raw disk image")
	vmDir := fs.String("vm-dir", "", "qemu-cmd: the VM's state directory")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	cfg := lab.Config{Dir: abs, Namespace: *ns, BIOS: *bios, UEFI: *uefi, MemoryMiB: *mem, BMCPort: *bmcPort}
	if *accel != "auto" {
		cfg.Accel = *accel
	}
	switch args[0] {
	case "up":
		return up(cfg, !*noInstall, stdout, stderr)
	case "down":
		return down(cfg, *purge, stdout)
	case "status":
		m, err := lab.ReadManifest(abs)
		if err != nil {
			return fmt.Errorf("no running lab in %s (metal-lab up): %w", abs, err)
		}
		printManifest(stdout, m)
		return nil
	case "build":
		if !*noInstall {
			if err := lab.EnsurePackages(context.Background(), os.Stderr); err != nil {
				return err
			}
		}
		inst, err := lab.BuildInstaller(abs)
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(stdout, "kernel %s\ninitrd %s\nimage  %s\n", inst.Kernel, inst.Initrd, inst.Image)
		return nil
	case "serve":
		return serve(cfg, *verbose)
	case "ra":
		return serveRA(*iface)
	case "qemu-cmd":
		return qemuCmd(cfg, *name, *tap, *disk, *vmDir, stdout)
	}
	_, _ = fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func pidFile(dir string) string { return filepath.Join(dir, "serve.pid") }

func up(cfg lab.Config, install bool, stdout, stderr io.Writer) error {
	if os.Geteuid() != 0 {
		return lab.ErrNotRoot
	}
	cfg = cfg.WithDefaults()
	if m, err := lab.ReadManifest(cfg.Dir); err == nil && serveAlive(cfg.Dir) && lab.NamespaceExists(cfg.Namespace) {
		_, _ = fmt.Fprintln(stdout, "the lab is already up:")
		printManifest(stdout, m)
		return nil
	}
	// Leftovers of a lab that died: clean them first.
	if err := down(cfg, false, io.Discard); err != nil {
		return err
	}
	if install {
		if err := lab.EnsurePackages(context.Background(), os.Stderr); err != nil {
			return err
		}
	} else if miss := lab.MissingPackages(); len(miss) > 0 {
		return fmt.Errorf("missing Debian packages: %s", lab.InstallCommand(miss))
	}
	_, _ = fmt.Fprintln(stderr, "building the installer (cached in "+cfg.Dir+"/installer)...")
	inst, err := lab.BuildInstaller(cfg.Dir)
	if err != nil {
		return err
	}
	if cfg.Accel == "" {
		_, _ = fmt.Fprintln(stderr, "probing KVM...")
		if cfg.Accel, err = lab.Accel(cfg.Dir, inst); err != nil {
			return err
		}
	}
	if err := lab.SetupNetwork(cfg); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = down(cfg, false, io.Discard)
		}
	}()
	// The server runs from a copy of this binary (go run deletes its own).
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin := filepath.Join(cfg.Dir, "bin", "metal-lab")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	if err := copyExe(self, bin); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(cfg.Dir, "serve.log"))
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }()
	_ = os.Remove(filepath.Join(cfg.Dir, "lab.json"))
	cmd := exec.CommandContext(context.Background(), "ip", "netns", "exec", cfg.Namespace, bin, "serve",
		"-dir", cfg.Dir, "-namespace", cfg.Namespace, "-bios", strconv.Itoa(cfg.BIOS), "-uefi", strconv.Itoa(cfg.UEFI),
		"-memory", strconv.Itoa(cfg.MemoryMiB), "-accel", cfg.Accel, "-bmc-port", strconv.Itoa(cfg.BMCPort))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := os.WriteFile(pidFile(cfg.Dir), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	for {
		if m, err := lab.ReadManifest(cfg.Dir); err == nil {
			ok = true
			printManifest(stdout, m)
			return nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(cfg.Dir, "serve.log"))
			return fmt.Errorf("the lab server exited (%w):\n%s", err, b)
		case <-deadline:
			return errors.New("the lab server did not become ready within 2 minutes; see " + filepath.Join(cfg.Dir, "serve.log"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func copyExe(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func readPid(dir string) int {
	b, err := os.ReadFile(pidFile(dir))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func serveAlive(dir string) bool {
	pid := readPid(dir)
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// down stops the lab server (which powers its VMs off), kills any QEMU of
// the lab that is left, deletes the namespace and the per-run state. Each
// step tolerates a lab that is not (or only partly) there.
func down(cfg lab.Config, purge bool, stdout io.Writer) error {
	if os.Geteuid() != 0 {
		return lab.ErrNotRoot
	}
	cfg = cfg.WithDefaults()
	if pid := readPid(cfg.Dir); pid > 0 && syscall.Kill(pid, 0) == nil {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 150 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_, _ = fmt.Fprintf(stdout, "stopped the lab server (pid %d)\n", pid)
	}
	if pids := lab.KillLabProcesses(cfg.Dir); len(pids) > 0 {
		_, _ = fmt.Fprintf(stdout, "killed leftover QEMU processes %v\n", pids)
		time.Sleep(200 * time.Millisecond)
	}
	if lab.NamespaceExists(cfg.Namespace) {
		if err := lab.TeardownNetwork(cfg); err != nil {
			return err
		}
		_, _ = fmt.Fprintf(stdout, "deleted network namespace %s\n", cfg.Namespace)
	}
	for _, p := range []string{"lab.json", lab.TFVarsFile, "serve.pid", "bmc-ca.pem", "vms", "state", "bin"} {
		_ = os.RemoveAll(filepath.Join(cfg.Dir, p))
	}
	if purge {
		if err := os.RemoveAll(cfg.Dir); err != nil {
			return err
		}
		_, _ = fmt.Fprintf(stdout, "removed %s\n", cfg.Dir)
	}
	if pids := lab.LabProcesses(cfg.Dir); len(pids) > 0 {
		return fmt.Errorf("QEMU processes %v of the lab survived", pids)
	}
	_, _ = fmt.Fprintln(stdout, "the lab is down")
	return nil
}

// serve runs inside the namespace: the BMC simulators and their VMs, until
// SIGTERM or SIGINT.
func serve(cfg lab.Config, verbose bool) error {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	inst, err := lab.BuildInstaller(cfg.Dir)
	if err != nil {
		return err
	}
	r, err := lab.StartMachines(cfg, inst)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if _, err := r.WriteManifest(inst); err != nil {
		return err
	}
	cfg.Logger.Info("lab up", "machines", len(r.Machines))
	<-ctx.Done()
	cfg.Logger.Info("stopping the lab")
	_ = os.Remove(filepath.Join(cfg.Dir, "lab.json"))
	return nil
}

func printManifest(w io.Writer, m lab.Manifest) {
	b := m.Boot
	_, _ = fmt.Fprintf(w, "lab: namespace %s, bridge %s, accelerator %s\n\n", m.Namespace, m.Bridge, m.Accel)
	_, _ = fmt.Fprintf(w, "BMCs (Redfish, user admin / password password, CA %s):\n", m.CAFile)
	for _, x := range m.Machines {
		_, _ = fmt.Fprintf(w, "  %-8s %-4s %s  system %s  mac %s  uuid %s\n           serial console: %s\n", x.Name, x.Firmware, x.Endpoint, x.SystemID, x.MAC, x.UUID, x.SerialLog)
	}
	_, _ = fmt.Fprintf(w, "\nTerraform settings (read by examples/quickstart): %s\n", filepath.Join(filepath.Dir(m.CAFile), lab.TFVarsFile))
	_, _ = fmt.Fprintf(w, `
OS image (kind image): kernel %s
                       initrd %s
                       image  %s
                       kernel_args %s, root_device /dev/vda

Provider settings (run terraform inside the namespace: ip netns exec %s terraform apply):

provider "metal" {
  bmc_username       = "admin"
  bmc_password       = "password"
  bmc_ca_certificate = file(%q)

  boot_service {
    address     = %q
    interface   = %q
    http_listen = %q
    state_dir   = %q
    dhcp {
      mode        = %q
      listen      = %q
      subnet      = %q
      range_start = %q
      range_end   = %q
    }
  }
}
`, m.Image.Kernel.URL, m.Image.Initrd.URL, m.Image.Image.URL, strings.Join(m.Image.KernelArgs, " "), m.Namespace,
		m.CAFile, b.Address, b.Interface, b.HTTPListen, b.StateDir, b.DHCP.Mode, b.DHCP.Listen, b.DHCP.Subnet, b.DHCP.RangeStart, b.DHCP.RangeEnd)
}

// serveRA runs the boot service's IPv6 router advertisement responder
// alone, so a baseline boot server gets the same help.
func serveRA(iface string) error {
	if iface == "" {
		return errors.New("ra needs -interface")
	}
	conn, ifi, err := ra.Listen(iface)
	if err != nil {
		return err
	}
	r, err := ra.New(ra.Config{Conn: conn, MAC: ifi.HardwareAddr, IfIndex: ifi.Index})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return r.Serve(ctx)
}

// qemuCmd prints the QEMU command line the lab uses for a planned machine's
// network boot.
func qemuCmd(cfg lab.Config, name, tap, disk, vmDir string, w io.Writer) error {
	cfg = cfg.WithDefaults()
	cfg.BIOS, cfg.UEFI = max(cfg.BIOS, 8), max(cfg.UEFI, 8)
	for _, p := range cfg.Machines() {
		if p.Name != name {
			continue
		}
		if tap == "" {
			tap = p.Tap
		}
		if disk == "" || vmDir == "" {
			return errors.New("qemu-cmd needs -disk and -vm-dir")
		}
		accel := cfg.Accel
		if accel == "" {
			accel = "tcg"
		}
		vm, err := lab.NewVM(lab.VMConfig{Name: p.Name, Firmware: p.Firmware, MAC: p.MAC, UUID: p.UUID, Tap: tap, Disk: disk, Dir: vmDir, MemoryMiB: cfg.MemoryMiB, Accel: accel})
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintln(w, "qemu-system-x86_64")
		for _, a := range vm.Args(true, true) {
			_, _ = fmt.Fprintln(w, a)
		}
		return nil
	}
	return fmt.Errorf("no planned machine %q (bios-N or uefi-N)", name)
}
