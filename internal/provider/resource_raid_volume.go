package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/objectvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	fwpath "github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

var (
	raidTypes      = []string{"RAID0", "RAID1", "RAID5", "RAID6", "RAID10", "RAID50", "RAID60"}
	volumeInitMode = []string{"Fast", "Background", "Foreground", "Skip"}
	volumeApply    = []string{string(engine.ApplyImmediate), string(engine.ApplyOnReset)}
)

// Operations of metal_raid_volume; their timeouts are the `timeouts` block's
// defaults.
var (
	volumeCreate = operation{verb: "create", object: "RAID volume", timeoutKey: "create", timeout: shortDuration(defaultCreateTimeout)}
	volumeRead   = operation{verb: "read", object: "RAID volume", timeoutKey: "read", timeout: shortDuration(defaultReadTimeout)}
	volumeDelete = operation{verb: "delete", object: "RAID volume", timeoutKey: "delete", timeout: shortDuration(defaultDeleteTimeout)}
)

var (
	_ resource.Resource                = (*raidVolumeResource)(nil)
	_ resource.ResourceWithConfigure   = (*raidVolumeResource)(nil)
	_ resource.ResourceWithImportState = (*raidVolumeResource)(nil)
)

// NewRAIDVolumeResource returns the metal_raid_volume resource.
func NewRAIDVolumeResource() resource.Resource { return &raidVolumeResource{} }

type raidVolumeResource struct {
	engine   engine.Engine
	defaults bmcDefaults
}

type raidVolumeModel struct {
	ID            types.String        `tfsdk:"id"`
	BMC           machineBMCModel     `tfsdk:"bmc"`
	StorageID     types.String        `tfsdk:"storage_id"`
	RAIDType      types.String        `tfsdk:"raid_type"`
	Drives        types.List          `tfsdk:"drives"`
	DriveSelector *driveSelectorModel `tfsdk:"drive_selector"`
	CapacityBytes types.Int64         `tfsdk:"capacity_bytes"`
	Name          types.String        `tfsdk:"name"`
	ApplyTime     types.String        `tfsdk:"apply_time"`
	InitMode      types.String        `tfsdk:"init_mode"`
	VolumeID      types.String        `tfsdk:"volume_id"`
	DurableName   types.String        `tfsdk:"durable_name"`
	DeviceHint    types.String        `tfsdk:"device_hint"`
	Timeouts      timeouts.Value      `tfsdk:"timeouts"`
}

type driveSelectorModel struct {
	MediaType        types.String `tfsdk:"media_type"`
	Protocol         types.String `tfsdk:"protocol"`
	MinCapacityBytes types.Int64  `tfsdk:"min_capacity_bytes"`
	Count            types.Int64  `tfsdk:"count"`
}

func (r *raidVolumeResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_raid_volume"
}

func (r *raidVolumeResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := func(s string) string {
		return s + " Changing it destroys the volume and its data and builds a new one."
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A RAID volume (virtual disk) on a machine's storage controller, built through the BMC's " +
			"Redfish Storage service and followed to completion through its task monitor. Everything that would " +
			"rebuild the volume, and so destroy its data, replaces the resource. Import with " +
			"`<endpoint>#<storage_id>#<volume_id>`.",
		Attributes: map[string]schema.Attribute{
			"id": computedString("`<endpoint>#<storage_id>#<volume_id>`."),
			"bmc": schema.SingleNestedAttribute{
				Required: true,
				MarkdownDescription: "How to reach and log in to the machine's BMC, as in `metal_machine`. Settings left " +
					"unset fall back to the provider's `bmc_*` defaults.",
				Attributes: machineBMCAttributes(),
			},
			"storage_id": schema.StringAttribute{
				Optional: true,
				Computed: true,
				PlanModifiers: []planmodifier.String{
					stringplanmodifier.UseStateForUnknown(),
					stringplanmodifier.RequiresReplaceIf(systemIDChanged, replace("The storage controller."), replace("The storage controller.")),
				},
				MarkdownDescription: replace("Redfish id of the storage controller. Defaults to the system's only " +
					"RAID-capable controller; with several, an error lists them."),
			},
			"raid_type": schema.StringAttribute{
				Required:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators:          []validator.String{stringvalidator.OneOf(raidTypes...)},
				MarkdownDescription: replace("RAID level, one of " + backtickList(raidTypes) + "; it must be in the controller's `SupportedRAIDTypes`. RAID1 needs at least 2 drives, RAID5 3, RAID6 4, RAID10 an even number from 4."),
			},
			"drives": schema.ListAttribute{
				ElementType: types.StringType,
				Optional:    true,
				Computed:    true,
				PlanModifiers: []planmodifier.List{
					listplanmodifier.UseStateForUnknown(),
					listplanmodifier.RequiresReplaceIfConfigured(),
				},
				Validators: []validator.List{
					listvalidator.SizeAtLeast(1),
					listvalidator.ExactlyOneOf(fwpath.MatchRoot("drives"), fwpath.MatchRoot("drive_selector")),
				},
				MarkdownDescription: replace("Redfish ids of the drives to build the volume from. Exactly one of `drives` and `drive_selector`; with a selector this shows the drives it chose."),
			},
			"drive_selector": schema.SingleNestedAttribute{
				Optional:            true,
				PlanModifiers:       []planmodifier.Object{objectplanmodifier.RequiresReplace()},
				Validators:          []validator.Object{objectvalidator.ConflictsWith(fwpath.MatchRoot("drives"))},
				MarkdownDescription: replace("Picks `count` free drives by their properties (smallest matching drives first)."),
				Attributes: map[string]schema.Attribute{
					"media_type": schema.StringAttribute{Optional: true, MarkdownDescription: "`HDD` or `SSD`."},
					"protocol":   schema.StringAttribute{Optional: true, MarkdownDescription: "`SAS`, `SATA`, `NVMe`, ..."},
					"min_capacity_bytes": schema.Int64Attribute{Optional: true, Validators: []validator.Int64{int64validator.AtLeast(0)},
						MarkdownDescription: "Smallest drive to consider."},
					"count": schema.Int64Attribute{Required: true, Validators: []validator.Int64{int64validator.AtLeast(1)},
						MarkdownDescription: "How many drives."},
				},
			},
			"capacity_bytes": schema.Int64Attribute{
				Optional: true,
				Computed: true,
				PlanModifiers: []planmodifier.Int64{
					int64planmodifier.UseStateForUnknown(),
					int64planmodifier.RequiresReplaceIfConfigured(),
				},
				Validators:          []validator.Int64{int64validator.AtLeast(1)},
				MarkdownDescription: replace("Size of the volume. Defaults to all the drives give at this RAID level."),
			},
			"name": schema.StringAttribute{
				Optional: true,
				Computed: true,
				PlanModifiers: []planmodifier.String{
					stringplanmodifier.UseStateForUnknown(),
					stringplanmodifier.RequiresReplaceIfConfigured(),
				},
				MarkdownDescription: "Volume name; the controller picks one when unset. Changing it replaces the volume " +
					"(renaming in place is not supported yet).",
			},
			"apply_time": schema.StringAttribute{
				Optional:            true,
				Validators:          []validator.String{stringvalidator.OneOf(volumeApply...)},
				MarkdownDescription: "When the controller builds the volume: " + backtickList(volumeApply) + " (default: `Immediate`). Only used at creation.",
			},
			"init_mode": schema.StringAttribute{
				Optional:            true,
				Validators:          []validator.String{stringvalidator.OneOf(volumeInitMode...)},
				MarkdownDescription: "How the volume is initialized (Redfish `InitializeMethod`): " + backtickList(volumeInitMode) + ". Only used at creation.",
			},
			"volume_id":    computedString("Redfish id of the volume."),
			"durable_name": computedString("The volume's durable identifier (for example its NAA WWN)."),
			"device_hint":  computedString("Stable Linux device path of the volume (`/dev/disk/by-id/...`), for `metal_machine.root_device`."),
		},
		Blocks: map[string]schema.Block{"timeouts": raidVolumeTimeoutsBlock(ctx)},
	}
}

// raidVolumeTimeoutsBlock is the timeouts block with this resource's
// defaults.
func raidVolumeTimeoutsBlock(ctx context.Context) schema.Block {
	return describedTimeoutsBlock(ctx, "Limits on how long each operation may take; every BMC call runs under them.", map[string]string{
		"create": fmt.Sprintf("How long creating may take, including waiting for the controller's task to build the volume (default: `%s`).", volumeCreate.timeout),
		"read":   fmt.Sprintf("How long a refresh or import may take (default: `%s`).", volumeRead.timeout),
		"update": "Not used: an update only changes settings kept in state (credentials, `timeouts`, creation-time settings) and contacts no BMC.",
		"delete": fmt.Sprintf("How long destroying may take, including deleting the volume on the controller (default: `%s`).", volumeDelete.timeout),
	})
}

func (r *raidVolumeResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
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
}

// volumeErrorDiagnostic names the attribute to fix for storage errors and
// leaves BMC errors to engineErrorDiagnostic.
func volumeErrorDiagnostic(op operation, err error) diag.Diagnostic {
	unable := fmt.Sprintf("Unable to %s %s.", op.verb, op.object)
	var te *engine.TaskError
	switch {
	case errors.As(err, &te):
		return diag.NewErrorDiagnostic("RAID Volume Task Failed", unable+" The BMC's task ended "+te.State+
			". Check the controller and drives; nothing was created.\n\nOriginal Error: "+err.Error())
	case errors.Is(err, engine.ErrInvalidSpec):
		at := fwpath.Root("drives")
		switch {
		case strings.Contains(err.Error(), "RAID type"):
			at = fwpath.Root("raid_type")
		case strings.Contains(err.Error(), "storage controllers"):
			at = fwpath.Root("storage_id")
		case strings.Contains(err.Error(), "drive_selector"):
			at = fwpath.Root("drive_selector")
		}
		return diag.NewAttributeErrorDiagnostic(at, "Invalid RAID Volume", unable+" "+err.Error())
	case errors.Is(err, engine.ErrNotFound) && strings.Contains(err.Error(), "storage controller"):
		return diag.NewAttributeErrorDiagnostic(fwpath.Root("storage_id"), "Storage Controller Not Found", unable+" "+err.Error())
	}
	return engineErrorDiagnostic(op, err)
}

func (r *raidVolumeResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan raidVolumeModel
	var passwordWO types.String
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, pathBMC.AtName("password_wo"), &passwordWO)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Create(ctx, defaultCreateTimeout)
	resp.Diagnostics.Append(diags...)
	bmc, diags := bmcConnection(r.defaults, plan.BMC, passwordWO, volumeCreate, false)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	// Bound the BMC task: a stuck controller must not hang the apply.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx, bmc.Password)
	spec := engine.VolumeSpec{
		StorageID: plan.StorageID.ValueString(),
		RAIDType:  plan.RAIDType.ValueString(),
		Name:      plan.Name.ValueString(),
		ApplyTime: engine.ApplyTime(plan.ApplyTime.ValueString()),
		InitMode:  plan.InitMode.ValueString(),
	}
	if !plan.CapacityBytes.IsUnknown() {
		spec.CapacityBytes = plan.CapacityBytes.ValueInt64()
	}
	if !plan.Drives.IsUnknown() && !plan.Drives.IsNull() {
		resp.Diagnostics.Append(plan.Drives.ElementsAs(ctx, &spec.DriveIDs, false)...)
	}
	if s := plan.DriveSelector; s != nil {
		spec.Selector = &engine.DriveSelector{MediaType: s.MediaType.ValueString(), Protocol: s.Protocol.ValueString(),
			MinCapacityBytes: s.MinCapacityBytes.ValueInt64(), Count: int(s.Count.ValueInt64())}
	}
	if resp.Diagnostics.HasError() {
		return
	}
	vol, err := r.engine.CreateVolume(ctx, bmc, spec)
	if err != nil {
		resp.Diagnostics.Append(volumeErrorDiagnostic(volumeCreate, err))
		return
	}
	storageID := spec.StorageID
	if storageID == "" {
		storageID = storageOf(vol.Path)
	}
	plan.StorageID = types.StringValue(storageID)
	resp.Diagnostics.Append(plan.applyVolume(vol)...)
	tflog.Info(ctx, "Created RAID volume", map[string]any{"id": plan.ID.ValueString()})
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// storageOf extracts the storage id from a volume path
// (.../Storage/<id>/Volumes/<vol>).
func storageOf(p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i := len(parts) - 2; i >= 0; i-- {
		if parts[i] == "Storage" && i+1 < len(parts) {
			return parts[i+1]
		}
	}
	return ""
}

func (m *raidVolumeModel) applyVolume(v *engine.Volume) diag.Diagnostics {
	m.VolumeID = types.StringValue(v.ID)
	m.ID = types.StringValue(m.BMC.Endpoint.ValueString() + "#" + m.StorageID.ValueString() + "#" + v.ID)
	m.RAIDType = types.StringValue(v.RAIDType)
	m.CapacityBytes = types.Int64Value(v.CapacityBytes)
	m.DurableName = types.StringValue(v.DurableName)
	m.DeviceHint = types.StringValue(v.DeviceHint)
	m.Name = types.StringValue(v.Name)
	if m.BMC.SystemID.IsUnknown() {
		m.BMC.SystemID = types.StringNull()
	}
	drives, diags := types.ListValueFrom(context.Background(), types.StringType, v.DriveIDs)
	m.Drives = drives
	return diags
}

func (r *raidVolumeResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state raidVolumeModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Read(ctx, defaultReadTimeout)
	resp.Diagnostics.Append(diags...)
	bmc, diags := bmcConnection(r.defaults, state.BMC, types.StringNull(), volumeRead, true)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx, bmc.Password)
	ctrls, err := r.engine.Storage(ctx, bmc)
	if err != nil {
		resp.Diagnostics.Append(volumeErrorDiagnostic(volumeRead, err))
		return
	}
	for _, c := range ctrls {
		if c.ID != state.StorageID.ValueString() {
			continue
		}
		for _, v := range c.Volumes {
			if v.ID == state.VolumeID.ValueString() {
				resp.Diagnostics.Append(state.applyVolume(&v)...)
				resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
				return
			}
		}
	}
	tflog.Warn(ctx, "RAID volume is gone from the BMC; removing it from state", map[string]any{"id": state.ID.ValueString()})
	resp.State.RemoveResource(ctx)
}

// Update only takes changes that do not touch the volume (credentials,
// creation-time settings); everything else replaces it.
func (r *raidVolumeResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state raidVolumeModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	plan.ID, plan.VolumeID, plan.StorageID = state.ID, state.VolumeID, state.StorageID
	plan.DurableName, plan.DeviceHint, plan.CapacityBytes, plan.Drives = state.DurableName, state.DeviceHint, state.CapacityBytes, state.Drives
	plan.Name = state.Name
	if plan.BMC.SystemID.IsUnknown() {
		plan.BMC.SystemID = state.BMC.SystemID
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *raidVolumeResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state raidVolumeModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	bmc, diags := bmcConnection(r.defaults, state.BMC, types.StringNull(), volumeDelete, true)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx, bmc.Password)
	if err := r.engine.DeleteVolume(ctx, bmc, state.StorageID.ValueString(), state.VolumeID.ValueString()); err != nil {
		resp.Diagnostics.Append(volumeErrorDiagnostic(volumeDelete, err))
	}
}

func (r *raidVolumeResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	parts := strings.Split(strings.TrimSpace(req.ID), "#")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		resp.Diagnostics.AddError("Invalid Import ID",
			fmt.Sprintf("Unable to import metal_raid_volume from %q.\n\nExpected \"<endpoint>#<storage_id>#<volume_id>\", "+
				"for example \"https://10.0.0.5#RAID.Integrated.1-1#Disk.Virtual.0:RAID.Integrated.1-1\". Credentials "+
				"never go in the ID: import uses the provider's `bmc_username`/`bmc_password`.", req.ID))
		return
	}
	endpoint, systemID, err := parseImportID(parts[0])
	if err != nil {
		resp.Diagnostics.AddError("Invalid Import ID", fmt.Sprintf("Unable to import metal_raid_volume from %q: %s.", req.ID, err))
		return
	}
	bmc := machineBMCModel{
		Endpoint: types.StringValue(endpoint), Username: types.StringNull(), Password: types.StringNull(),
		PasswordWO: types.StringNull(), PasswordWOVersion: types.Int64Null(), Insecure: types.BoolValue(false),
		CACertificate: types.StringNull(), SystemID: types.StringNull(),
	}
	if systemID != "" {
		bmc.SystemID = types.StringValue(systemID)
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, pathBMC, bmc)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, fwpath.Root("storage_id"), parts[1])...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, fwpath.Root("volume_id"), parts[2])...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, fwpath.Root("id"), req.ID)...)
}
