package machinesim

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Network is the network configuration an installer wrote.
type Network struct {
	// MAC is the interface the configuration is bound to (lower case).
	MAC string
	// DHCP is true when the interface is configured by DHCP.
	DHCP bool
	// Addresses are static addresses in CIDR notation.
	Addresses     []string
	Gateway       string
	DNS           []string
	SearchDomains []string
}

// Installation is "the operating system" on a Disk: what the installer was
// booted with, what it fetched and what it configured.
type Installation struct {
	// Kind is the installer: "cloud-init", "kickstart", "ignition" or
	// "image".
	Kind string
	// KernelSHA256 and InitrdSHA256 are the sums of the kernel and initrd
	// that ran the installer.
	KernelSHA256, InitrdSHA256 string
	// ImageSHA256 and ImageSize describe the third artifact when one was
	// fetched: the disk image written (image) or the live rootfs (ignition).
	ImageSHA256 string
	ImageSize   int64
	// Configs maps each config fetched ("user-data", "meta-data",
	// "network-config", "kickstart", "ignition", "image.env") to the sha256
	// of the bytes received.
	Configs map[string]string
	// TargetDevice is the disk the installer was told to write, if any.
	TargetDevice string
	// Hostname is the hostname the installed system sets (cloud-init: the
	// user-data's hostname, else meta-data's local-hostname); InstanceID is
	// meta-data's instance-id; MachineID the composable-metal machine id
	// where the config carries it (image.env, Ignition).
	Hostname, InstanceID, MachineID string
	Network                         Network
	SSHAuthorizedKeys               []string
	// UserDataParts are the MIME types of the user-data parts cloud-init
	// saw ("text/cloud-config", "text/x-shellscript", ...).
	UserDataParts []string
	// Files are the files an Ignition config or cloud-init's write_files
	// wrote, by path (nil when none).
	Files map[string]string
	// InstalledAt is when the installer finished writing.
	InstalledAt time.Time
}

func (i Installation) clone() Installation {
	i.Configs = maps.Clone(i.Configs)
	i.Files = maps.Clone(i.Files)
	i.Network.Addresses = slices.Clone(i.Network.Addresses)
	i.Network.DNS = slices.Clone(i.Network.DNS)
	i.Network.SearchDomains = slices.Clone(i.Network.SearchDomains)
	i.SSHAuthorizedKeys = slices.Clone(i.SSHAuthorizedKeys)
	i.UserDataParts = slices.Clone(i.UserDataParts)
	return i
}

// Disk is a machine's in-memory disk. The zero value is an empty disk. It is
// safe for concurrent use (a test may read it while the machine boots).
type Disk struct {
	mu     sync.Mutex
	inst   *Installation
	wipes  int
	boots  int
	writes int
}

// Installed returns a copy of what is installed; false for an empty disk.
func (d *Disk) Installed() (Installation, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inst == nil {
		return Installation{}, false
	}
	return d.inst.clone(), true
}

// Install puts an installation on the disk (installers do; tests may, to
// start with a machine that already has an operating system).
func (d *Disk) Install(i Installation) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := i.clone()
	if c.InstalledAt.IsZero() {
		c.InstalledAt = time.Now()
	}
	d.inst = &c
	d.writes++
}

// Wipe erases the disk.
func (d *Disk) Wipe() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inst = nil
	d.wipes++
}

// Stats reports how often the disk was installed, wiped and booted from.
func (d *Disk) Stats() (installs, wipes, boots int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes, d.wipes, d.boots
}

func (d *Disk) booted() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.boots++
}
