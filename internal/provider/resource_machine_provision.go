package provider

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"regexp"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	fwpath "github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// Plan-time checks of provisioning inputs; the boot service's renderer
// checks the same again before anything reaches a machine.
var (
	hostnameRegexp   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	rootDeviceRegexp = regexp.MustCompile(`^/dev/[A-Za-z0-9/_.:+@-]+$`)
	singleLineRegexp = regexp.MustCompile(`^[^\x00-\x1f\x7f]+$`)
)

// timelineTimeFormat is the time of each timeline entry (UTC, milliseconds).
const timelineTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// sensitiveUserDataMark replaces user_data wherever it would show in the
// non-sensitive rendered_ipxe (kind ipxe boots user_data as the script).
const sensitiveUserDataMark = "(sensitive user_data)"

// mergeAttributes returns the union of attribute maps.
func mergeAttributes(ms ...map[string]schema.Attribute) map[string]schema.Attribute {
	out := map[string]schema.Attribute{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// machineProvisioningAttributes are the inputs and results of installing an
// operating system on the machine.
func machineProvisioningAttributes() map[string]schema.Attribute {
	requiresOSImage := fwpath.MatchRoot("os_image")
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	return map[string]schema.Attribute{
		"os_image": schema.StringAttribute{
			Optional:      true,
			PlanModifiers: replace,
			MarkdownDescription: "Name of the `metal_os_image` to install, usually `metal_os_image.<name>.name` so the " +
				"image is created first. When set, creating the machine registers it with the provider's `boot_service`, " +
				"network-boots it once from `boot_mac` and waits for `wait_for`; it needs `power_state = \"on\"`. " +
				"Changing it (or any other install input) replaces the machine, which installs it again.",
		},
		"hostname": schema.StringAttribute{
			Optional:      true,
			PlanModifiers: replace,
			Validators: []validator.String{
				stringvalidator.AlsoRequires(requiresOSImage),
				stringvalidator.LengthAtMost(253),
				stringvalidator.RegexMatches(hostnameRegexp, "must be a host name: dot-separated labels of letters, digits and '-'"),
			},
			MarkdownDescription: "Host name the installed system sets (letters, digits and `-` in dot-separated labels). " +
				"Requires `os_image`; changing it replaces the machine.",
		},
		"ssh_authorized_keys": schema.ListAttribute{
			Optional:      true,
			ElementType:   types.StringType,
			PlanModifiers: []planmodifier.List{listplanmodifier.RequiresReplace()},
			Validators: []validator.List{
				listvalidator.AlsoRequires(requiresOSImage),
				listvalidator.ValueStringsAre(stringvalidator.RegexMatches(singleLineRegexp, "must be one OpenSSH public key on a single line")),
			},
			MarkdownDescription: "OpenSSH public keys (one per element, such as `ssh-ed25519 AAAA... user@host`) " +
				"authorised to log in to the installed system. Requires `os_image`; changing them replaces the machine.",
		},
		"user_data": schema.StringAttribute{
			Optional:      true,
			Sensitive:     true,
			PlanModifiers: replace,
			Validators:    []validator.String{stringvalidator.AlsoRequires(requiresOSImage)},
			MarkdownDescription: "Your own install data, merged by install kind: a `#cloud-config` is deep-merged into " +
				"the rendered one (other cloud-init formats become an extra MIME part), kickstart appends it, Ignition " +
				"merges it as a child config, and `ipxe` boots it as the script. Stored in state (sensitive); only the " +
				"machine being provisioned can fetch it, with its one-time token. Requires `os_image`; changing it " +
				"replaces the machine.",
		},
		"ip_address": schema.StringAttribute{
			Optional: true,
			Computed: true,
			PlanModifiers: []planmodifier.String{
				stringplanmodifier.UseStateForUnknown(),
				stringplanmodifier.RequiresReplace(),
			},
			Validators: []validator.String{
				stringvalidator.AlsoRequires(requiresOSImage),
				hostPrefixValidator{},
			},
			MarkdownDescription: "Static address of the installed system with its prefix length, such as " +
				"`192.0.2.10/24`; DHCP reserves it for `boot_mac` while installing. When unset, the machine leases an " +
				"address from `boot_service.dhcp`'s range, the installed system keeps it as a static address, and this " +
				"attribute records it (with the subnet's prefix length). Requires `os_image`; changing it replaces the machine.",
		},
		"gateway": schema.StringAttribute{
			Optional:      true,
			PlanModifiers: replace,
			Validators: []validator.String{
				stringvalidator.AlsoRequires(requiresOSImage, fwpath.MatchRoot("ip_address")),
				ipv4Validator{},
			},
			MarkdownDescription: "Default gateway of the installed system. Requires `ip_address` (a leased address " +
				"gets `boot_service.dhcp.router`); changing it replaces the machine.",
		},
		"dns": schema.ListAttribute{
			Optional:      true,
			ElementType:   types.StringType,
			PlanModifiers: []planmodifier.List{listplanmodifier.RequiresReplace()},
			Validators: []validator.List{
				listvalidator.AlsoRequires(requiresOSImage, fwpath.MatchRoot("ip_address")),
				listvalidator.ValueStringsAre(ipv4Validator{}),
			},
			MarkdownDescription: "IPv4 addresses of the installed system's DNS servers. Requires `ip_address` (a leased " +
				"address gets `boot_service.dhcp.dns`); changing them replaces the machine.",
		},
		"root_device": schema.StringAttribute{
			Optional:      true,
			PlanModifiers: replace,
			Validators: []validator.String{
				stringvalidator.AlsoRequires(requiresOSImage),
				stringvalidator.RegexMatches(rootDeviceRegexp, "must be a /dev/ path without spaces or quotes"),
			},
			MarkdownDescription: "Disk to install to, as a `/dev/` path such as `/dev/sda` or " +
				"`/dev/disk/by-path/pci-0000:00:1f.2-ata-1`; `on_destroy = \"wipe\"` erases it. Required by the `ignition` " +
				"and `image` install kinds. Requires `os_image`; changing it replaces the machine.",
		},
		"wait_for": schema.StringAttribute{
			Optional: true,
			Computed: true,
			Default:  stringdefault.StaticString(engine.WaitProvisioned),
			Validators: []validator.String{
				stringvalidator.OneOf(engine.WaitTargets()...),
			},
			MarkdownDescription: "How far creating waits with `os_image`: `" + engine.WaitProvisioned + "` until the " +
				"installer reports it is done, `" + engine.WaitBooted + "` until the installed system then asks DHCP " +
				"for an address (it has rebooted from disk), `" + engine.WaitNone + "` only until the network boot is " +
				"requested from the BMC. Allowed values: " + backtickList(engine.WaitTargets()) +
				" (default: `" + engine.WaitProvisioned + "`). It has no effect without `os_image`.",
		},
		"machine_id": schema.StringAttribute{
			Computed: true,
			PlanModifiers: []planmodifier.String{
				stringplanmodifier.UseStateForUnknown(),
			},
			MarkdownDescription: "The boot service's id of this machine (derived from the BMC and system); null " +
				"without `os_image`.",
		},
		"timeline": schema.ListAttribute{
			Computed:    true,
			ElementType: types.StringType,
			MarkdownDescription: "What the machine did while it was provisioned, as the boot service saw it, one step " +
				"per element: `<time> <source> <stage> <message>`, such as `2025-01-02T03:04:05.000Z dhcp ack 192.0.2.10` " +
				"(sources: `engine`, `dhcp`, `tftp`, `http`). Recorded once, at create; null without `os_image`.",
		},
		"rendered_ipxe": schema.StringAttribute{
			Computed: true,
			MarkdownDescription: "The iPXE script the machine boots, with the placeholder `" + engine.PlaceholderToken +
				"` where the per-provisioning token goes (the real token is issued at apply time and never shown). " +
				"Known at plan time when the image exists and the machine is already known, so a plan shows what an " +
				"install would boot. Where the script would carry `user_data` (install kind `ipxe`), it shows `" +
				sensitiveUserDataMark + "` instead. Null without `os_image`.",
		},
		"rendered_user_data": schema.StringAttribute{
			Computed:  true,
			Sensitive: true,
			MarkdownDescription: "The cloud-init user-data the machine fetches (install kinds that use one), with the " +
				"placeholder token; sensitive, because it merges `user_data`. Null when the install kind has no user-data " +
				"or without `os_image`.",
		},
	}
}

// validateProvisioningConfig checks combinations that need more than one
// attribute.
func validateProvisioningConfig(ctx context.Context, cfg tfsdk.Config) diag.Diagnostics {
	var diags diag.Diagnostics
	var osImage, powerState, onDestroy types.String
	diags.Append(cfg.GetAttribute(ctx, pathOSImage, &osImage)...)
	diags.Append(cfg.GetAttribute(ctx, fwpath.Root("power_state"), &powerState)...)
	diags.Append(cfg.GetAttribute(ctx, fwpath.Root("on_destroy"), &onDestroy)...)
	if diags.HasError() {
		return diags
	}
	if !osImage.IsNull() && powerState.ValueString() == powerStateOff {
		diags.AddAttributeError(fwpath.Root("power_state"), "Cannot Provision A Powered-Off Machine",
			"`os_image` installs an operating system by network-booting the machine, which leaves it on. "+
				"Remove `power_state = \"off\"` (or set it to \"on\"), or remove `os_image`.")
	}
	if osImage.IsNull() && onDestroy.ValueString() == onDestroyWipe {
		diags.AddAttributeError(fwpath.Root("on_destroy"), "Cannot Wipe Without An OS Image",
			"`on_destroy = \"wipe\"` erases the disk by network-booting the kernel of the machine's `os_image`, so it "+
				"needs `os_image`. Use \"power_off\" or \"none\", or set `os_image`.")
	}
	return diags
}

func (r *machineResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan machineResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if plan.OSImage.IsNull() {
		plan.clearProvisioning()
		resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
		return
	}
	if r.engine != nil && r.boot == nil {
		resp.Diagnostics.Append(bootErrorDiagnostic(operation{verb: "provision", object: "machine"},
			engine.ErrBootServiceNotConfigured, pathOSImage))
		return
	}
	var state *machineResourceModel
	if !req.State.Raw.IsNull() {
		state = &machineResourceModel{}
		resp.Diagnostics.Append(req.State.Get(ctx, state)...)
		if resp.Diagnostics.HasError() {
			return
		}
	}
	r.checkRolesAtPlan(ctx, &plan, state, &resp.Diagnostics)
	if state == nil || r.engine == nil || resp.Diagnostics.HasError() {
		return // created: everything is known after apply
	}
	// An existing machine is not provisioned again in place (any install
	// input replaces it, and Terraform then plans the new one from a null
	// state), so what its provisioning recorded stays as it is.
	plan.MachineID = state.MachineID
	plan.Timeline = state.Timeline
	// Failed roles are applied again; changed ones report anew.
	plan.RolesFailed = state.RolesFailed
	if len(state.RolesFailed.Elements()) > 0 || rolesChanged(&plan, state) {
		plan.RolesFailed = types.ListUnknown(types.StringType)
	}
	var configIP types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, fwpath.Root("ip_address"), &configIP)...)
	if configIP.IsNull() {
		plan.IPAddress = state.IPAddress
	}
	plan.RenderedIPXE, plan.RenderedUserData = state.RenderedIPXE, state.RenderedUserData
	if _, known, _ := plan.roleSelection(ctx); !known {
		// A role's ref is not known yet: its content changes in this plan.
		plan.RenderedIPXE, plan.RenderedUserData = types.StringUnknown(), types.StringUnknown()
	} else if rendered, ok := r.renderAtPlan(ctx, &plan, state); ok {
		plan.RenderedIPXE, plan.RenderedUserData = rendered.ipxe, rendered.userData
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

// renderedValues are rendered_ipxe and rendered_user_data.
type renderedValues struct{ ipxe, userData types.String }

// renderAtPlan renders what an existing machine boots when every input is
// known: the image in the boot service, the machine's NICs from state and
// the install inputs. Anything missing leaves the recorded values.
func (r *machineResource) renderAtPlan(ctx context.Context, plan, state *machineResourceModel) (renderedValues, bool) {
	if plan.BMC.Endpoint.ValueString() != state.BMC.Endpoint.ValueString() ||
		state.BMC.SystemID.IsNull() || plan.BMC.SystemID.IsUnknown() ||
		plan.BMC.SystemID.ValueString() != state.BMC.SystemID.ValueString() || state.NICs.IsNull() {
		return renderedValues{}, false
	}
	spec, known, diags := plan.provisionSpec(ctx)
	if diags.HasError() || !known {
		return renderedValues{}, false
	}
	bmc := engine.BMC{Endpoint: plan.BMC.Endpoint.ValueString(), SystemID: state.BMC.SystemID.ValueString()}
	out, err := r.render(ctx, bmc, nicMACs(ctx, state.NICs), spec)
	if errors.Is(err, engine.ErrRolesPending) {
		return renderedValues{ipxe: types.StringUnknown(), userData: types.StringUnknown()}, true
	}
	if err != nil {
		tflog.Debug(ctx, "Not rendering the machine's boot at plan time", map[string]any{"error": err.Error()})
		return renderedValues{}, false
	}
	return out, true
}

// render asks the engine what the machine boots, as attribute values.
func (r *machineResource) render(ctx context.Context, bmc engine.BMC, macs []string, spec engine.ProvisionSpec) (renderedValues, error) {
	out, err := r.engine.Render(ctx, bmc, macs, spec)
	if err != nil {
		return renderedValues{}, err
	}
	script := out.IPXE
	if spec.UserData != "" {
		script = strings.ReplaceAll(script, spec.UserData, sensitiveUserDataMark)
	}
	v := renderedValues{ipxe: types.StringValue(script), userData: types.StringNull()}
	if out.UserData != "" {
		v.userData = types.StringValue(out.UserData)
	}
	return v, nil
}

// nicMACs lists the MACs of the nics attribute, in order.
func nicMACs(ctx context.Context, nics types.List) []string {
	var objs []types.Object
	if nics.IsNull() || nics.IsUnknown() || nics.ElementsAs(ctx, &objs, false).HasError() {
		return nil
	}
	var macs []string
	for _, o := range objs {
		if mac, ok := o.Attributes()["mac"].(types.String); ok && mac.ValueString() != "" {
			macs = append(macs, mac.ValueString())
		}
	}
	return macs
}

// provisionSpec is the engine's view of the install inputs; known is false
// when any of them is not known yet.
func (m *machineResourceModel) provisionSpec(ctx context.Context) (spec engine.ProvisionSpec, known bool, diags diag.Diagnostics) {
	known = !listHasUnknown(m.SSHAuthorizedKeys) && !listHasUnknown(m.DNS)
	for _, v := range []attr.Value{m.OSImage, m.Hostname, m.SSHAuthorizedKeys, m.UserData, m.IPAddress, m.Gateway, m.DNS, m.RootDevice, m.BootMAC, m.WaitFor} {
		known = known && !v.IsUnknown()
	}
	if !known {
		return spec, false, diags
	}
	return m.provisionSpecOf(ctx)
}

// provisionSpecOf is provisionSpec of a model whose unknown values (the
// computed ip_address and boot_mac at create) count as unset.
func (m *machineResourceModel) provisionSpecOf(ctx context.Context) (spec engine.ProvisionSpec, known bool, diags diag.Diagnostics) {
	spec = engine.ProvisionSpec{
		Image:      m.OSImage.ValueString(),
		Hostname:   m.Hostname.ValueString(),
		UserData:   m.UserData.ValueString(),
		IPAddress:  m.IPAddress.ValueString(),
		Gateway:    m.Gateway.ValueString(),
		RootDevice: m.RootDevice.ValueString(),
		BootMAC:    strings.ToLower(m.BootMAC.ValueString()),
		WaitFor:    m.WaitFor.ValueString(),
	}
	if !m.SSHAuthorizedKeys.IsNull() && !m.SSHAuthorizedKeys.IsUnknown() {
		diags.Append(m.SSHAuthorizedKeys.ElementsAs(ctx, &spec.SSHAuthorizedKeys, false)...)
	}
	if !m.DNS.IsNull() && !m.DNS.IsUnknown() {
		diags.Append(m.DNS.ElementsAs(ctx, &spec.DNS, false)...)
	}
	spec.Agent = !m.Roles.IsNull()
	sel, known, d := m.roleSelection(ctx)
	diags.Append(d...)
	spec.Roles = sel
	return spec, known, diags
}

// clearProvisioning sets the provisioning results of a machine without
// os_image, which has none.
func (m *machineResourceModel) clearProvisioning() {
	if m.IPAddress.IsUnknown() {
		m.IPAddress = types.StringNull()
	}
	m.MachineID = types.StringNull()
	m.Timeline = types.ListNull(types.StringType)
	m.RolesFailed = types.ListNull(types.StringType)
	m.RenderedIPXE = types.StringNull()
	m.RenderedUserData = types.StringNull()
}

// keepProvisioning fills provisioning results an update left unknown from
// state: updates never provision.
func (m *machineResourceModel) keepProvisioning(state *machineResourceModel) {
	keep := func(v *types.String, s types.String) {
		if v.IsUnknown() {
			*v = s
		}
	}
	keep(&m.MachineID, state.MachineID)
	keep(&m.IPAddress, state.IPAddress)
	keep(&m.RenderedIPXE, state.RenderedIPXE)
	keep(&m.RenderedUserData, state.RenderedUserData)
	if m.Timeline.IsUnknown() {
		m.Timeline = state.Timeline
	}
	if m.RolesFailed.IsUnknown() {
		m.RolesFailed = state.RolesFailed
	}
}

// fillUnknownProvisioning nulls every provisioning result still unknown,
// so a state saved after a failure has no unknown values.
func (m *machineResourceModel) fillUnknownProvisioning() {
	for _, v := range []*types.String{&m.MachineID, &m.IPAddress, &m.RenderedIPXE, &m.RenderedUserData} {
		if v.IsUnknown() {
			*v = types.StringNull()
		}
	}
	if m.Timeline.IsUnknown() {
		m.Timeline = types.ListNull(types.StringType)
	}
	m.RolesFailed = nullIfUnknown(m.RolesFailed)
}

// timelineValue renders this provisioning's part of a machine's timeline:
// the events from the last registration on (an earlier provisioning of the
// same machine may precede it).
func timelineValue(tl []engine.TimelineEvent) types.List {
	start := 0
	for i, ev := range tl {
		if ev.Source == "engine" && ev.Stage == "registered" {
			start = i
		}
	}
	elems := make([]attr.Value, 0, len(tl)-start)
	for _, ev := range tl[start:] {
		line := ev.Time.UTC().Format(timelineTimeFormat) + " " + ev.Source + " " + ev.Stage
		if ev.Message != "" {
			line += " " + ev.Message
		}
		elems = append(elems, types.StringValue(line))
	}
	return types.ListValueMust(types.StringType, elems)
}

// leasedAddress is the computed ip_address: the address with the prefix
// length of the DHCP subnet holding it (as the installed system is
// configured), else /32.
func leasedAddress(boot *engine.BootConfig, raw string) types.String {
	a, err := netip.ParseAddr(raw)
	if err != nil {
		if p, perr := netip.ParsePrefix(raw); perr == nil {
			return types.StringValue(p.String())
		}
		return types.StringNull()
	}
	bits := a.BitLen()
	if boot != nil && boot.DHCP.Subnet.IsValid() && boot.DHCP.Subnet.Contains(a) {
		bits = boot.DHCP.Subnet.Bits()
	}
	return types.StringValue(netip.PrefixFrom(a, bits).String())
}

// createProvisioned installs the machine: register, network-boot, wait.
// Whatever happens after the machine may have been touched, it is saved in
// state (tainted on error), so it never vanishes from Terraform.
func (r *machineResource) createProvisioned(ctx context.Context, bmc engine.BMC, inv *engine.Inventory, plan *machineResourceModel, resp *resource.CreateResponse) {
	if r.boot == nil {
		resp.Diagnostics.Append(bootErrorDiagnostic(opCreate, engine.ErrBootServiceNotConfigured, pathOSImage))
		return
	}
	// Unknown values (ip_address, boot_mac) count as unset: the engine
	// leases an address and picks the first NIC with link, as
	// applyInventory does.
	spec, _, diags := plan.provisionSpecOf(ctx)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	tflog.Info(ctx, "Provisioning machine", map[string]any{"id": machineID(bmc.Endpoint, bmc.SystemID), "os_image": spec.Image, "wait_for": spec.WaitFor})
	res, err := r.engine.Provision(ctx, bmc, spec)
	if err != nil {
		var perr *engine.ProvisionError
		switch {
		case errors.As(err, &perr):
			plan.MachineID = types.StringValue(perr.MachineID)
			plan.Timeline = timelineValue(perr.Timeline)
			resp.Diagnostics.Append(provisionErrorDiagnostic("Machine Did Not Finish Provisioning", opCreate, perr,
				"The machine is kept in Terraform state, marked tainted, so the next apply replaces it and installs "+
					"it again; destroying it removes it from the boot service."))
		case isBMCError(err):
			// The network boot may have been requested: keep the machine.
			resp.Diagnostics.Append(engineErrorDiagnostic(opCreate, err))
		default:
			// Nothing was changed on the machine (no image, no boot
			// service, an input the renderer or a role refused).
			resp.Diagnostics.Append(roleErrorDiagnostic(opCreate, err, pathOSImage))
			return
		}
		if plan.MachineID.IsUnknown() {
			if id, err := engine.MachineID(bmc.Endpoint, bmc.SystemID); err == nil {
				plan.MachineID = types.StringValue(id)
			}
		}
		plan.applyInventory(inv, true)
		plan.PowerState = types.StringValue(powerStateValue(inv.PowerState))
		plan.fillUnknownProvisioning()
		resp.Diagnostics.Append(resp.State.Set(ctx, plan)...)
		return
	}

	after, err := r.engine.Machine(ctx, bmc)
	if err != nil {
		resp.Diagnostics.AddWarning("Machine Inventory Not Read Again",
			"The machine was provisioned, but reading its inventory afterwards failed; the inventory read before "+
				"provisioning is recorded and the next refresh reads it again.\n\nOriginal Error: "+err.Error())
		after = inv
	}
	plan.applyInventory(after, true)
	plan.MachineID = types.StringValue(res.MachineID)
	plan.RolesFailed = types.ListNull(types.StringType)
	if !plan.Roles.IsNull() {
		// Usually nothing is reported yet: the agent starts once the
		// machine has booted what it installed. A cloud-init install
		// starts it before reporting provisioned, so a role that failed
		// at install is often known here.
		plan.RolesFailed = stringList(nil)
		if st, err := r.engine.RoleStatus(ctx, bmc); err == nil && len(st.Failed()) > 0 {
			plan.RolesFailed = stringList(failedRoles(st))
			resp.Diagnostics.AddAttributeError(pathRoles, "Role Failed At Install",
				"Unable to create machine. "+(&engine.RoleFailedError{MachineID: res.MachineID, Failed: st.Failed()}).Error()+
					"\n\nThe machine is installed and kept in state, marked tainted: the next apply reinstalls it. "+
					"To retry the failed roles in place instead, fix the role, run `terraform untaint` on this "+
					"machine and apply: roles_failed makes the plan update it, and its agent applies them again.")
		}
	}
	plan.Timeline = timelineValue(res.Timeline)
	if plan.IPAddress.IsUnknown() {
		plan.IPAddress = types.StringNull()
		if res.IPAddress != "" {
			plan.IPAddress = leasedAddress(r.boot, res.IPAddress)
		}
	}
	if plan.RenderedIPXE.IsUnknown() || plan.RenderedUserData.IsUnknown() {
		spec.BootMAC = strings.ToLower(plan.BootMAC.ValueString())
		macs := make([]string, 0, len(after.NICs))
		for _, n := range after.NICs {
			if n.MAC != "" {
				macs = append(macs, n.MAC)
			}
		}
		rendered, err := r.render(ctx, bmc, macs, spec)
		if err != nil {
			resp.Diagnostics.AddWarning("Boot Not Rendered",
				"The machine was provisioned, but rendering `rendered_ipxe` and `rendered_user_data` failed; they are "+
					"left empty.\n\nOriginal Error: "+err.Error())
			rendered = renderedValues{ipxe: types.StringNull(), userData: types.StringNull()}
		}
		if plan.RenderedIPXE.IsUnknown() {
			plan.RenderedIPXE = rendered.ipxe
		}
		if plan.RenderedUserData.IsUnknown() {
			plan.RenderedUserData = rendered.userData
		}
	}
	tflog.Info(ctx, "Provisioned machine", map[string]any{"id": plan.ID.ValueString(), "machine_id": res.MachineID, "ip_address": plan.IPAddress.ValueString()})
	resp.Diagnostics.Append(resp.State.Set(ctx, plan)...)
}

// deleteProvisioned removes a provisioned machine from the boot service,
// wiping it first with on_destroy = "wipe", and powers it off unless
// on_destroy = "none".
func (r *machineResource) deleteProvisioned(ctx context.Context, state *machineResourceModel, resp *resource.DeleteResponse) {
	action := state.OnDestroy.ValueString()
	timeout, diags := state.Timeouts.Delete(ctx, defaultDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	var bmc engine.BMC
	if action == onDestroyNone {
		// Deregistering needs no BMC login.
		bmc = engine.BMC{Endpoint: state.BMC.Endpoint.ValueString(), SystemID: state.BMC.SystemID.ValueString()}
	} else {
		bmc, diags = bmcConnection(r.defaults, state.BMC, types.StringNull(), opDelete, true)
		resp.Diagnostics.Append(diags...)
	}
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx, bmc.Password)
	id := state.ID.ValueString()

	wipe := action == onDestroyWipe
	tflog.Info(ctx, "Removing machine from the boot service", map[string]any{"id": id, "wipe": wipe})
	if err := r.engine.Deprovision(ctx, bmc, state.OSImage.ValueString(), wipe); err != nil {
		var perr *engine.ProvisionError
		if errors.As(err, &perr) {
			resp.Diagnostics.Append(provisionErrorDiagnostic("Machine Was Not Wiped", opDelete, perr,
				"The machine stays in Terraform state and registered with the boot service. Run destroy again, "+
					"or set `on_destroy = \"power_off\"` to destroy it without wiping."))
			return
		}
		if isBMCError(err) {
			resp.Diagnostics.Append(engineErrorDiagnostic(opDelete, err))
			return
		}
		resp.Diagnostics.Append(bootErrorDiagnostic(opDelete, err, pathOSImage))
		return
	}
	if action == onDestroyNone {
		tflog.Info(ctx, "Leaving machine running (on_destroy = \"none\")", map[string]any{"id": id})
		return
	}
	if _, err := r.engine.SetPower(ctx, bmc, engine.PowerOff, engine.PowerOptions{}); err != nil {
		if errors.Is(err, engine.ErrNotFound) && r.systemGone(ctx, bmc) {
			tflog.Warn(ctx, "Machine already gone from its BMC", map[string]any{"id": id})
			return
		}
		resp.Diagnostics.Append(engineErrorDiagnostic(opDelete, err))
		return
	}
	tflog.Info(ctx, "Powered machine off", map[string]any{"id": id, "wiped": wipe})
}
