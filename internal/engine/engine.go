// Package engine is what the provider drives. One interface, two
// implementations: Embedded runs everything in-process; a remote client
// (the daemon's API) will implement the same interface. Resources never know
// which one they have.
package engine

import (
	"context"
	"log/slog"

	"github.com/composable-metal/terraform-provider-metal/internal/redfish"
)

// Engine is every operation the provider needs.
type Engine interface {
	// Systems lists the systems a BMC manages.
	Systems(ctx context.Context, bmc BMC) ([]SystemSummary, error)
	// Machine reads a machine's inventory and power state. A system that is
	// gone from its BMC gives an error matching ErrNotFound.
	Machine(ctx context.Context, bmc BMC) (*Inventory, error)
	// SetPower brings a machine on or off (idempotently: no reset when it is
	// already there), waits until the BMC reflects it, and returns the
	// inventory read afterwards.
	SetPower(ctx context.Context, bmc BMC, want PowerState, opts PowerOptions) (*Inventory, error)
	// BootOnce sets a one-time boot override and restarts (or powers on)
	// the machine into it.
	BootOnce(ctx context.Context, bmc BMC, override BootOverride) error

	// BIOS reads a machine's BIOS attributes, staged values and registry.
	BIOS(ctx context.Context, bmc BMC) (*BIOS, error)
	// ApplyBIOS brings the BIOS to a profile (stage, reboot as the apply
	// time allows, wait, verify). A value that did not stick gives a
	// *BIOSMismatchError (ErrBIOSNotApplied).
	ApplyBIOS(ctx context.Context, bmc BMC, profile BIOSProfile) (*BIOSResult, error)
	// Storage lists a machine's storage controllers, drives and volumes.
	Storage(ctx context.Context, bmc BMC) ([]StorageController, error)
	// CreateVolume validates and builds a volume, following the BMC task.
	// A failed task gives a *TaskError (ErrTaskFailed).
	CreateVolume(ctx context.Context, bmc BMC, spec VolumeSpec) (*Volume, error)
	// DeleteVolume deletes a volume; one already gone is not an error.
	DeleteVolume(ctx context.Context, bmc BMC, storageID, volumeID string) error

	// EnsureImage fetches an OS image's files into the boot service's cache,
	// verifying each sha256, and records the image under its name.
	EnsureImage(ctx context.Context, spec ImageSpec) (*ImageInfo, error)
	// Image reports a cached image, or an error matching ErrImageNotFound.
	Image(ctx context.Context, name string) (*ImageInfo, error)
	// DeleteImage forgets an image (its files stay cached by content).
	DeleteImage(ctx context.Context, name string) error
	// Render shows what a machine with these NICs would boot, with a
	// placeholder token.
	Render(ctx context.Context, bmc BMC, macs []string, spec ProvisionSpec) (*Rendered, error)
	// Provision registers the machine with the boot service, sets a one-time
	// network boot, restarts it and waits per spec.WaitFor. A machine that
	// does not get there gives a *ProvisionError with its timeline.
	Provision(ctx context.Context, bmc BMC, spec ProvisionSpec) (*ProvisionResult, error)
	// Deprovision deregisters the machine, first wiping its disks when wipe
	// is set.
	Deprovision(ctx context.Context, bmc BMC, image string, wipe bool) error
	// Timeline lists what the machine did, as seen by the boot service.
	Timeline(ctx context.Context, bmc BMC) ([]TimelineEvent, error)
	// Discovered lists unregistered machines that asked to network-boot.
	Discovered(ctx context.Context) ([]DiscoveredMachine, error)

	// PutRole validates a role and stores it in the catalog, replacing one
	// of the same name. A requirement that does not exist gives a
	// *MissingRoleError, one that closes a cycle a *CycleError.
	PutRole(ctx context.Context, role Role) (*RoleInfo, error)
	// CheckRole is PutRole without storing (plan time).
	CheckRole(ctx context.Context, role Role) error
	// CheckRoles resolves and renders a machine's roles with the facts
	// known so far (plan time).
	CheckRoles(ctx context.Context, sel RoleSelection, facts RoleFacts) error
	// Role returns a catalog role, or an error matching ErrRoleNotFound.
	Role(ctx context.Context, name string) (*RoleInfo, error)
	// DeleteRole removes a role (gone already is not an error); one that
	// other roles require gives ErrRoleInUse.
	DeleteRole(ctx context.Context, name string) error
	// ApplyRoles sets a provisioned machine's roles and waits (per ctx)
	// until its agent reports them: a failed role gives a
	// *RoleFailedError, no report ErrAgentTimeout.
	ApplyRoles(ctx context.Context, bmc BMC, sel RoleSelection) (*RoleStatus, error)
	// RoleStatus reports a machine's desired roles and its agent's last
	// report.
	RoleStatus(ctx context.Context, bmc BMC) (*RoleStatus, error)

	// Close releases what the engine holds. Safe to call more than once.
	Close() error
}

// BMC says how to reach one machine's BMC.
type BMC struct {
	// Endpoint is https://host[:port], optionally with /redfish/v1/Systems/<id>.
	Endpoint      string `json:"endpoint"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	Insecure      bool   `json:"insecure,omitempty"`
	CACertificate string `json:"ca_certificate,omitempty"`
	// SystemID picks a system on a multi-system BMC.
	SystemID string `json:"system_id,omitempty"`
}

// LogValue keeps the password out of every log line.
func (b BMC) LogValue() slog.Value {
	return slog.GroupValue(slog.String("endpoint", b.Endpoint), slog.String("system_id", b.SystemID))
}

// Types shared with the Redfish layer; aliases keep errors.Is and values
// identical across the boundary.
type (
	Inventory     = redfish.Inventory
	NIC           = redfish.NIC
	SystemSummary = redfish.SystemSummary
	PowerState    = redfish.PowerState
	PowerOptions  = redfish.PowerOptions
	BootOverride  = redfish.BootOverride
	BootTarget    = redfish.BootTarget
	BootMode      = redfish.BootMode

	BIOS              = redfish.BIOS
	BIOSAttribute     = redfish.BIOSAttribute
	BIOSProfile       = redfish.BIOSProfile
	BIOSResult        = redfish.BIOSResult
	BIOSMismatch      = redfish.BIOSMismatch
	BIOSMismatchError = redfish.BIOSMismatchError
	ApplyTime         = redfish.ApplyTime
	StorageController = redfish.StorageController
	Drive             = redfish.Drive
	Volume            = redfish.Volume
	VolumeSpec        = redfish.VolumeSpec
	DriveSelector     = redfish.DriveSelector
	TaskError         = redfish.TaskError
	TaskMessage       = redfish.TaskMessage
)

const (
	PowerOn          = redfish.PowerOn
	PowerOff         = redfish.PowerOff
	PowerPoweringOn  = redfish.PowerPoweringOn
	PowerPoweringOff = redfish.PowerPoweringOff

	BootPxe      = redfish.BootPxe
	BootHdd      = redfish.BootHdd
	BootUefiHttp = redfish.BootUefiHttp

	BootModeUEFI   = redfish.BootModeUEFI
	BootModeLegacy = redfish.BootModeLegacy

	ApplyImmediate                  = redfish.ApplyImmediate
	ApplyOnReset                    = redfish.ApplyOnReset
	ApplyAtMaintenanceWindowStart   = redfish.ApplyAtMaintenanceWindowStart
	ApplyInMaintenanceWindowOnReset = redfish.ApplyInMaintenanceWindowOnReset
)

// Errors the provider turns into precise diagnostics (match with errors.Is).
var (
	ErrNotFound        = redfish.ErrNotFound
	ErrUnauthorized    = redfish.ErrUnauthorized
	ErrUnsupported     = redfish.ErrUnsupported
	ErrTaskFailed      = redfish.ErrTaskFailed
	ErrTimeout         = redfish.ErrTimeout
	ErrUnreachable     = redfish.ErrUnreachable
	ErrTLS             = redfish.ErrTLS
	ErrAmbiguousSystem = redfish.ErrAmbiguousSystem
	ErrInvalidEndpoint = redfish.ErrInvalidEndpoint
	ErrInvalidSpec     = redfish.ErrInvalidSpec
	ErrBIOSNotApplied  = redfish.ErrBIOSNotApplied
)

// AmbiguousSystemError carries the system ids found (errors.As).
type AmbiguousSystemError = redfish.AmbiguousSystemError

// ParseEndpoint validates a BMC endpoint without contacting it (plan time).
func ParseEndpoint(raw string) (redfish.Endpoint, error) { return redfish.ParseEndpoint(raw) }
