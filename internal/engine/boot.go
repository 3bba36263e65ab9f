package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/artifact"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
)

// BootConfig configures the boot service (DHCP, TFTP, HTTP) the engine runs
// for provisioning.
type BootConfig struct {
	// Address is this host's address on the provisioning network: the DHCP
	// server identifier, the TFTP next-server and the host of HTTP URLs.
	Address netip.Addr `json:"address"`
	// Interface binds DHCP to one network device (SO_BINDTODEVICE).
	Interface string `json:"interface,omitempty"`
	// HTTPListen is host:port for the HTTP server (default 0.0.0.0:8080).
	HTTPListen string `json:"http_listen,omitempty"`
	// StateDir holds the store and the artifact cache.
	StateDir string `json:"state_dir"`
	// IPXEDir holds undionly.kpxe / ipxe.efi / snponly.efi (default: Debian's
	// /usr/lib/ipxe when present).
	IPXEDir string     `json:"ipxe_dir,omitempty"`
	DHCP    DHCPConfig `json:"dhcp"`
	TFTP    TFTPConfig `json:"tftp"`
	// RouterAdvertisements answers IPv6 Router Solicitations on Interface
	// with a "no router, nothing to configure" advertisement, so iPXE's IPv6
	// autoconfiguration ends at once instead of waiting ~16s per boot (see
	// internal/boot/ra). It needs Interface and CAP_NET_RAW. nil means on
	// when Interface is set, and a failure to start is then only logged;
	// an explicit true makes that failure an error, false turns it off.
	RouterAdvertisements *bool `json:"router_advertisements,omitempty"`
	// AgentBinary is the role agent served to machines at
	// /agent/v1/binary (default: this binary on Linux).
	AgentBinary string `json:"agent_binary,omitempty"`
}

// DHCP modes.
const (
	DHCPAuthoritative = "authoritative"
	DHCPProxy         = "proxy"
	DHCPOff           = "off"
)

// DHCPModes lists the values DHCPConfig.Mode accepts.
func DHCPModes() []string { return []string{DHCPAuthoritative, DHCPProxy, DHCPOff} }

// DHCPConfig is the DHCP side of the boot service.
type DHCPConfig struct {
	Mode string `json:"mode"`
	// Listen is host:port (default 0.0.0.0:67). A loopback address is for
	// tests: replies then go back to the sender instead of broadcast.
	Listen     string        `json:"listen,omitempty"`
	Subnet     netip.Prefix  `json:"subnet,omitzero"`
	RangeStart netip.Addr    `json:"range_start,omitzero"`
	RangeEnd   netip.Addr    `json:"range_end,omitzero"`
	Router     netip.Addr    `json:"router,omitzero"`
	DNS        []netip.Addr  `json:"dns,omitempty"`
	LeaseTime  time.Duration `json:"lease_time,omitempty"`
	// Discovery records unknown MACs instead of ignoring them.
	Discovery bool `json:"discovery,omitempty"`
}

// TFTPConfig is the TFTP side of the boot service.
type TFTPConfig struct {
	Enabled bool `json:"enabled"`
	// Listen is host:port (default 0.0.0.0:69).
	Listen string `json:"listen,omitempty"`
}

// InstallKinds lists the install kinds an image can use.
func InstallKinds() []string {
	out := make([]string, 0, len(render.Kinds()))
	for _, k := range render.Kinds() {
		out = append(out, string(k))
	}
	return out
}

// ArtifactSource is where an image file comes from.
type ArtifactSource struct {
	// URL is http, https or file.
	URL string `json:"url"`
	// SHA256 is required for http(s) URLs.
	SHA256 string `json:"sha256,omitempty"`
}

// ImageSpec describes an OS image: what the machine network-boots to install.
type ImageSpec struct {
	Name       string          `json:"name"`
	Kernel     ArtifactSource  `json:"kernel"`
	Initrd     ArtifactSource  `json:"initrd"`
	Image      *ArtifactSource `json:"image,omitempty"`
	KernelArgs []string        `json:"kernel_args,omitempty"`
	Kind       string          `json:"kind"`
	// Templates overrides built-in templates by file name.
	Templates map[string]string `json:"templates,omitempty"`
}

// ImageInfo is an image as cached by the boot service.
type ImageInfo struct {
	Name         string `json:"name"`
	Kind         string `json:"kind"`
	KernelSHA256 string `json:"kernel_sha256"`
	KernelSize   int64  `json:"kernel_size"`
	InitrdSHA256 string `json:"initrd_sha256"`
	InitrdSize   int64  `json:"initrd_size"`
	ImageSHA256  string `json:"image_sha256,omitempty"`
	ImageSize    int64  `json:"image_size,omitempty"`
}

// Wait targets for provisioning.
const (
	WaitProvisioned = "provisioned"
	WaitBooted      = "booted"
	WaitNone        = "none"
)

// WaitTargets lists the values ProvisionSpec.WaitFor accepts.
func WaitTargets() []string { return []string{WaitProvisioned, WaitBooted, WaitNone} }

// ProvisionSpec is what to install on a machine and how.
type ProvisionSpec struct {
	// Image is the name of an image passed to EnsureImage.
	Image             string   `json:"image"`
	Hostname          string   `json:"hostname,omitempty"`
	SSHAuthorizedKeys []string `json:"ssh_authorized_keys,omitempty"`
	UserData          string   `json:"user_data,omitempty"`
	// IPAddress is address/prefix for a static address; empty allocates
	// one from the DHCP range (and renders it static once known).
	IPAddress  string   `json:"ip_address,omitempty"`
	Gateway    string   `json:"gateway,omitempty"`
	DNS        []string `json:"dns,omitempty"`
	RootDevice string   `json:"root_device,omitempty"`
	// BootMAC is the NIC that network-boots; empty: the first NIC with link.
	BootMAC string `json:"boot_mac,omitempty"`
	WaitFor string `json:"wait_for,omitempty"`
	// Agent installs the role agent, so roles can change in place later.
	Agent bool `json:"agent,omitempty"`
	// Roles are applied at install (with their requirements, in order).
	Roles RoleSelection `json:"roles,omitzero"`
}

// ProvisionResult says how far a provisioning got.
type ProvisionResult struct {
	MachineID string `json:"machine_id"`
	// IPAddress is the address the machine got (static or leased).
	IPAddress string          `json:"ip_address,omitempty"`
	Timeline  []TimelineEvent `json:"timeline"`
}

// TimelineEvent is one step a machine took while provisioning.
type TimelineEvent struct {
	Time    time.Time `json:"time"`
	Source  string    `json:"source"`
	Stage   string    `json:"stage"`
	Message string    `json:"message,omitempty"`
}

// Rendered is what a machine will boot, for plan-time display. Tokens are
// a placeholder: the real one is issued at apply time.
type Rendered struct {
	IPXE     string `json:"ipxe"`
	UserData string `json:"user_data"`
}

// DiscoveredMachine is an unregistered MAC that asked to network-boot
// while discovery was on.
type DiscoveredMachine struct {
	MAC          string    `json:"mac"`
	FirstSeen    time.Time `json:"first_seen"`
	Arch         string    `json:"arch,omitempty"`
	VendorClass  string    `json:"vendor_class,omitempty"`
	CircuitID    string    `json:"circuit_id,omitempty"`
	RemoteID     string    `json:"remote_id,omitempty"`
	RelayAddress string    `json:"relay_address,omitempty"`
	Interface    string    `json:"interface,omitempty"`
}

// ImageFileError says which file of an image (kernel, initrd, image) could
// not be fetched or verified.
type ImageFileError struct {
	Role string
	Err  error
}

func (e *ImageFileError) Error() string { return e.Role + ": " + e.Err.Error() }
func (e *ImageFileError) Unwrap() error { return e.Err }

// ChecksumMismatchError is a file whose content does not hash to its sha256;
// it names the file and both sums.
type ChecksumMismatchError = artifact.ChecksumMismatchError

// Boot service errors (match with errors.Is).
var (
	// ErrBind: a port could not be bound (permissions, in use, wrong address).
	ErrBind = errors.New("the boot service cannot bind a port")
	// ErrStateInUse: another process holds the boot service's state_dir.
	ErrStateInUse = errors.New("the boot service state is in use")
	// ErrProvisionTimeout: the machine did not report in time.
	ErrProvisionTimeout = errors.New("timed out waiting for the machine to report")
)

// ErrImageNotFound means the boot service has no such image cached.
var ErrImageNotFound = errors.New("OS image not known to the boot service")

// ErrBootServiceNotConfigured means provisioning was asked for without a
// boot_service configuration.
var ErrBootServiceNotConfigured = errors.New("the boot service is not configured")

// ProvisionError is a provisioning that did not reach its goal; it carries
// the machine's timeline so the diagnostic can show the last step reached.
type ProvisionError struct {
	MachineID string
	Want      string
	Timeline  []TimelineEvent
	Err       error
}

func (e *ProvisionError) Error() string {
	last := "nothing (the machine never asked the boot service for anything)"
	if n := len(e.Timeline); n > 0 {
		ev := e.Timeline[n-1]
		last = fmt.Sprintf("%s/%s at %s", ev.Source, ev.Stage, ev.Time.Format(time.RFC3339))
	}
	return fmt.Sprintf("machine %s did not reach %q: %v; last step reached: %s", e.MachineID, e.Want, e.Err, last)
}

func (e *ProvisionError) Unwrap() error { return e.Err }

// FormatTimeline renders a timeline as lines for diagnostics.
func FormatTimeline(tl []TimelineEvent) string {
	if len(tl) == 0 {
		return "  (no events)"
	}
	var b strings.Builder
	for _, ev := range tl {
		fmt.Fprintf(&b, "  %s  %-8s %s", ev.Time.Format("15:04:05.000"), ev.Source, ev.Stage)
		if ev.Message != "" {
			fmt.Fprintf(&b, ": %s", ev.Message)
		}
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n")
}
