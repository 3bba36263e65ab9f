package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	fwpath "github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

var biosApplyTimes = []string{string(engine.ApplyImmediate), string(engine.ApplyOnReset), string(engine.ApplyAtMaintenanceWindowStart)}

var pathBIOSProfile = fwpath.Root("bios_profile")

type biosProfileModel struct {
	ID                        types.String `tfsdk:"id"`
	Name                      types.String `tfsdk:"name"`
	Attributes                types.Map    `tfsdk:"attributes"`
	ResetToDefaults           types.Bool   `tfsdk:"reset_to_defaults"`
	ApplyTime                 types.String `tfsdk:"apply_time"`
	MaintenanceWindowStart    types.String `tfsdk:"maintenance_window_start"`
	MaintenanceWindowDuration types.String `tfsdk:"maintenance_window_duration"`
}

var (
	_ resource.Resource                   = (*biosProfileResource)(nil)
	_ resource.ResourceWithValidateConfig = (*biosProfileResource)(nil)
)

// NewBIOSProfileResource returns the metal_bios_profile resource.
func NewBIOSProfileResource() resource.Resource { return &biosProfileResource{} }

// biosProfileResource is a reusable BIOS profile: configuration only, no BMC.
type biosProfileResource struct{}

func (r *biosProfileResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_bios_profile"
}

func (r *biosProfileResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A reusable BIOS profile. It only holds configuration and talks to no BMC: assign it to " +
			"`metal_machine.bios_profile` (`bios_profile = metal_bios_profile.<name>`), which applies and verifies it. " +
			"Changing the profile updates every machine that uses it in place.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, MarkdownDescription: "The profile name.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"name": schema.StringAttribute{Required: true, MarkdownDescription: "Profile name.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"attributes": schema.MapAttribute{Required: true, ElementType: types.StringType,
				MarkdownDescription: "BIOS attributes by their registry name (vendor-specific, e.g. `LogicalProc` on Dell, " +
					"`ProcHyperthreading` on HPE), as strings: integers in decimal, booleans `true`/`false`. They are " +
					"checked against the machine's attribute registry before anything is sent."},
			"reset_to_defaults": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
				MarkdownDescription: "Also bring every attribute the profile does not name back to its registry default (default: `false`)."},
			"apply_time": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(string(engine.ApplyOnReset)),
				Validators: []validator.String{stringvalidator.OneOf(biosApplyTimes...)},
				MarkdownDescription: "When the BIOS applies the settings: " + backtickList(biosApplyTimes) + " (default: `OnReset`). " +
					"With `Immediate` and `OnReset` the machine is rebooted now and every value is verified; " +
					"`AtMaintenanceWindowStart` only stages them, and refresh shows them as drift until they are applied."},
			"maintenance_window_start": schema.StringAttribute{Optional: true,
				MarkdownDescription: "RFC 3339 start of the maintenance window, with `apply_time = \"AtMaintenanceWindowStart\"`."},
			"maintenance_window_duration": schema.StringAttribute{Optional: true,
				MarkdownDescription: "Length of the maintenance window as a duration such as `2h`."},
		},
	}
}

func (r *biosProfileResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m biosProfileModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	_, diags := m.profile(ctx, fwpath.Empty())
	resp.Diagnostics.Append(diags...)
}

func (r *biosProfileResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m biosProfileModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	m.ID = m.Name
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *biosProfileResource) Read(context.Context, resource.ReadRequest, *resource.ReadResponse) {}

func (r *biosProfileResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m biosProfileModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	m.ID = m.Name
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *biosProfileResource) Delete(context.Context, resource.DeleteRequest, *resource.DeleteResponse) {
}

// profile converts the model to the engine's profile. Unknown values give
// ok=false without diagnostics (plan time).
func (m *biosProfileModel) profile(ctx context.Context, at fwpath.Path) (*engine.BIOSProfile, diag.Diagnostics) {
	var diags diag.Diagnostics
	if m.Attributes.IsUnknown() || m.MaintenanceWindowStart.IsUnknown() || m.MaintenanceWindowDuration.IsUnknown() {
		return nil, diags
	}
	p := &engine.BIOSProfile{Attributes: map[string]string{}, ResetToDefaults: m.ResetToDefaults.ValueBool(),
		ApplyTime: engine.ApplyTime(m.ApplyTime.ValueString())}
	if p.ApplyTime == "" {
		p.ApplyTime = engine.ApplyOnReset
	}
	diags.Append(m.Attributes.ElementsAs(ctx, &p.Attributes, false)...)
	if s := m.MaintenanceWindowStart.ValueString(); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			diags.AddAttributeError(at.AtName("maintenance_window_start"), "Invalid Maintenance Window Start",
				fmt.Sprintf("%q is not an RFC 3339 time such as 2026-01-02T03:00:00Z: %s", s, err))
		}
		p.MaintenanceWindowStart = t
	}
	if s := m.MaintenanceWindowDuration.ValueString(); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			diags.AddAttributeError(at.AtName("maintenance_window_duration"), "Invalid Maintenance Window Duration",
				fmt.Sprintf("%q is not a positive duration such as 2h.", s))
		}
		p.MaintenanceWindowDuration = d
	}
	if p.ApplyTime == engine.ApplyAtMaintenanceWindowStart && m.MaintenanceWindowStart.IsNull() {
		diags.AddAttributeError(at.AtName("maintenance_window_start"), "Missing Maintenance Window Start",
			"apply_time = \"AtMaintenanceWindowStart\" needs maintenance_window_start.")
	}
	return p, diags
}

// machineBIOSProfileAttribute is metal_machine.bios_profile.
func machineBIOSProfileAttribute() schema.Attribute {
	return schema.SingleNestedAttribute{
		Optional: true,
		MarkdownDescription: "BIOS profile to apply, usually a whole `metal_bios_profile` (`bios_profile = metal_bios_profile.<name>`). " +
			"It is applied and verified when the machine is created, before provisioning; refresh shows attributes that " +
			"differ on the BIOS as a diff, and a changed profile is applied in place (rebooting the machine). A value the " +
			"BIOS did not keep is an error naming the attribute, the wanted and the actual value.",
		Attributes: map[string]schema.Attribute{
			"id":                          schema.StringAttribute{Optional: true, MarkdownDescription: "Profile id (informational)."},
			"name":                        schema.StringAttribute{Optional: true, MarkdownDescription: "Profile name (informational)."},
			"attributes":                  schema.MapAttribute{Required: true, ElementType: types.StringType, MarkdownDescription: "BIOS attributes, as in `metal_bios_profile`."},
			"reset_to_defaults":           schema.BoolAttribute{Optional: true, MarkdownDescription: "As in `metal_bios_profile`."},
			"apply_time":                  schema.StringAttribute{Optional: true, Validators: []validator.String{stringvalidator.OneOf(biosApplyTimes...)}, MarkdownDescription: "As in `metal_bios_profile` (default `OnReset`)."},
			"maintenance_window_start":    schema.StringAttribute{Optional: true, MarkdownDescription: "As in `metal_bios_profile`."},
			"maintenance_window_duration": schema.StringAttribute{Optional: true, MarkdownDescription: "As in `metal_bios_profile`."},
		},
	}
}

// equal compares two profiles value by value (nil is no profile).
func (m *biosProfileModel) equal(o *biosProfileModel) bool {
	if m == nil || o == nil {
		return m == o
	}
	return m.ID.Equal(o.ID) && m.Name.Equal(o.Name) && m.Attributes.Equal(o.Attributes) &&
		m.ResetToDefaults.Equal(o.ResetToDefaults) && m.ApplyTime.Equal(o.ApplyTime) &&
		m.MaintenanceWindowStart.Equal(o.MaintenanceWindowStart) && m.MaintenanceWindowDuration.Equal(o.MaintenanceWindowDuration)
}

// applyMachineBIOS applies the machine's profile, if any.
func (r *machineResource) applyMachineBIOS(ctx context.Context, bmc engine.BMC, m *biosProfileModel, op operation) diag.Diagnostics {
	if m == nil {
		return nil
	}
	p, diags := m.profile(ctx, pathBIOSProfile)
	if p == nil || diags.HasError() {
		return diags
	}
	if _, err := r.engine.ApplyBIOS(ctx, bmc, *p); err != nil {
		diags.Append(biosErrorDiagnostic(op, err))
	}
	return diags
}

func biosErrorDiagnostic(op operation, err error) diag.Diagnostic {
	unable := fmt.Sprintf("Unable to %s %s.", op.verb, op.object)
	var me *engine.BIOSMismatchError
	switch {
	case errors.As(err, &me):
		lines := make([]string, len(me.Mismatches))
		for i, m := range me.Mismatches {
			lines[i] = fmt.Sprintf("  - %s: wanted %q, the BIOS has %q", m.Attribute, m.Wanted, m.Actual)
		}
		detail := unable + " The BMC accepted the BIOS profile but after the reboot these attributes did not stick:\n" +
			strings.Join(lines, "\n") + "\n\nThe firmware refused them, often because another attribute they depend on " +
			"(a system profile set to Custom, for example) does not allow them. Fix the profile and apply again."
		if me.Detail != "" {
			detail += "\n\nThe BMC said: " + me.Detail
		}
		return diag.NewAttributeErrorDiagnostic(pathBIOSProfile.AtName("attributes"), "BIOS Settings Did Not Stick", detail)
	case errors.Is(err, engine.ErrInvalidSpec):
		return diag.NewAttributeErrorDiagnostic(pathBIOSProfile.AtName("attributes"), "Invalid BIOS Profile", unable+" "+err.Error())
	}
	return engineErrorDiagnostic(op, err)
}

// readMachineBIOS shows BIOS drift: attributes that differ on the BIOS take
// the BIOS's value in state, so the plan shows the diff.
func (r *machineResource) readMachineBIOS(ctx context.Context, bmc engine.BMC, state *machineResourceModel) diag.Diagnostics {
	m := state.BIOSProfile
	if m == nil {
		return nil
	}
	p, diags := m.profile(ctx, pathBIOSProfile)
	if p == nil || diags.HasError() {
		return diags
	}
	b, err := r.engine.BIOS(ctx, bmc)
	if err != nil {
		diags.Append(engineErrorDiagnostic(opRead, err))
		return diags
	}
	drift := b.Diff(engine.BIOSProfile{Attributes: p.Attributes})
	if len(drift) == 0 {
		return diags
	}
	for _, x := range drift {
		p.Attributes[x.Attribute] = x.Actual
	}
	attrs, d := types.MapValueFrom(ctx, types.StringType, p.Attributes)
	diags.Append(d...)
	m.Attributes = attrs
	return diags
}
