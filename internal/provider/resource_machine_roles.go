package provider

import (
	"context"
	"errors"
	"net/netip"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

var pathRoles = path.Root("roles")

const rolesAddedDescription = "Adding roles to a machine installed without them reinstalls it: only a machine " +
	"installed with `roles` set (even to `[]`) runs the agent that applies roles in place."

func machineRoleAttributes() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"roles": schema.ListAttribute{
			Optional:    true,
			ElementType: types.StringType,
			Validators: []validator.List{
				listvalidator.AlsoRequires(pathOSImage.Expression()),
				listvalidator.UniqueValues(),
			},
			PlanModifiers: []planmodifier.List{
				listplanmodifier.RequiresReplaceIf(rolesAddedToInstalled, rolesAddedDescription, rolesAddedDescription),
			},
			MarkdownDescription: "Roles of the machine, as `metal_role.<name>.ref`: they and everything they require " +
				"are applied in dependency order, rendered into the install config at install, and installed with them is " +
				"an agent (served by the boot service, run as a systemd service) that applies later changes in place. " +
				"Changing the list, a role's content or `role_parameters` updates the machine in place: apply waits until " +
				"the agent reports every role applied (bounded by `timeouts.update`); a role that fails fails the apply " +
				"with its output and the change stays pending. A role script that fails during the install stops the " +
				"scripts after it; the agent reports it when it first starts: when that is before the install " +
				"finishes (cloud-init starts it first) the create fails naming the role and the machine is kept, " +
				"tainted; otherwise it shows in `roles_failed` on the next refresh. Removing a role runs its `on_remove`. Set it (even to " +
				"`[]`) at install to get the agent; " + rolesAddedDescription + " Needs an `os_image` of install kind " +
				backtickList(engine.RoleInstallKinds()) + " (`ignition` cannot install packages).",
		},
		"roles_failed": schema.ListAttribute{
			Computed:    true,
			ElementType: types.StringType,
			MarkdownDescription: "Roles whose last application on the machine failed, as its agent reported (read on " +
				"every refresh, so a failure after apply shows too, for instance a role that failed during the install " +
				"or when the agent converged later against the daemon). When not empty, the next plan updates the machine, which applies its roles again. " +
				"Empty when all applied, null without `roles`.",
		},
		"role_parameters": schema.MapAttribute{
			Optional:    true,
			ElementType: types.MapType{ElemType: types.StringType},
			Validators: []validator.Map{
				mapvalidator.AlsoRequires(pathRoles.Expression()),
			},
			MarkdownDescription: "Parameter values by role name and parameter name, such as " +
				"`{ worker = { join_endpoint = aws_lb.cp.dns_name } }`, for any role the machine uses (directly or " +
				"through `requires`); values are strings, checked against the parameter's type. Changes apply in place.",
		},
	}
}

// rolesAddedToInstalled replaces a machine installed without the agent
// when roles appear.
func rolesAddedToInstalled(ctx context.Context, req planmodifier.ListRequest, resp *listplanmodifier.RequiresReplaceIfFuncResponse) {
	if req.State.Raw.IsNull() || !req.StateValue.IsNull() || req.PlanValue.IsNull() {
		return
	}
	var machineID types.String
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("machine_id"), &machineID)...)
	resp.RequiresReplace = !machineID.IsNull()
}

// roleSelection is the engine's view of roles and role_parameters.
func (m *machineResourceModel) roleSelection(ctx context.Context) (sel engine.RoleSelection, known bool, diags diag.Diagnostics) {
	if m.Roles.IsUnknown() || listHasUnknown(m.Roles) || m.RoleParameters.IsUnknown() {
		return sel, false, diags
	}
	if !m.Roles.IsNull() {
		diags.Append(m.Roles.ElementsAs(ctx, &sel.Roles, false)...)
	}
	if !m.RoleParameters.IsNull() {
		for name, v := range m.RoleParameters.Elements() {
			inner, ok := v.(types.Map)
			if !ok || inner.IsUnknown() {
				return sel, false, diags
			}
			values := map[string]string{}
			for k, e := range inner.Elements() {
				s, ok := e.(types.String)
				if !ok || s.IsUnknown() {
					return sel, false, diags
				}
				values[k] = s.ValueString()
			}
			if sel.Parameters == nil {
				sel.Parameters = map[string]map[string]string{}
			}
			sel.Parameters[name] = values
		}
	}
	return sel, true, diags
}

// roleFacts are the machine facts known at plan time.
func (m *machineResourceModel) roleFacts(ctx context.Context, state *machineResourceModel) engine.RoleFacts {
	f := engine.RoleFacts{Hostname: m.Hostname.ValueString(), MachineID: m.MachineID.ValueString()}
	if p, err := netip.ParsePrefix(m.IPAddress.ValueString()); err == nil {
		f.IPAddress = p.Addr().String()
	}
	if state != nil {
		f.MACs = nicMACs(ctx, state.NICs)
		f.Inventory = map[string]any{
			"manufacturer": state.Manufacturer.ValueString(), "model": state.Model.ValueString(),
			"serial_number": state.SerialNumber.ValueString(), "bios_version": state.BIOSVersion.ValueString(),
			"cpu_count": state.CPUCount.ValueInt64(), "cpu_model": state.CPUModel.ValueString(),
			"memory_gib": state.MemoryGiB.ValueFloat64(), "uuid": state.UUID.ValueString(),
			"boot_mode": state.BootMode.ValueString(), "system_id": state.BMC.SystemID.ValueString(),
		}
	}
	return f
}

// checkRolesAtPlan reports role errors (cycles, missing roles or keys,
// conflicts, parameters) while planning, when the inputs are known.
func (r *machineResource) checkRolesAtPlan(ctx context.Context, plan, state *machineResourceModel, diags *diag.Diagnostics) {
	sel, known, d := plan.roleSelection(ctx)
	diags.Append(d...)
	if !known || (len(sel.Roles) == 0 && len(sel.Parameters) == 0) || r.engine == nil || r.boot == nil {
		return
	}
	if err := r.engine.CheckRoles(withLogging(ctx), sel, plan.roleFacts(ctx, state)); err != nil {
		diags.Append(roleErrorDiagnostic(operation{verb: "plan", object: "machine roles"}, err, pathRoles))
	}
}

// rolesChanged reports whether the role inputs differ between plan and state.
func rolesChanged(plan, state *machineResourceModel) bool {
	return !plan.Roles.Equal(state.Roles) || !plan.RoleParameters.Equal(state.RoleParameters)
}

// applyRoles converges a provisioned machine to the planned roles. On
// failure the prior role inputs are kept in state, so the change stays
// pending.
func (r *machineResource) applyRoles(ctx context.Context, bmc engine.BMC, plan, state *machineResourceModel, resp *resource.UpdateResponse) bool {
	sel, _, diags := plan.roleSelection(ctx)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return false
	}
	tflog.Info(ctx, "Applying roles in place", map[string]any{"id": plan.ID.ValueString(), "roles": sel.Roles})
	st, err := r.engine.ApplyRoles(ctx, bmc, sel)
	if err != nil {
		resp.Diagnostics.Append(roleErrorDiagnostic(opUpdate, err, pathRoles))
		var failed *engine.RoleFailedError
		if errors.As(err, &failed) || errors.Is(err, engine.ErrAgentTimeout) {
			plan.Roles, plan.RoleParameters = state.Roles, state.RoleParameters
			plan.RenderedUserData = state.RenderedUserData
			plan.RolesFailed = state.RolesFailed
			if failed != nil {
				names := make([]string, 0, len(failed.Failed))
				for _, f := range failed.Failed {
					names = append(names, f.Role)
				}
				plan.RolesFailed = stringList(names)
			}
			plan.keepProvisioning(state)
			resp.Diagnostics.Append(resp.State.Set(ctx, plan)...)
		}
		return false
	}
	plan.RolesFailed = stringList(failedRoles(st))
	tflog.Info(ctx, "Roles applied", map[string]any{"id": plan.ID.ValueString(), "generation": st.Generation, "revision": st.Revision})
	return true
}

// failedRoles lists the roles the agent's last report, for the current
// desired roles, says failed (none while no such report exists: a machine
// that has not reported yet is not failing).
func failedRoles(st *engine.RoleStatus) []string {
	var out []string
	for _, r := range st.Failed() {
		out = append(out, r.Role)
	}
	return out
}

func stringList(values []string) types.List {
	elems := make([]attr.Value, len(values))
	for i, v := range values {
		elems[i] = types.StringValue(v)
	}
	return types.ListValueMust(types.StringType, elems)
}

// readRoles refreshes roles_failed from the agent's last report. A boot
// service that cannot answer leaves the recorded value.
func (r *machineResource) readRoles(ctx context.Context, bmc engine.BMC, state *machineResourceModel) {
	if state.Roles.IsNull() || state.MachineID.IsNull() || r.boot == nil {
		state.RolesFailed = nullIfUnknown(state.RolesFailed)
		return
	}
	st, err := r.engine.RoleStatus(ctx, bmc)
	if err != nil {
		tflog.Debug(ctx, "Role status not read", map[string]any{"error": err.Error()})
		state.RolesFailed = nullIfUnknown(state.RolesFailed)
		return
	}
	state.RolesFailed = stringList(failedRoles(st))
}

func nullIfUnknown(l types.List) types.List {
	if l.IsUnknown() {
		return types.ListNull(types.StringType)
	}
	return l
}
