package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
)

// Firmware is a VM's firmware.
type Firmware string

// Firmwares.
const (
	// BIOS is SeaBIOS, QEMU's default; the virtio NIC's option ROM (from
	// ipxe-qemu) is iPXE, so a network boot fetches the HTTP script
	// directly.
	BIOS Firmware = "bios"
	// UEFI is OVMF (Debian's ovmf) with the iPXE EFI driver from the same
	// NIC ROM.
	UEFI Firmware = "uefi"
)

// VMConfig describes one lab VM.
type VMConfig struct {
	Name     string
	Firmware Firmware
	// MAC of the VM's NIC, as the BMC simulator reports it.
	MAC string
	// UUID is the SMBIOS system UUID, the same as the simulated system's.
	UUID string
	// Tap is the tap device (in the current network namespace) the NIC
	// is attached to.
	Tap string
	// Disk is a raw disk image.
	Disk string
	// Dir holds the QMP socket, the serial log, the pid file and (UEFI)
	// the VM's own copy of OVMF_VARS.fd.
	Dir string
	// MemoryMiB defaults to 512, CPUs to 1.
	MemoryMiB, CPUs int
	// Accel is "kvm" or "tcg" (default).
	Accel string
	// NIC is the QEMU NIC device model (default virtio-net-pci; e1000 is
	// much slower to boot under TCG).
	NIC string
	// QEMU is the emulator binary (default qemu-system-x86_64 on PATH).
	QEMU string
	// GracefulTimeout bounds a GracefulShutdown before power is cut
	// (default 20s).
	GracefulTimeout time.Duration
	Logger          *slog.Logger
}

// VM is a bmcsim.PowerBackend (and bmcsim.BootOverrideAware) that runs one
// QEMU process per power-on:
//
//   - On starts QEMU with the boot order the pending override asks for:
//     Pxe (or UefiHttp) puts the NIC first and the disk second, anything
//     else the disk first and the NIC second, as real servers keep it.
//   - A Once override is used for one boot: QEMU then runs with
//     -no-reboot, and when the guest reboots (QEMU exits with reason
//     guest-reset) the VM is started again with the normal order. Without
//     an override the guest reboots inside QEMU.
//   - ForceOff kills QEMU. GracefulShutdown sends QMP system_powerdown
//     and kills QEMU after GracefulTimeout.
//   - ForceRestart, GracefulRestart and PowerCycle use QMP system_reset
//     when the running QEMU already has the right boot order, else they
//     restart the process.
//   - Status is Off without a process, PoweringOn (in POST) until QMP
//     answers, then On. Boots counts process starts and in-QEMU resets.
type VM struct {
	cfg VMConfig
	log *slog.Logger

	mu       sync.Mutex
	override bmcsim.BootOverride
	proc     *vmProc
	boots    uint64
	closed   bool
	history  []Boot
}

// Boot is one QEMU start, for tests and logs.
type Boot struct {
	Time time.Time
	// NetworkFirst is the boot order the process got.
	NetworkFirst bool
	// NoReboot is set when a guest reboot ends the process (a Once
	// override was used).
	NoReboot bool
}

type vmProc struct {
	cmd         *exec.Cmd
	netFirst    bool
	noReboot    bool
	qmp         *qmpClient
	ready       bool
	stopping    bool // a graceful shutdown is under way
	intentional bool // we ended it: do not restart
	exited      chan struct{}
	shutdownWhy string
	started     time.Time
}

var _ bmcsim.PowerBackend = (*VM)(nil)
var _ bmcsim.BootOverrideAware = (*VM)(nil)

// NewVM prepares a VM (creating Dir and the UEFI variable store); it starts
// nothing.
func NewVM(cfg VMConfig) (*VM, error) {
	if cfg.Name == "" || cfg.MAC == "" || cfg.Tap == "" || cfg.Disk == "" || cfg.Dir == "" {
		return nil, errors.New("lab: VMConfig needs Name, MAC, Tap, Disk and Dir")
	}
	if cfg.Firmware == "" {
		cfg.Firmware = BIOS
	}
	if cfg.Firmware != BIOS && cfg.Firmware != UEFI {
		return nil, fmt.Errorf("lab: firmware %q is not bios or uefi", cfg.Firmware)
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 512
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.Accel == "" {
		cfg.Accel = "tcg"
	}
	if cfg.NIC == "" {
		cfg.NIC = "virtio-net-pci"
	}
	if cfg.QEMU == "" {
		cfg.QEMU = "qemu-system-x86_64"
	}
	if cfg.GracefulTimeout == 0 {
		cfg.GracefulTimeout = 20 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	if cfg.Firmware == UEFI {
		vars := filepath.Join(cfg.Dir, "OVMF_VARS.fd")
		if _, err := os.Stat(vars); err != nil {
			if err := copyFile(OVMFVars, vars); err != nil {
				return nil, fmt.Errorf("lab: the VM's UEFI variable store: %w", err)
			}
		}
	}
	return &VM{cfg: cfg, log: log.With("vm", cfg.Name)}, nil
}

// Config returns the VM's configuration.
func (v *VM) Config() VMConfig { return v.cfg }

// SerialLog is the path of the VM's serial console log.
func (v *VM) SerialLog() string { return filepath.Join(v.cfg.Dir, "serial.log") }

// PidFile is where QEMU writes its pid.
func (v *VM) PidFile() string { return filepath.Join(v.cfg.Dir, "qemu.pid") }

func (v *VM) qmpPath() string { return filepath.Join(v.cfg.Dir, "qmp.sock") }

// Args returns QEMU's command line for a boot order (exported for tests
// and the bench script's "same VM" runs).
func (v *VM) Args(netFirst, noReboot bool) []string {
	c := v.cfg
	nicIdx, diskIdx := 2, 1
	if netFirst {
		nicIdx, diskIdx = 1, 2
	}
	args := []string{
		"-name", "metal-lab-" + c.Name + ",process=metal-lab-" + c.Name,
		"-machine", "q35,accel=" + c.Accel,
		"-m", strconv.Itoa(c.MemoryMiB), "-smp", strconv.Itoa(c.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
		"-chardev", "file,id=serial0,path=" + v.SerialLog() + ",append=on", "-serial", "chardev:serial0",
		"-qmp", "unix:" + v.qmpPath() + ",server=on,wait=off",
		"-pidfile", v.PidFile(),
		"-netdev", "tap,id=net0,ifname=" + c.Tap + ",script=no,downscript=no",
		"-device", fmt.Sprintf("%s,netdev=net0,mac=%s,bootindex=%d", c.NIC, c.MAC, nicIdx),
		"-drive", "file=" + c.Disk + ",if=none,id=disk0,format=raw,cache=writeback",
		"-device", fmt.Sprintf("virtio-blk-pci,drive=disk0,bootindex=%d", diskIdx),
	}
	if c.UUID != "" {
		args = append(args, "-uuid", c.UUID)
	}
	if c.Firmware == UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+filepath.Join(c.Dir, "OVMF_VARS.fd"))
	}
	if noReboot {
		args = append(args, "-no-reboot")
	}
	return args
}

// SetBootOverride implements bmcsim.BootOverrideAware.
func (v *VM) SetBootOverride(o bmcsim.BootOverride) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if o.Mode != "" && !modeMatches(v.cfg.Firmware, o.Mode) {
		v.log.Warn("boot override asks for another firmware mode than this VM has; booting its own", "mode", o.Mode, "firmware", string(v.cfg.Firmware))
	}
	v.override = o
}

func modeMatches(f Firmware, mode string) bool {
	return (f == UEFI && mode == "UEFI") || (f == BIOS && mode == "Legacy")
}

// nextOrder is the boot order of the next boot, consuming a Once
// override. Caller holds v.mu.
func (v *VM) nextOrder() (netFirst, noReboot bool) {
	o := v.override
	netFirst = o.Target == "Pxe" || o.Target == "UefiHttp"
	if o.Enabled == "Once" && o.Target != "" {
		noReboot = true
		v.override = bmcsim.BootOverride{Mode: o.Mode}
	}
	return netFirst, noReboot
}

// peekOrder is nextOrder without consuming.
func (v *VM) peekOrder() (netFirst, noReboot bool) {
	o := v.override
	return o.Target == "Pxe" || o.Target == "UefiHttp", o.Enabled == "Once" && o.Target != ""
}

// Status implements bmcsim.PowerBackend.
func (v *VM) Status() bmcsim.PowerStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch p := v.proc; {
	case p == nil:
		return bmcsim.PowerStatus{State: bmcsim.PowerOff, Boots: v.boots}
	case !p.ready:
		return bmcsim.PowerStatus{State: bmcsim.PowerPoweringOn, InPOST: true, Boots: v.boots}
	default:
		return bmcsim.PowerStatus{State: bmcsim.PowerOn, Boots: v.boots}
	}
}

// Reset implements bmcsim.PowerBackend.
func (v *VM) Reset(_ context.Context, resetType string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return errors.New("lab: VM is closed")
	}
	switch resetType {
	case "On", "ForceOn":
		if v.proc == nil {
			return v.startLocked()
		}
	case "ForceOff":
		v.stopLocked()
	case "GracefulShutdown":
		v.gracefulLocked()
	case "PushPowerButton":
		if v.proc == nil {
			return v.startLocked()
		}
		v.gracefulLocked()
	case "ForceRestart", "GracefulRestart", "PowerCycle":
		p := v.proc
		if p == nil {
			return v.startLocked()
		}
		netFirst, noReboot := v.peekOrder()
		if resetType != "PowerCycle" && p.ready && !p.noReboot && !noReboot && p.netFirst == netFirst {
			// Same boot order: a warm reset inside QEMU (counted by the
			// RESET event).
			go func() {
				if err := p.qmp.execute("system_reset", 5*time.Second); err != nil {
					v.log.Warn("QMP system_reset failed", "error", err.Error())
				}
			}()
			return nil
		}
		v.stopLocked()
		return v.startLocked()
	case "Nmi":
		if p := v.proc; p != nil && p.ready {
			go func() { _ = p.qmp.execute("inject-nmi", 5*time.Second) }()
		}
	default:
		return fmt.Errorf("lab: unsupported reset type %q", resetType)
	}
	return nil
}

// SetPower implements bmcsim.PowerBackend.
func (v *VM) SetPower(on bool) {
	rt := "ForceOff"
	if on {
		rt = "On"
	}
	if err := v.Reset(context.Background(), rt); err != nil {
		v.log.Warn("out-of-band power change failed", "on", on, "error", err.Error())
	}
}

// History lists the QEMU starts so far.
func (v *VM) History() []Boot {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Boot(nil), v.history...)
}

// Running reports whether a QEMU process is up.
func (v *VM) Running() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.proc != nil
}

// Close kills QEMU and refuses further power requests.
func (v *VM) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.closed = true
	v.stopLocked()
	return nil
}

// startLocked starts QEMU with the next boot order. Caller holds v.mu and
// v.proc is nil.
func (v *VM) startLocked() error {
	netFirst, noReboot := v.nextOrder()
	_ = os.Remove(v.qmpPath())
	cmd := exec.CommandContext(context.Background(), v.cfg.QEMU, v.Args(netFirst, noReboot)...)
	out, err := os.OpenFile(filepath.Join(v.cfg.Dir, "qemu.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	// QEMU dies with the process that started it (the lab, the test).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("lab: starting QEMU for %s: %w", v.cfg.Name, err)
	}
	p := &vmProc{cmd: cmd, netFirst: netFirst, noReboot: noReboot, exited: make(chan struct{}), started: time.Now()}
	v.proc = p
	v.history = append(v.history, Boot{Time: p.started, NetworkFirst: netFirst, NoReboot: noReboot})
	v.log.Info("QEMU started", "pid", cmd.Process.Pid, "network_first", netFirst, "no_reboot", noReboot)
	go func() {
		err := cmd.Wait()
		_ = out.Close()
		close(p.exited)
		v.exited(p, err)
	}()
	go v.connect(p)
	return nil
}

// connect attaches QMP; the VM counts as booted (out of POST) once QEMU
// answers.
func (v *VM) connect(p *vmProc) {
	q, err := dialQMP(v.qmpPath(), time.Now().Add(30*time.Second), func(name string, data json.RawMessage) { v.event(p, name, data) })
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		if v.proc == p {
			v.log.Warn("QMP unavailable: killing QEMU", "error", err.Error())
			p.intentional = true
			_ = p.cmd.Process.Kill()
		}
		return
	}
	if v.proc != p {
		_ = q.Close()
		return
	}
	p.qmp = q
	p.ready = true
	v.boots++
}

func (v *VM) event(p *vmProc, name string, data json.RawMessage) {
	var d struct {
		Guest  bool   `json:"guest"`
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(data, &d)
	v.mu.Lock()
	defer v.mu.Unlock()
	switch name {
	case "SHUTDOWN":
		p.shutdownWhy = d.Reason
	case "RESET":
		if v.proc == p && p.ready {
			v.boots++ // a warm reset inside QEMU
		}
	}
}

// exited handles the end of a QEMU process.
func (v *VM) exited(p *vmProc, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p.qmp != nil {
		_ = p.qmp.Close()
	}
	if v.proc != p {
		return
	}
	v.proc = nil
	why := p.shutdownWhy
	v.log.Info("QEMU exited", "reason", why, "intentional", p.intentional, "error", fmt.Sprint(err))
	if p.intentional || v.closed {
		return
	}
	if why == "guest-reset" || why == "host-qmp-system-reset" {
		// -no-reboot turned the guest's reboot into an exit: the one-time
		// override is used up, so boot again with the normal order.
		if err := v.startLocked(); err != nil {
			v.log.Error("restarting after the guest rebooted failed", "error", err.Error())
		}
	}
}

// stopLocked kills QEMU and waits (bounded) for it to be reaped, so the
// tap is free for the next start. Caller holds v.mu.
func (v *VM) stopLocked() {
	p := v.proc
	if p == nil {
		return
	}
	p.intentional = true
	_ = p.cmd.Process.Kill()
	// The wait goroutine closes exited before it takes v.mu, so waiting
	// with the lock held is safe.
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		v.log.Error("QEMU did not exit after SIGKILL", "pid", p.cmd.Process.Pid)
	}
	v.proc = nil
}

// gracefulLocked asks the guest to power off (ACPI) and cuts power after
// GracefulTimeout. Caller holds v.mu.
func (v *VM) gracefulLocked() {
	p := v.proc
	if p == nil || p.stopping {
		return
	}
	p.stopping = true
	p.intentional = true
	if p.ready {
		go func() {
			if err := p.qmp.execute("system_powerdown", 5*time.Second); err != nil {
				v.log.Warn("QMP system_powerdown failed", "error", err.Error())
			}
		}()
	}
	time.AfterFunc(v.cfg.GracefulTimeout, func() {
		select {
		case <-p.exited:
		default:
			v.log.Info("guest did not power off in time: cutting power", "after", v.cfg.GracefulTimeout)
			_ = p.cmd.Process.Kill()
		}
	})
}
