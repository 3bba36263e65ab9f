package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-nettypes/hwtypes"
	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	fwpath "github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/float64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// Values of power_state and on_destroy. The validators and the descriptions
// are built from these slices.
const (
	powerStateOn  = "on"
	powerStateOff = "off"

	onDestroyPowerOff = "power_off"
	onDestroyWipe     = "wipe"
	onDestroyNone     = "none"
)

var (
	powerStates      = []string{powerStateOn, powerStateOff}
	onDestroyActions = []string{onDestroyPowerOff, onDestroyWipe, onDestroyNone}
)

// Default operation timeouts.
const (
	defaultCreateTimeout = 20 * time.Minute
	defaultReadTimeout   = 5 * time.Minute
	defaultUpdateTimeout = 20 * time.Minute
	defaultDeleteTimeout = 10 * time.Minute
)

// Transitional power states the engine may report (Redfish PowerState).
var (
	_ resource.Resource                   = (*machineResource)(nil)
	_ resource.ResourceWithConfigure      = (*machineResource)(nil)
	_ resource.ResourceWithImportState    = (*machineResource)(nil)
	_ resource.ResourceWithValidateConfig = (*machineResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*machineResource)(nil)
)

// NewMachineResource returns the metal_machine resource.
func NewMachineResource() resource.Resource { return &machineResource{} }

// machineResource is one bare-metal machine, reached through its BMC.
type machineResource struct {
	engine   engine.Engine
	defaults bmcDefaults
	// boot is the provider's boot service configuration; nil without one.
	boot *engine.BootConfig
}

type machineResourceModel struct {
	ID           types.String       `tfsdk:"id"`
	BMC          machineBMCModel    `tfsdk:"bmc"`
	PowerState   types.String       `tfsdk:"power_state"`
	BootMAC      hwtypes.MACAddress `tfsdk:"boot_mac"`
	OnDestroy    types.String       `tfsdk:"on_destroy"`
	UUID         types.String       `tfsdk:"uuid"`
	Manufacturer types.String       `tfsdk:"manufacturer"`
	Model        types.String       `tfsdk:"model"`
	SerialNumber types.String       `tfsdk:"serial_number"`
	BIOSVersion  types.String       `tfsdk:"bios_version"`
	CPUCount     types.Int64        `tfsdk:"cpu_count"`
	CPUModel     types.String       `tfsdk:"cpu_model"`
	MemoryGiB    types.Float64      `tfsdk:"memory_gib"`
	BootMode     types.String       `tfsdk:"boot_mode"`
	NICs         types.List         `tfsdk:"nics"`
	Timeouts     timeouts.Value     `tfsdk:"timeouts"`
	BIOSProfile  *biosProfileModel  `tfsdk:"bios_profile"`

	// Provisioning inputs.
	OSImage           types.String `tfsdk:"os_image"`
	Hostname          types.String `tfsdk:"hostname"`
	SSHAuthorizedKeys types.List   `tfsdk:"ssh_authorized_keys"`
	UserData          types.String `tfsdk:"user_data"`
	IPAddress         types.String `tfsdk:"ip_address"`
	Gateway           types.String `tfsdk:"gateway"`
	DNS               types.List   `tfsdk:"dns"`
	RootDevice        types.String `tfsdk:"root_device"`
	WaitFor           types.String `tfsdk:"wait_for"`

	// Provisioning results.
	MachineID        types.String `tfsdk:"machine_id"`
	Timeline         types.List   `tfsdk:"timeline"`
	RenderedIPXE     types.String `tfsdk:"rendered_ipxe"`
	RenderedUserData types.String `tfsdk:"rendered_user_data"`

	Roles          types.List `tfsdk:"roles"`
	RoleParameters types.Map  `tfsdk:"role_parameters"`
	RolesFailed    types.List `tfsdk:"roles_failed"`
}

type machineBMCModel struct {
	Endpoint          types.String `tfsdk:"endpoint"`
	Username          types.String `tfsdk:"username"`
	Password          types.String `tfsdk:"password"`
	PasswordWO        types.String `tfsdk:"password_wo"`
	PasswordWOVersion types.Int64  `tfsdk:"password_wo_version"`
	Insecure          types.Bool   `tfsdk:"insecure"`
	CACertificate     types.String `tfsdk:"ca_certificate"`
	SystemID          types.String `tfsdk:"system_id"`
}

var nicAttrTypes = map[string]attr.Type{
	"id":          types.StringType,
	"mac":         types.StringType,
	"link_status": types.StringType,
	"link_up":     types.BoolType,
}

func (r *machineResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_machine"
}

func (r *machineResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = machineResourceSchemaV0(ctx)
}

func machineResourceSchemaV0(ctx context.Context) schema.Schema {
	return schema.Schema{
		Version: 0,
		MarkdownDescription: "A bare-metal machine controlled through its BMC over Redfish. Creating it powers the " +
			"machine to `power_state` and records its inventory, or, with `os_image`, installs an operating system " +
			"over the network through the provider's `boot_service`; refresh detects power changes made outside " +
			"Terraform; destroying it powers the machine off unless `on_destroy` is `" + onDestroyNone + "`. " +
			"Destroying erases disks only with `on_destroy = \"" + onDestroyWipe + "\"`, and never releases the hardware.",
		Attributes: mergeAttributes(map[string]schema.Attribute{
			"bios_profile": machineBIOSProfileAttribute(),
			// Required attributes
			"bmc": schema.SingleNestedAttribute{
				Required: true,
				MarkdownDescription: "How to reach and log in to the machine's BMC. Settings left unset fall back to " +
					"the provider's `bmc_*` defaults and the `" + envBMCUsername + "`/`" + envBMCPassword + "` environment variables.",
				Attributes: machineBMCAttributes(),
			},

			// Optional attributes
			"power_state": schema.StringAttribute{
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString(powerStateOn),
				Validators: []validator.String{
					stringvalidator.OneOf(powerStates...),
				},
				MarkdownDescription: "The power state to keep the machine in. Refresh reads the real state " +
					"(a machine that is powering on reads as `on`, one powering off as `off`), so a change made outside " +
					"Terraform shows up as a diff. Turning a machine off asks the OS to shut down gracefully and forces " +
					"it off only if that does not finish in time. Allowed values: " + backtickList(powerStates) +
					" (default: `" + powerStateOn + "`).",
			},
			"boot_mac": schema.StringAttribute{
				CustomType: hwtypes.MACAddressType{},
				Optional:   true,
				Computed:   true,
				PlanModifiers: []planmodifier.String{
					stringplanmodifier.UseStateForUnknown(),
				},
				MarkdownDescription: "MAC address of the network interface the machine network-boots from. It must " +
					"belong to one of the machine's NICs; an address that does not is an error listing the ones found. " +
					"Defaults to the MAC of the first NIC with link, or of the first NIC when none has link.",
			},
			"on_destroy": schema.StringAttribute{
				Optional: true,
				Computed: true,
				Default:  stringdefault.StaticString(onDestroyPowerOff),
				Validators: []validator.String{
					stringvalidator.OneOf(onDestroyActions...),
				},
				MarkdownDescription: "What destroying this resource does to the machine: `" + onDestroyPowerOff +
					"` shuts it down (gracefully first); `" + onDestroyWipe + "` (only with `os_image`) first network-boots " +
					"the image's kernel to erase `root_device` (or the installer's default disk), waits until it reports, " +
					"then shuts it down; `" + onDestroyNone + "` leaves it running. With `os_image` every choice also " +
					"removes the machine from the boot service, so it is never installed again by accident. Allowed values: " +
					backtickList(onDestroyActions) + " (default: `" + onDestroyPowerOff + "`).",
			},

			// Computed attributes
			"id": schema.StringAttribute{
				Computed: true,
				PlanModifiers: []planmodifier.String{
					stringplanmodifier.UseStateForUnknown(),
				},
				MarkdownDescription: "Identifier of the machine: `<bmc.endpoint>#<bmc.system_id>`. " +
					"The same form is accepted by `terraform import`.",
			},
			"uuid":          computedString("The system UUID reported by the BMC."),
			"manufacturer":  computedString("The system manufacturer reported by the BMC."),
			"model":         computedString("The system model reported by the BMC."),
			"serial_number": computedString("The system serial number reported by the BMC."),
			"bios_version":  computedString("The BIOS or UEFI firmware version reported by the BMC."),
			"cpu_count": schema.Int64Attribute{
				Computed:            true,
				PlanModifiers:       []planmodifier.Int64{int64planmodifier.UseStateForUnknown()},
				MarkdownDescription: "The number of CPU sockets populated, as reported by the BMC.",
			},
			"cpu_model": computedString("The CPU model reported by the BMC."),
			"memory_gib": schema.Float64Attribute{
				Computed:            true,
				PlanModifiers:       []planmodifier.Float64{float64planmodifier.UseStateForUnknown()},
				MarkdownDescription: "The total system memory in GiB, as reported by the BMC.",
			},
			"boot_mode": computedString("The boot mode the BMC reports for boot overrides, such as `UEFI` or `Legacy`; " +
				"empty when the BMC does not say."),
			"nics": schema.ListNestedAttribute{
				Computed: true,
				MarkdownDescription: "The machine's network interfaces, in the order the BMC lists them. " +
					"Read again on every refresh.",
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"id": schema.StringAttribute{
							Computed:            true,
							MarkdownDescription: "The BMC's identifier of the interface.",
						},
						"mac": schema.StringAttribute{
							Computed:            true,
							MarkdownDescription: "The interface's MAC address, in lower case with colons.",
						},
						"link_status": schema.StringAttribute{
							Computed:            true,
							MarkdownDescription: "The link status as the BMC reports it, such as `LinkUp`, `LinkDown` or `NoLink`.",
						},
						"link_up": schema.BoolAttribute{
							Computed:            true,
							MarkdownDescription: "Whether the interface has link.",
						},
					},
				},
			},
		}, machineProvisioningAttributes(), machineRoleAttributes()),
		Blocks: map[string]schema.Block{
			"timeouts": timeoutsBlock(ctx),
		},
	}
}

func machineBMCAttributes() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"endpoint": schema.StringAttribute{
			Required: true,
			PlanModifiers: []planmodifier.String{
				stringplanmodifier.RequiresReplace(),
			},
			Validators: []validator.String{endpointValidator{}},
			MarkdownDescription: "Address of the BMC's Redfish service: `https://host[:port]`, optionally followed by " +
				"`/redfish/v1/Systems/<id>` to name the system. `http://` is accepted for simulators and labs. " +
				"It is checked when planning, without contacting the BMC. Changing it replaces the resource.",
		},
		"username": schema.StringAttribute{
			Optional: true,
			MarkdownDescription: "BMC username. Defaults to the provider's `bmc_username`, then the `" +
				envBMCUsername + "` environment variable.",
		},
		"password": schema.StringAttribute{
			Optional:  true,
			Sensitive: true,
			Validators: []validator.String{
				stringvalidator.ConflictsWith(fwpath.MatchRelative().AtParent().AtName("password_wo")),
			},
			MarkdownDescription: "BMC password. It is stored in Terraform state (marked sensitive); prefer " +
				"`password_wo`, which is not. Defaults to the provider's `bmc_password`, then the `" + envBMCPassword +
				"` environment variable. Conflicts with `password_wo`.",
		},
		"password_wo": schema.StringAttribute{
			Optional:  true,
			Sensitive: true,
			WriteOnly: true,
			MarkdownDescription: "Write-only BMC password (Terraform 1.11 or later): used to create and update the " +
				"machine and never stored in state or plan. Terraform does not send write-only values to refresh, " +
				"import or destroy, so those use the provider's `bmc_password` or the `" + envBMCPassword +
				"` environment variable, and fail with an error saying so when neither is set. " +
				"Change `password_wo_version` to make Terraform use a new value. Conflicts with `password`.",
		},
		"password_wo_version": schema.Int64Attribute{
			Optional: true,
			Validators: []validator.Int64{
				int64validator.AlsoRequires(fwpath.MatchRelative().AtParent().AtName("password_wo")),
			},
			MarkdownDescription: "Any number that you change whenever `password_wo` changes. Because write-only " +
				"values are not stored, a change of this number is what triggers an update, which reads the machine " +
				"again with the new password. Requires `password_wo`.",
		},
		"insecure": schema.BoolAttribute{
			Optional: true,
			Computed: true,
			Default:  booldefault.StaticBool(false),
			MarkdownDescription: "Skip verification of the BMC's TLS certificate (default: `false`). Lab-only opt-in: " +
				"anyone on the path could read the credentials. Verification is also skipped when the provider sets " +
				"`bmc_insecure = true`. Prefer `ca_certificate`.",
		},
		"ca_certificate": schema.StringAttribute{
			Optional: true,
			MarkdownDescription: "PEM-encoded CA certificate(s) to trust for this BMC instead of the system's trust " +
				"store, such as the CA of a BMC's self-signed certificate. Defaults to the provider's `bmc_ca_certificate`.",
		},
		"system_id": schema.StringAttribute{
			Optional: true,
			Computed: true,
			PlanModifiers: []planmodifier.String{
				stringplanmodifier.UseStateForUnknown(),
				stringplanmodifier.RequiresReplaceIf(systemIDChanged,
					"Changing the system of a known machine replaces the resource.",
					"Changing the system of a known machine replaces the resource."),
			},
			MarkdownDescription: "Redfish id of the system, for a BMC that manages several (an error lists the ids " +
				"found when it is needed and unset). Defaults to the id in `endpoint`, else the BMC's only system. " +
				"Changing it from a known value replaces the resource.",
		},
	}
}

// systemIDChanged requires replacement when a known system id changes.
func systemIDChanged(_ context.Context, req planmodifier.StringRequest, resp *stringplanmodifier.RequiresReplaceIfFuncResponse) {
	if req.StateValue.IsNull() || req.StateValue.IsUnknown() || req.PlanValue.IsNull() || req.PlanValue.IsUnknown() {
		return
	}
	resp.RequiresReplace = req.StateValue.ValueString() != req.PlanValue.ValueString()
}

func computedString(description string) schema.StringAttribute {
	return schema.StringAttribute{
		Computed:            true,
		PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
		MarkdownDescription: description,
	}
}

// timeoutsBlock is the framework-timeouts block with descriptions that state
// this resource's defaults.
func timeoutsBlock(ctx context.Context) schema.Block {
	return describedTimeoutsBlock(ctx, "Limits on how long each operation may take; every BMC call runs under them.", map[string]string{
		"create": fmt.Sprintf("How long creating may take, including waiting for the machine to reach `power_state` and, with `os_image`, to reach `wait_for` (default: `%s`).", shortDuration(defaultCreateTimeout)),
		"read":   fmt.Sprintf("How long a refresh or import may take (default: `%s`).", shortDuration(defaultReadTimeout)),
		"update": fmt.Sprintf("How long an update may take, including a power change (default: `%s`).", shortDuration(defaultUpdateTimeout)),
		"delete": fmt.Sprintf("How long destroying may take, including a graceful shutdown and, with `on_destroy = \"wipe\"`, erasing the disk (default: `%s`).", shortDuration(defaultDeleteTimeout)),
	})
}

// describedTimeoutsBlock is the framework's timeouts block with our
// descriptions (the framework's own are generic) on the block and each
// duration attribute.
func describedTimeoutsBlock(ctx context.Context, summary string, descriptions map[string]string) schema.Block {
	const unit = " A duration such as `30s`, `10m` or `1h`."
	b := timeouts.Block(ctx, timeouts.Opts{
		Create: true, Read: true, Update: true, Delete: true,
		CreateDescription: descriptions["create"] + unit,
		ReadDescription:   descriptions["read"] + unit,
		UpdateDescription: descriptions["update"] + unit,
		DeleteDescription: descriptions["delete"] + unit,
	})
	block, ok := b.(schema.SingleNestedBlock)
	if !ok {
		return b
	}
	block.MarkdownDescription = summary
	for name, a := range block.Attributes {
		if s, ok := a.(schema.StringAttribute); ok {
			s.MarkdownDescription = descriptions[name] + unit
			block.Attributes[name] = s
		}
	}
	return block
}

// shortDuration renders 20*time.Minute as "20m" rather than "20m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func backtickList(values []string) string {
	return "`" + strings.Join(values, "`, `") + "`"
}

func (r *machineResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	if req.ProviderData == nil {
		return
	}
	data, ok := req.ProviderData.(*providerData)
	if !ok {
		resp.Diagnostics.AddError("Unexpected Resource Configure Type",
			fmt.Sprintf("Expected *providerData, got: %T. Please report this issue to the provider developers.", req.ProviderData))
		return
	}
	r.engine = data.engine
	r.defaults = data.defaults
	r.boot = data.boot
}

func (r *machineResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	resp.Diagnostics.Append(validateProvisioningConfig(ctx, req.Config)...)
	var endpoint, systemID types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, pathBMCEndpoint, &endpoint)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, pathBMCSystemID, &systemID)...)
	if resp.Diagnostics.HasError() || endpoint.IsNull() || endpoint.IsUnknown() || systemID.IsNull() || systemID.IsUnknown() {
		return
	}
	ep, err := engine.ParseEndpoint(endpoint.ValueString())
	if err != nil || ep.SystemID == "" || ep.SystemID == systemID.ValueString() {
		return
	}
	resp.Diagnostics.AddAttributeError(pathBMCSystemID, "Conflicting BMC System",
		fmt.Sprintf("`bmc.endpoint` names system %q but `bmc.system_id` is %q. Name the system in one place only.",
			ep.SystemID, systemID.ValueString()))
}

func (r *machineResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan machineResourceModel
	var passwordWO types.String
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, pathBMC.AtName("password_wo"), &passwordWO)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Create(ctx, defaultCreateTimeout)
	resp.Diagnostics.Append(diags...)
	bmc, diags := bmcConnection(r.defaults, plan.BMC, passwordWO, opCreate, false)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx, bmc.Password, passwordWO.ValueString())
	tflog.Debug(ctx, "Creating machine", map[string]any{"endpoint": bmc.Endpoint, "system_id": bmc.SystemID})

	inv, err := r.engine.Machine(ctx, bmc)
	if err != nil {
		resp.Diagnostics.Append(engineErrorDiagnostic(opCreate, err))
		return
	}
	bmc.SystemID = inv.SystemID
	if d := checkBootMAC(plan.BootMAC, inv); d != nil {
		resp.Diagnostics.Append(d)
		return
	}
	if d := r.applyMachineBIOS(ctx, bmc, plan.BIOSProfile, opCreate); d.HasError() {
		resp.Diagnostics.Append(d...)
		return
	}
	if !plan.OSImage.IsNull() {
		r.createProvisioned(ctx, bmc, inv, &plan, resp)
		return
	}
	plan.clearProvisioning()

	after, err := r.engine.SetPower(ctx, bmc, enginePowerState(plan.PowerState.ValueString()), engine.PowerOptions{})
	if err != nil {
		// The system is identified and may be changing power: record it so it
		// does not vanish (Terraform taints it) before reporting the error.
		plan.applyInventory(inv, true)
		plan.PowerState = types.StringValue(powerStateValue(inv.PowerState))
		resp.Diagnostics.Append(engineErrorDiagnostic(opCreate, err))
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}
	plan.applyInventory(after, true)
	tflog.Info(ctx, "Created machine", map[string]any{"id": plan.ID.ValueString(), "power_state": plan.PowerState.ValueString()})
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *machineResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state machineResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Read(ctx, defaultReadTimeout)
	resp.Diagnostics.Append(diags...)
	bmc, diags := bmcConnection(r.defaults, state.BMC, types.StringNull(), opRead, true)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx, bmc.Password)

	inv, err := r.engine.Machine(ctx, bmc)
	if err != nil {
		if errors.Is(err, engine.ErrNotFound) && r.systemGone(ctx, bmc) {
			tflog.Warn(ctx, "Machine is gone from its BMC; removing it from state", map[string]any{"endpoint": bmc.Endpoint, "system_id": bmc.SystemID})
			resp.Diagnostics.AddWarning("Machine Gone From BMC",
				fmt.Sprintf("The BMC at %s no longer lists system %q, so the machine was removed from Terraform state. "+
					"If it is still in the configuration, the next plan creates it again.", bmc.Endpoint, bmc.SystemID))
			resp.State.RemoveResource(ctx)
			return
		}
		resp.Diagnostics.Append(engineErrorDiagnostic(opRead, err))
		return
	}
	state.applyInventory(inv, false)
	state.PowerState = types.StringValue(powerStateValue(inv.PowerState))
	resp.Diagnostics.Append(r.readMachineBIOS(ctx, bmc, &state)...)
	r.readRoles(ctx, bmc, &state)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// systemGone confirms a not-found answer by listing the BMC's systems: only a
// BMC that answers and does not list the system means the machine is gone,
// never a misrouted endpoint.
func (r *machineResource) systemGone(ctx context.Context, bmc engine.BMC) bool {
	systems, err := r.engine.Systems(ctx, bmc)
	if err != nil {
		return false
	}
	for _, s := range systems {
		if bmc.SystemID != "" && (s.ID == bmc.SystemID || path.Base(s.Path) == bmc.SystemID) {
			return false
		}
	}
	return bmc.SystemID != "" || len(systems) == 0
}

func (r *machineResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan machineResourceModel
	var passwordWO types.String
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, pathBMC.AtName("password_wo"), &passwordWO)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Update(ctx, defaultUpdateTimeout)
	resp.Diagnostics.Append(diags...)
	bmc, diags := bmcConnection(r.defaults, plan.BMC, passwordWO, opUpdate, false)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx, bmc.Password, passwordWO.ValueString())

	// Reading first proves the (possibly new) credentials and validates boot_mac.
	inv, err := r.engine.Machine(ctx, bmc)
	if err != nil {
		resp.Diagnostics.Append(engineErrorDiagnostic(opUpdate, err))
		return
	}
	bmc.SystemID = inv.SystemID
	if d := checkBootMAC(plan.BootMAC, inv); d != nil {
		resp.Diagnostics.Append(d)
		return
	}
	var prior machineResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if plan.BIOSProfile != nil && !plan.BIOSProfile.equal(prior.BIOSProfile) {
		if d := r.applyMachineBIOS(ctx, bmc, plan.BIOSProfile, opUpdate); d.HasError() {
			resp.Diagnostics.Append(d...)
			return
		}
		// Applying rebooted the machine: read its power again.
		if inv, err = r.engine.Machine(ctx, bmc); err != nil {
			resp.Diagnostics.Append(engineErrorDiagnostic(opUpdate, err))
			return
		}
	}
	if want := enginePowerState(plan.PowerState.ValueString()); inv.PowerState != want {
		tflog.Debug(ctx, "Changing machine power", map[string]any{"id": plan.ID.ValueString(), "from": string(inv.PowerState), "to": string(want)})
		inv, err = r.engine.SetPower(ctx, bmc, want, engine.PowerOptions{})
		if err != nil {
			resp.Diagnostics.Append(engineErrorDiagnostic(opUpdate, err))
			return
		}
	}
	plan.applyInventory(inv, true)
	if !prior.MachineID.IsNull() && (rolesChanged(&plan, &prior) || len(prior.RolesFailed.Elements()) > 0) {
		if !r.applyRoles(ctx, bmc, &plan, &prior, resp) {
			return
		}
	}
	if plan.RenderedIPXE.IsUnknown() || plan.RenderedUserData.IsUnknown() {
		// A role changed with this machine: render what an install would
		// use now that the catalog holds it.
		if spec, known, d := plan.provisionSpec(ctx); known && !d.HasError() {
			if out, err := r.render(ctx, bmc, nicMACs(ctx, plan.NICs), spec); err == nil {
				plan.RenderedIPXE, plan.RenderedUserData = out.ipxe, out.userData
			}
		}
	}
	plan.keepProvisioning(&prior)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *machineResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state machineResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if !state.OSImage.IsNull() {
		r.deleteProvisioned(ctx, &state, resp)
		return
	}
	if state.OnDestroy.ValueString() == onDestroyNone {
		tflog.Info(ctx, "Leaving machine as it is (on_destroy = \"none\")", map[string]any{"id": state.ID.ValueString()})
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	bmc, diags := bmcConnection(r.defaults, state.BMC, types.StringNull(), opDelete, true)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx, bmc.Password)

	if _, err := r.engine.SetPower(ctx, bmc, engine.PowerOff, engine.PowerOptions{}); err != nil {
		if errors.Is(err, engine.ErrNotFound) && r.systemGone(ctx, bmc) {
			tflog.Warn(ctx, "Machine already gone from its BMC", map[string]any{"id": state.ID.ValueString()})
			return
		}
		resp.Diagnostics.Append(engineErrorDiagnostic(opDelete, err))
		return
	}
	tflog.Info(ctx, "Powered machine off", map[string]any{"id": state.ID.ValueString()})
}

func (r *machineResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	endpoint, systemID, err := parseImportID(req.ID)
	if err != nil {
		resp.Diagnostics.AddError("Invalid Import ID",
			fmt.Sprintf("Unable to import metal_machine from %q: %s.\n\n"+
				"Expected \"<endpoint>\" or \"<endpoint>#<system_id>\", for example \"https://10.0.0.5\" or "+
				"\"https://10.0.0.5#System.Embedded.1\". Credentials never go in the ID: import uses the provider's "+
				"`bmc_username`/`bmc_password` or METAL_BMC_USERNAME/METAL_BMC_PASSWORD.", req.ID, err))
		return
	}
	bmc := machineBMCModel{
		Endpoint:          types.StringValue(endpoint),
		Username:          types.StringNull(),
		Password:          types.StringNull(),
		PasswordWO:        types.StringNull(),
		PasswordWOVersion: types.Int64Null(),
		Insecure:          types.BoolValue(false),
		CACertificate:     types.StringNull(),
		SystemID:          types.StringNull(),
	}
	if systemID != "" {
		bmc.SystemID = types.StringValue(systemID)
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, pathBMC, bmc)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, fwpath.Root("on_destroy"), onDestroyPowerOff)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, fwpath.Root("wait_for"), engine.WaitProvisioned)...)
}

// parseImportID splits "<endpoint>" or "<endpoint>#<system_id>". The
// endpoint is validated like the attribute; a system id may come from the
// endpoint's path or after "#", and the two must agree.
func parseImportID(id string) (endpoint, systemID string, err error) {
	id = strings.TrimSpace(id)
	endpoint, systemID, hasHash := strings.Cut(id, "#")
	if hasHash && systemID == "" {
		return "", "", errors.New("nothing follows \"#\"; give a system id or leave out the \"#\"")
	}
	ep, err := engine.ParseEndpoint(endpoint)
	if err != nil {
		return "", "", err
	}
	switch {
	case systemID == "":
		systemID = ep.SystemID
	case ep.SystemID != "" && ep.SystemID != systemID:
		return "", "", fmt.Errorf("the endpoint names system %q but the ID names %q", ep.SystemID, systemID)
	}
	return endpoint, systemID, nil
}

// bmcConnection builds the engine's view of a bmc block: the block's settings,
// then a write-only password, then the provider's defaults. fromState says
// the block came from state (refresh, import, destroy), where a write-only
// password can never be available.
func bmcConnection(defaults bmcDefaults, m machineBMCModel, passwordWO types.String, op operation, fromState bool) (engine.BMC, diag.Diagnostics) {
	var diags diag.Diagnostics
	bmc := resolveBMC(defaults, m.Endpoint, m.Username, m.Password, m.Insecure, m.CACertificate)
	if pw := passwordWO.ValueString(); pw != "" && m.Password.ValueString() == "" {
		bmc.Password = pw
	}
	if !m.SystemID.IsNull() && !m.SystemID.IsUnknown() {
		bmc.SystemID = m.SystemID.ValueString()
	}
	if bmc.Username == "" {
		diags.Append(missingUsernameDiagnostic())
	}
	if bmc.Password == "" {
		if fromState {
			diags.Append(missingStatePasswordDiagnostic(op))
		} else {
			diags.Append(missingPasswordDiagnostic())
		}
	}
	return bmc, diags
}

// resolveBMC layers a bmc block over the provider defaults.
func resolveBMC(d bmcDefaults, endpoint, username, password types.String, insecure types.Bool, ca types.String) engine.BMC {
	bmc := engine.BMC{
		Endpoint:      endpoint.ValueString(),
		Username:      d.username,
		Password:      d.password,
		Insecure:      d.insecure || insecure.ValueBool(),
		CACertificate: d.caCertificate,
	}
	if v := username.ValueString(); v != "" {
		bmc.Username = v
	}
	if v := password.ValueString(); v != "" {
		bmc.Password = v
	}
	if v := ca.ValueString(); v != "" {
		bmc.CACertificate = v
	}
	return bmc
}

// applyInventory copies what the BMC reported into the model. With
// onlyUnknown it fills only values the plan left unknown, so an apply never
// contradicts its plan; otherwise (refresh) it overwrites them all.
func (m *machineResourceModel) applyInventory(inv *engine.Inventory, onlyUnknown bool) {
	setString := func(v *types.String, s string) {
		if !onlyUnknown || v.IsUnknown() {
			*v = types.StringValue(s)
		}
	}
	setString(&m.BMC.SystemID, inv.SystemID)
	setString(&m.ID, machineID(m.BMC.Endpoint.ValueString(), inv.SystemID))
	setString(&m.UUID, inv.UUID)
	setString(&m.Manufacturer, inv.Manufacturer)
	setString(&m.Model, inv.Model)
	setString(&m.SerialNumber, inv.SerialNumber)
	setString(&m.BIOSVersion, inv.BIOSVersion)
	setString(&m.CPUModel, inv.CPUModel)
	setString(&m.BootMode, inv.BootMode)
	if !onlyUnknown || m.CPUCount.IsUnknown() {
		m.CPUCount = types.Int64Value(int64(inv.CPUCount))
	}
	if !onlyUnknown || m.MemoryGiB.IsUnknown() {
		m.MemoryGiB = types.Float64Value(inv.MemoryGiB)
	}
	if !onlyUnknown || m.NICs.IsUnknown() {
		m.NICs = nicsValue(inv.NICs)
	}
	// boot_mac keeps a configured or recorded value; only an unset one
	// (unknown at create, null after import) takes the default.
	if m.BootMAC.IsUnknown() || m.BootMAC.IsNull() {
		if mac := inv.FirstLinkedMAC(); mac != "" {
			m.BootMAC = hwtypes.NewMACAddressValue(mac)
		} else {
			m.BootMAC = hwtypes.NewMACAddressNull()
		}
	}
	if m.PowerState.IsUnknown() || m.PowerState.IsNull() {
		m.PowerState = types.StringValue(powerStateValue(inv.PowerState))
	}
}

func nicsValue(nics []engine.NIC) types.List {
	objType := types.ObjectType{AttrTypes: nicAttrTypes}
	elems := make([]attr.Value, 0, len(nics))
	for _, n := range nics {
		elems = append(elems, types.ObjectValueMust(nicAttrTypes, map[string]attr.Value{
			"id":          types.StringValue(n.ID),
			"mac":         types.StringValue(n.MAC),
			"link_status": types.StringValue(n.LinkStatus),
			"link_up":     types.BoolValue(n.LinkUp),
		}))
	}
	return types.ListValueMust(objType, elems)
}

// machineID is the resource id and the long import ID form.
func machineID(endpoint, systemID string) string { return endpoint + "#" + systemID }

// powerStateValue maps a Redfish power state onto power_state: transitions
// count as where they are heading.
func powerStateValue(p engine.PowerState) string {
	switch p {
	case engine.PowerOn, engine.PowerPoweringOn:
		return powerStateOn
	case engine.PowerOff, engine.PowerPoweringOff:
		return powerStateOff
	}
	return strings.ToLower(string(p))
}

func enginePowerState(v string) engine.PowerState {
	if v == powerStateOff {
		return engine.PowerOff
	}
	return engine.PowerOn
}

// checkBootMAC reports a configured boot_mac that is not on the machine.
func checkBootMAC(mac hwtypes.MACAddress, inv *engine.Inventory) diag.Diagnostic {
	if mac.IsNull() || mac.IsUnknown() {
		return nil
	}
	want, diags := mac.ValueMACAddress()
	if diags.HasError() {
		return diag.NewAttributeErrorDiagnostic(pathBootMAC, "Invalid Boot MAC", fmt.Sprintf("%q is not a MAC address.", mac.ValueString()))
	}
	found := make([]string, 0, len(inv.NICs))
	for _, n := range inv.NICs {
		if n.MAC == "" {
			continue
		}
		found = append(found, n.MAC)
		if hw, err := net.ParseMAC(n.MAC); err == nil && bytes.Equal(hw, want) {
			return nil
		}
	}
	reported := "no network interfaces with a MAC address"
	if len(found) > 0 {
		reported = strings.Join(found, ", ")
	}
	return diag.NewAttributeErrorDiagnostic(pathBootMAC, "Boot MAC Not On Machine",
		fmt.Sprintf("`boot_mac` %s is not a MAC address of system %q. The BMC reports: %s. "+
			"Set `boot_mac` to one of them, or leave it unset to use the first NIC with link.",
			mac.ValueString(), inv.SystemID, reported))
}
