package lab

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// Config describes a lab.
type Config struct {
	// Dir holds the installer build cache, the VMs' disks and state, the
	// BMC CA and lab.json (default ".lab").
	Dir string
	// Namespace and Bridge default to "metal-lab" and "br-lab".
	Namespace, Bridge string
	// Subnet is the lab network, private to the namespace (default
	// 10.99.0.0/24; the host is .1, DHCP hands out .100-.199).
	Subnet netip.Prefix
	// BIOS and UEFI count the VMs of each firmware.
	BIOS, UEFI int
	// MemoryMiB per VM (default 512); DiskMiB per VM disk (default 128,
	// sparse; at least the image's partition, see DiskSizeMiB).
	MemoryMiB, DiskMiB int
	// Accel is "kvm" or "tcg"; empty probes (see Accel).
	Accel string
	// NIC is the QEMU NIC model (default virtio-net-pci).
	NIC string
	// BMCPort, when not 0, is the first BMC simulator's port on 127.0.0.1
	// (the others count up); 0 picks free ports.
	BMCPort int
	// Vendor is the BMC simulator's vendor (default generic).
	Vendor bmcsim.Vendor
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Dir == "" {
		c.Dir = ".lab"
	}
	if abs, err := filepath.Abs(c.Dir); err == nil {
		c.Dir = abs
	}
	if c.Namespace == "" {
		c.Namespace = "metal-lab"
	}
	if c.Bridge == "" {
		c.Bridge = "br-lab"
	}
	if !c.Subnet.IsValid() {
		c.Subnet = netip.MustParsePrefix("10.99.0.0/24")
	}
	c.Subnet = c.Subnet.Masked()
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 512
	}
	if c.DiskMiB == 0 {
		c.DiskMiB = 128
	}
	if c.Vendor == "" {
		c.Vendor = bmcsim.Generic
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// WithDefaults returns c with every default filled in.
func (c Config) WithDefaults() Config { return c.withDefaults() }

// HostAddr is the host's (the boot service's) address on the lab bridge.
func (c Config) HostAddr() netip.Addr { return c.withDefaults().Subnet.Addr().Next() }

// MachinePlan is one VM's identity, fixed by its name.
type MachinePlan struct {
	Name     string   `json:"name"`
	Firmware Firmware `json:"firmware"`
	MAC      string   `json:"mac"`
	UUID     string   `json:"uuid"`
	Tap      string   `json:"tap"`
}

// Machines lists the planned VMs: bios-0.., then uefi-0...
func (c Config) Machines() []MachinePlan {
	var out []MachinePlan
	add := func(f Firmware, n, code int) {
		for i := range n {
			name := string(f) + "-" + strconv.Itoa(i)
			out = append(out, MachinePlan{
				Name: name, Firmware: f,
				MAC:  fmt.Sprintf("52:54:00:99:%02x:%02x", code, i),
				UUID: derivedUUID("metal-lab/" + name),
				Tap:  "tap-" + name,
			})
		}
	}
	add(BIOS, c.BIOS, 1)
	add(UEFI, c.UEFI, 2)
	return out
}

func derivedUUID(seed string) string {
	h := sha256.Sum256([]byte(seed))
	h[6] = (h[6] & 0x0f) | 0x50
	h[8] = (h[8] & 0x3f) | 0x80
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// BootConfig is the engine's boot service configuration for the lab: bound
// to the bridge inside the namespace (DHCP on 0.0.0.0:67 with
// SO_BINDTODEVICE, HTTP on the host address), authoritative DHCP over the
// lab subnet, state under Dir/state.
func (c Config) BootConfig() engine.BootConfig {
	c = c.withDefaults()
	host := c.HostAddr()
	base := c.Subnet.Addr().As4()
	lo, hi := base, base
	lo[3], hi[3] = 100, 199
	return engine.BootConfig{
		Address:    host,
		Interface:  c.Bridge,
		HTTPListen: netip.AddrPortFrom(host, 8080).String(),
		StateDir:   filepath.Join(c.Dir, "state"),
		IPXEDir:    IPXEDir,
		DHCP: engine.DHCPConfig{
			Mode: engine.DHCPAuthoritative, Listen: "0.0.0.0:67", Subnet: c.Subnet,
			RangeStart: netip.AddrFrom4(lo), RangeEnd: netip.AddrFrom4(hi), LeaseTime: time.Hour,
		},
	}
}

// ImageSpec is the lab's OS image for the engine: kind image, the
// installer kernel and initramfs, and the disk image they write.
func ImageSpec(name string, inst *Installer) engine.ImageSpec {
	return engine.ImageSpec{
		Name:       name,
		Kind:       "image",
		Kernel:     engine.ArtifactSource{URL: "file://" + inst.Kernel},
		Initrd:     engine.ArtifactSource{URL: "file://" + inst.Initrd},
		Image:      &engine.ArtifactSource{URL: "file://" + inst.Image},
		KernelArgs: KernelArgs,
	}
}

// Machine is a running lab VM behind its BMC simulator.
type Machine struct {
	MachinePlan
	VM  *VM
	Sim *bmcsim.Simulator
	// Endpoint is the BMC's Redfish URL (https on 127.0.0.1 of the lab
	// namespace).
	Endpoint string
	SystemID string
	Disk     string
}

// BMC is how the engine reaches the machine's BMC.
func (m *Machine) BMC(ca []byte) engine.BMC {
	return engine.BMC{Endpoint: m.Endpoint, Username: "admin", Password: "password", CACertificate: string(ca), SystemID: m.SystemID}
}

// Running is the lab's machines, started inside the namespace.
type Running struct {
	Config   Config
	Machines []*Machine
	// CA is the PEM certificate every BMC simulator serves (trust it as
	// the BMCs' CA).
	CA     []byte
	cancel context.CancelFunc
}

// StartMachines creates each VM's blank disk and starts its BMC simulator
// (VMs stay off until a BMC powers them on). It must run inside the lab
// namespace, which holds the taps.
func StartMachines(c Config, inst *Installer) (_ *Running, err error) {
	c = c.withDefaults()
	if !InNamespace(c) {
		return nil, fmt.Errorf("bridge %s not found: StartMachines must run inside network namespace %s (ip netns exec %s ...)", c.Bridge, c.Namespace, c.Namespace)
	}
	if need, err := DiskSizeMiB(inst.Image); err != nil {
		return nil, err
	} else if int64(c.DiskMiB) < need {
		return nil, fmt.Errorf("lab disks of %d MiB cannot hold the image's partition: DiskMiB must be at least %d", c.DiskMiB, need)
	}
	accel := c.Accel
	if accel == "" {
		if accel, err = Accel(c.Dir, inst); err != nil {
			return nil, err
		}
	}
	cert, caPEM, err := bmcsim.SelfSignedCert(30 * 24 * time.Hour)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Config: c, CA: caPEM, cancel: cancel}
	defer func() {
		if err != nil {
			_ = r.Close()
		}
	}()
	for i, p := range c.Machines() {
		dir := filepath.Join(c.Dir, "vms", p.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		disk := filepath.Join(dir, "disk.raw")
		if err := blankDisk(disk, int64(c.DiskMiB)<<20); err != nil {
			return nil, err
		}
		_ = os.Remove(filepath.Join(dir, "serial.log"))
		vm, err := NewVM(VMConfig{
			Name: p.Name, Firmware: p.Firmware, MAC: p.MAC, UUID: p.UUID, Tap: p.Tap, Disk: disk, Dir: dir,
			MemoryMiB: c.MemoryMiB, Accel: accel, NIC: c.NIC, Logger: c.Logger,
		})
		if err != nil {
			return nil, err
		}
		mode := "Legacy"
		if p.Firmware == UEFI {
			mode = "UEFI"
		}
		sim := bmcsim.New(bmcsim.Options{Vendor: c.Vendor, Logger: c.Logger.With("bmc", p.Name), Systems: []bmcsim.SystemSpec{{
			ID: p.Name, UUID: p.UUID, Model: "QEMU " + string(p.Firmware) + " VM", BootMode: mode,
			NICs: []bmcsim.NIC{{MAC: p.MAC, LinkUp: true}}, Power: vm,
		}}})
		m := &Machine{MachinePlan: p, VM: vm, Sim: sim, SystemID: p.Name, Disk: disk}
		r.Machines = append(r.Machines, m)
		addr := "127.0.0.1:0"
		if c.BMCPort != 0 {
			addr = "127.0.0.1:" + strconv.Itoa(c.BMCPort+i)
		}
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("BMC simulator for %s: %w", p.Name, err)
		}
		go func() { _ = sim.Serve(ctx, tls.NewListener(ln, bmcsim.TLSConfig(cert))) }()
		m.Endpoint = "https://" + ln.Addr().String()
	}
	return r, nil
}

// blankDisk (re)creates a sparse, zeroed raw disk.
func blankDisk(path string, size int64) error {
	_ = os.Remove(path)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Close powers every VM off (killing QEMU) and stops the simulators.
func (r *Running) Close() error {
	var errs []error
	for _, m := range r.Machines {
		errs = append(errs, m.VM.Close())
	}
	r.cancel()
	return errors.Join(errs...)
}

// Manifest is lab.json: what `metal-lab up` prints and tools read.
type Manifest struct {
	Namespace string            `json:"namespace"`
	Bridge    string            `json:"bridge"`
	Accel     string            `json:"accel"`
	CAFile    string            `json:"ca_file"`
	Boot      engine.BootConfig `json:"boot_service"`
	Image     engine.ImageSpec  `json:"image"`
	Machines  []ManifestMachine `json:"machines"`
}

// ManifestMachine is one machine in lab.json.
type ManifestMachine struct {
	MachinePlan
	Endpoint  string `json:"endpoint"`
	SystemID  string `json:"system_id"`
	Disk      string `json:"disk"`
	SerialLog string `json:"serial_log"`
}

// Manifest describes the running lab.
func (r *Running) Manifest(inst *Installer) Manifest {
	c := r.Config
	m := Manifest{Namespace: c.Namespace, Bridge: c.Bridge, CAFile: filepath.Join(c.Dir, "bmc-ca.pem"), Boot: c.BootConfig(), Image: ImageSpec("lab", inst)}
	for _, x := range r.Machines {
		m.Accel = x.VM.Config().Accel
		m.Machines = append(m.Machines, ManifestMachine{MachinePlan: x.MachinePlan, Endpoint: x.Endpoint, SystemID: x.SystemID, Disk: x.Disk, SerialLog: x.VM.SerialLog()})
	}
	return m
}

// WriteManifest writes the CA file, TFVarsFile and lab.json (last: its
// presence means the lab is up) into Dir.
func (r *Running) WriteManifest(inst *Installer) (Manifest, error) {
	m := r.Manifest(inst)
	if err := os.WriteFile(m.CAFile, r.CA, 0o644); err != nil {
		return m, err
	}
	if err := m.WriteTFVars(r.Config.Dir); err != nil {
		return m, err
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return m, os.WriteFile(filepath.Join(r.Config.Dir, "lab.json"), append(b, '\n'), 0o644)
}

// ReadManifest reads Dir/lab.json.
func ReadManifest(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}
