package provider

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

var (
	_ resource.Resource                = (*roleResource)(nil)
	_ resource.ResourceWithConfigure   = (*roleResource)(nil)
	_ resource.ResourceWithImportState = (*roleResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*roleResource)(nil)
)

var (
	roleNameRegexp = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	fileModeRegexp = regexp.MustCompile(`^0?[0-7]{3,4}$`)
)

// defaultRoleTimeout bounds catalog calls (no machine is touched).
const defaultRoleTimeout = 2 * time.Minute

var (
	opRoleCreate = operation{verb: "create", object: "role", timeoutKey: "create", timeout: shortDuration(defaultRoleTimeout)}
	opRoleRead   = operation{verb: "read", object: "role", timeoutKey: "read", timeout: shortDuration(defaultRoleTimeout)}
	opRoleUpdate = operation{verb: "update", object: "role", timeoutKey: "update", timeout: shortDuration(defaultRoleTimeout)}
	opRoleDelete = operation{verb: "delete", object: "role", timeoutKey: "delete", timeout: shortDuration(defaultRoleTimeout)}
	opRolePlan   = operation{verb: "plan", object: "role"}
)

// NewRoleResource returns the metal_role resource.
func NewRoleResource() resource.Resource { return &roleResource{} }

type roleResource struct {
	engine engine.Engine
	boot   *engine.BootConfig
}

type roleResourceModel struct {
	ID types.String `tfsdk:"id"`
	RoleContentModel
	Timeouts timeouts.Value `tfsdk:"timeouts"`
}

// RoleContentModel is a role as metal_role and the metal_role data source
// show it.
type RoleContentModel struct {
	Name        types.String              `tfsdk:"name"`
	Description types.String              `tfsdk:"description"`
	Requires    types.List                `tfsdk:"requires"`
	Parameters  map[string]roleParamModel `tfsdk:"parameters"`
	Files       []roleFileModel           `tfsdk:"files"`
	Packages    types.List                `tfsdk:"packages"`
	Scripts     types.List                `tfsdk:"scripts"`
	CloudConfig types.String              `tfsdk:"cloud_config"`
	OnRemove    types.String              `tfsdk:"on_remove"`
	Ref         types.String              `tfsdk:"ref"`
}

type roleParamModel struct {
	Type        types.String `tfsdk:"type"`
	Default     types.String `tfsdk:"default"`
	Description types.String `tfsdk:"description"`
}

type roleFileModel struct {
	Path    types.String `tfsdk:"path"`
	Content types.String `tfsdk:"content"`
	Mode    types.String `tfsdk:"mode"`
	Owner   types.String `tfsdk:"owner"`
}

func (r *roleResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_role"
}

const templateHelp = "Templates (Go `text/template`) see `.machine.id`, `.machine.hostname`, `.machine.ip_address`, " +
	"`.machine.mac_addresses`, `.machine.boot_mac`, `.machine.inventory.<field>` (`manufacturer`, `model`, " +
	"`serial_number`, `cpu_count`, `cpu_model`, `memory_gib`, ...), `.params.<name>` and `.role`, plus the functions " +
	"`quote`, `shquote`, `join`, `indent`, `toYAML`, `toJSON`, `b64enc`, `default` and `required`. Templates are " +
	"strict: a key that is not set is an error naming it, at plan time when the machine's inputs are known."

func (r *roleResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A role: a reusable layer of machine configuration (files, packages, ordered scripts, a " +
			"cloud-config fragment and an `on_remove` script) that can require other roles. A `metal_machine` lists " +
			"roles in `roles`; their transitive closure is applied in dependency order, rendered into the install " +
			"config at install time and converged in place by the machine's agent afterwards. Roles live in the boot " +
			"service's catalog, so this resource needs the provider's `boot_service` block (embedded or remote).\n\n" +
			"Reference roles by `ref` (`metal_role.<name>.ref`), in `requires` and in `metal_machine.roles`: it " +
			"changes whenever the role's content does, so a content change reaches every machine using the role.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
				MarkdownDescription: "The role's name.",
			},
			"name": schema.StringAttribute{
				Required:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators: []validator.String{
					stringvalidator.RegexMatches(roleNameRegexp, "must be 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit"),
				},
				MarkdownDescription: "Name of the role in the catalog: 1 to 63 lower-case letters, digits, `-` or `_`, " +
					"starting with a letter or digit. Changing it replaces the role.",
			},
			"description": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "What the role is for.",
			},
			"requires": schema.ListAttribute{
				Optional:    true,
				ElementType: types.StringType,
				MarkdownDescription: "Roles this one builds on, applied before it: their `ref` (`metal_role.base.ref`), " +
					"so Terraform creates them first and a change to them reaches this role's machines. A requirement " +
					"that does not exist, or one that closes a cycle, is an error naming it.",
			},
			"parameters": schema.MapNestedAttribute{
				Optional: true,
				MarkdownDescription: "Inputs of the role by name (letters, digits and `_`), which templates read as " +
					"`.params.<name>`. A machine sets them in `role_parameters`; one without a `default` must be set by " +
					"every machine using the role.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"type": schema.StringAttribute{
						Required:   true,
						Validators: []validator.String{stringvalidator.OneOf(engine.RoleParameterTypes()...)},
						MarkdownDescription: "Type of the value, checked when a machine sets it; templates see numbers " +
							"and bools typed. Allowed values: " + backtickList(engine.RoleParameterTypes()) + ".",
					},
					"default": schema.StringAttribute{
						Optional:            true,
						MarkdownDescription: "Value when a machine does not set one, written as a string (`\"8080\"`, `\"true\"`).",
					},
					"description": schema.StringAttribute{
						Optional:            true,
						MarkdownDescription: "What the parameter means.",
					},
				}},
			},
			"files": schema.ListNestedAttribute{
				Optional: true,
				MarkdownDescription: "Files the role writes (atomically, creating parent directories). Two roles of a " +
					"machine writing the same path is an error naming both. Removing the role deletes its files. " + templateHelp,
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"path": schema.StringAttribute{
						Required:            true,
						MarkdownDescription: "Absolute path, without `..` components; may be a template.",
					},
					"content": schema.StringAttribute{
						Required:            true,
						MarkdownDescription: "Content; a template.",
					},
					"mode": schema.StringAttribute{
						Optional: true,
						Validators: []validator.String{
							stringvalidator.RegexMatches(fileModeRegexp, "must be an octal file mode such as \"0644\""),
						},
						MarkdownDescription: "Octal permissions, such as `0640` (default `0644`).",
					},
					"owner": schema.StringAttribute{
						Optional:            true,
						MarkdownDescription: "`user` or `user:group` (default `root:root`).",
					},
				}},
			},
			"packages": schema.ListAttribute{
				Optional:    true,
				ElementType: types.StringType,
				MarkdownDescription: "Packages to install with the system's package manager (apt-get, dnf, yum, " +
					"zypper or apk), before the scripts run. Removing the role does not uninstall them.",
			},
			"scripts": schema.ListAttribute{
				Optional:    true,
				ElementType: types.StringType,
				MarkdownDescription: "Scripts run in order after the files and packages, each with `/bin/sh` unless it " +
					"starts with its own `#!` line; a non-zero exit fails the role (and the roles after it). They run " +
					"again whenever the role's rendered content changes, so write them to be idempotent. Each sees " +
					"`METAL_ROLE` and `METAL_MACHINE_ID` in its environment. " + templateHelp,
			},
			"cloud_config": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "A `#cloud-config` fragment deep-merged into the install config (maps merged, lists " +
					"appended, in role order) of install kinds `cloud-init` and `image`; a machine of another kind refuses " +
					"a role that has one. It takes effect at install only: the agent does not apply it to running " +
					"machines. A template.",
			},
			"on_remove": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "Script run on a machine when the role leaves it (before its files are deleted), " +
					"as the role was last applied. A template.",
			},
			"ref": schema.StringAttribute{
				Computed: true,
				MarkdownDescription: "`<name>@<digest>`: what `requires` and `metal_machine.roles` take. It changes with " +
					"the role's content, so machines using the role update in place.",
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": describedTimeoutsBlock(ctx, "catalog calls", map[string]string{
				"create": shortDuration(defaultRoleTimeout), "read": shortDuration(defaultRoleTimeout),
				"update": shortDuration(defaultRoleTimeout), "delete": shortDuration(defaultRoleTimeout),
			}),
		},
	}
}

func (r *roleResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	if req.ProviderData == nil {
		return
	}
	data, ok := req.ProviderData.(*providerData)
	if !ok {
		resp.Diagnostics.AddError("Unexpected Resource Configure Type",
			fmt.Sprintf("Expected *providerData, got: %T. Please report this issue to the provider developers.", req.ProviderData))
		return
	}
	r.engine, r.boot = data.engine, data.boot
}

// definition is the engine's view of the model; known is false while any
// part is unknown.
func (m *roleResourceModel) definition(ctx context.Context) (role engine.Role, known bool, diags diag.Diagnostics) {
	known = true
	str := func(v types.String) string {
		if v.IsUnknown() {
			known = false
		}
		return v.ValueString()
	}
	list := func(v types.List) []string {
		if v.IsUnknown() || listHasUnknown(v) {
			known = false
			return nil
		}
		var out []string
		if !v.IsNull() {
			diags.Append(v.ElementsAs(ctx, &out, false)...)
		}
		return out
	}
	role = engine.Role{
		Name: str(m.Name), Description: str(m.Description), Requires: list(m.Requires),
		Packages: list(m.Packages), Scripts: list(m.Scripts), CloudConfig: str(m.CloudConfig), OnRemove: str(m.OnRemove),
	}
	if len(m.Parameters) > 0 {
		role.Parameters = map[string]engine.RoleParameter{}
		for name, p := range m.Parameters {
			rp := engine.RoleParameter{Type: str(p.Type), Description: str(p.Description)}
			if !p.Default.IsNull() {
				d := str(p.Default)
				rp.Default = &d
			}
			role.Parameters[name] = rp
		}
	}
	for _, f := range m.Files {
		role.Files = append(role.Files, engine.RoleFile{Path: str(f.Path), Content: str(f.Content), Mode: str(f.Mode), Owner: str(f.Owner)})
	}
	return role, known, diags
}

// ModifyPlan checks the role against the catalog (requirements, cycles,
// template syntax) and plans its ref when the content is known.
func (r *roleResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.engine == nil {
		return
	}
	var plan roleResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(requireBootService(r.boot, opRoleCreate, path.Empty())...)
	if resp.Diagnostics.HasError() {
		return
	}
	role, known, diags := plan.definition(ctx)
	resp.Diagnostics.Append(diags...)
	if !known || resp.Diagnostics.HasError() {
		plan.Ref = types.StringUnknown()
		resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
		return
	}
	if err := r.engine.CheckRole(withLogging(ctx), role); err != nil {
		resp.Diagnostics.Append(roleErrorDiagnostic(opRolePlan, err, path.Empty()))
		return
	}
	plan.Ref = types.StringValue(engine.RoleRef(role))
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

// store puts the planned role in the catalog and records it in state;
// create and update are the same call.
func (r *roleResource) store(ctx context.Context, planned tfsdk.Plan, state *tfsdk.State, op operation, diags *diag.Diagnostics) {
	var plan roleResourceModel
	diags.Append(planned.Get(ctx, &plan)...)
	if diags.HasError() {
		return
	}
	timeouts := plan.Timeouts.Create
	if op == opRoleUpdate {
		timeouts = plan.Timeouts.Update
	}
	timeout, d := timeouts(ctx, defaultRoleTimeout)
	diags.Append(d...)
	diags.Append(requireBootService(r.boot, op, path.Empty())...)
	role, _, d := plan.definition(ctx)
	diags.Append(d...)
	if diags.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := r.engine.PutRole(withLogging(ctx), role)
	if err != nil {
		diags.Append(roleErrorDiagnostic(op, err, path.Empty()))
		return
	}
	plan.ID, plan.Ref = types.StringValue(role.Name), types.StringValue(info.Ref)
	tflog.Info(ctx, "Stored role", map[string]any{"name": role.Name, "ref": info.Ref})
	diags.Append(state.Set(ctx, &plan)...)
}

func (r *roleResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	r.store(ctx, req.Plan, &resp.State, opRoleCreate, &resp.Diagnostics)
}

func (r *roleResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	r.store(ctx, req.Plan, &resp.State, opRoleUpdate, &resp.Diagnostics)
}

func (r *roleResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state roleResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Read(ctx, defaultRoleTimeout)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(requireBootService(r.boot, opRoleRead, path.Empty())...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := r.engine.Role(withLogging(ctx), state.Name.ValueString())
	if errors.Is(err, engine.ErrRoleNotFound) {
		resp.Diagnostics.AddWarning("Role Gone From Boot Service",
			fmt.Sprintf("The boot service's catalog no longer has role %q (its `state_dir` may have been cleared), so it was "+
				"removed from Terraform state. If it is still in the configuration, the next apply stores it again.", state.Name.ValueString()))
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.Append(roleErrorDiagnostic(opRoleRead, err, path.Empty()))
		return
	}
	have, _, d := state.definition(ctx)
	resp.Diagnostics.Append(d...)
	// Only a catalog role that differs (changed outside Terraform, or
	// imported) replaces state, so null and empty stay as configured.
	if state.Ref.ValueString() == "" || engine.RoleRef(have) != info.Ref {
		state.fromRole(info.Role)
	}
	state.ID, state.Ref = types.StringValue(info.Role.Name), types.StringValue(info.Ref)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// fromRole sets the model from a catalog role.
func (m *RoleContentModel) fromRole(role engine.Role) {
	optStr := func(s string) types.String {
		if s == "" {
			return types.StringNull()
		}
		return types.StringValue(s)
	}
	optList := func(l []string) types.List {
		if len(l) == 0 {
			return types.ListNull(types.StringType)
		}
		elems := make([]attr.Value, len(l))
		for i, s := range l {
			elems[i] = types.StringValue(s)
		}
		return types.ListValueMust(types.StringType, elems)
	}
	m.Name, m.Description = types.StringValue(role.Name), optStr(role.Description)
	m.Requires, m.Packages, m.Scripts = optList(role.Requires), optList(role.Packages), optList(role.Scripts)
	m.CloudConfig, m.OnRemove = optStr(role.CloudConfig), optStr(role.OnRemove)
	m.Parameters = nil
	if len(role.Parameters) > 0 {
		m.Parameters = map[string]roleParamModel{}
		for n, p := range role.Parameters {
			pm := roleParamModel{Type: types.StringValue(p.Type), Description: optStr(p.Description), Default: types.StringNull()}
			if p.Default != nil {
				pm.Default = types.StringValue(*p.Default)
			}
			m.Parameters[n] = pm
		}
	}
	m.Files = nil
	for _, f := range role.Files {
		m.Files = append(m.Files, roleFileModel{Path: types.StringValue(f.Path), Content: types.StringValue(f.Content), Mode: optStr(f.Mode), Owner: optStr(f.Owner)})
	}
}

func (r *roleResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state roleResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultRoleTimeout)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(requireBootService(r.boot, opRoleDelete, path.Empty())...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := r.engine.DeleteRole(withLogging(ctx), state.Name.ValueString()); err != nil {
		resp.Diagnostics.Append(roleErrorDiagnostic(opRoleDelete, err, path.Empty()))
	}
}

func (r *roleResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	name := strings.TrimSpace(req.ID)
	if !roleNameRegexp.MatchString(name) {
		resp.Diagnostics.AddError("Invalid Import ID",
			fmt.Sprintf("Unable to import metal_role from %q: the ID is the role's name, 1 to 63 lower-case letters, "+
				"digits, '-' or '_', starting with a letter or digit.", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), name)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), name)...)
}

// fieldIndexRE splits "files[1].mode" into its steps.
var fieldIndexRE = regexp.MustCompile(`^([a-z_]+)\[(\d+)\]$`)

// fieldPath turns a role field ("files[1].mode", "parameters.port.type")
// into an attribute path under base.
func fieldPath(base path.Path, field string) path.Path {
	p := base
	parts := strings.Split(field, ".")
	for i := 0; i < len(parts); i++ {
		part := parts[i]
		if m := fieldIndexRE.FindStringSubmatch(part); m != nil {
			n, _ := strconv.Atoi(m[2])
			p = p.AtName(m[1]).AtListIndex(n)
			continue
		}
		if part == "parameters" && i+1 < len(parts) {
			p = p.AtName(part).AtMapKey(parts[i+1])
			i++
			continue
		}
		p = p.AtName(part)
	}
	return p
}

// roleErrorDiagnostic explains a role error; at is where a machine's roles
// are (path.Empty() for metal_role itself, whose fields get their own path).
func roleErrorDiagnostic(op operation, err error, at path.Path) diag.Diagnostic {
	unable := fmt.Sprintf("Unable to %s %s.", op.verb, op.object)
	onRole := at.Equal(path.Empty())
	attrDiag := func(p path.Path, summary, detail string) diag.Diagnostic {
		if p.Equal(path.Empty()) {
			return diag.NewErrorDiagnostic(summary, detail)
		}
		return diag.NewAttributeErrorDiagnostic(p, summary, detail)
	}
	rolesAt := at
	if !onRole {
		rolesAt = path.Root("roles")
	}
	var (
		fe *engine.RoleFailedError
		ce *engine.CycleError
		me *engine.MissingRoleError
		te *engine.TemplateError
		xe *engine.ConflictError
		pe *engine.ParameterError
		ve *engine.RoleFieldError
	)
	switch {
	case errors.As(err, &fe):
		return attrDiag(rolesAt, "Role Failed On Machine",
			unable+" "+fe.Error()+"\n\nThe machine keeps converging towards the new roles whenever its agent runs; "+
				"the change stays pending in Terraform until an apply sees it succeed. Fix the role and apply again.")
	case errors.As(err, &ce):
		p := rolesAt
		if onRole {
			p = path.Root("requires")
		}
		return attrDiag(p, "Role Dependency Cycle", unable+" "+ce.Error()+
			". Remove one of these requirements so the roles can be applied in order.")
	case errors.As(err, &me):
		p := rolesAt
		if onRole {
			p = path.Root("requires")
		}
		return attrDiag(p, "Role Not Found", unable+" "+me.Error()+
			". Create it with a metal_role and reference it as metal_role.<name>.ref, so Terraform creates it first.")
	case errors.As(err, &te):
		p := rolesAt
		if onRole {
			p = fieldPath(path.Empty(), te.Field)
		}
		return attrDiag(p, "Role Template Error", unable+" "+te.Error())
	case errors.As(err, &xe):
		return attrDiag(rolesAt, "Roles Write The Same File", unable+" "+xe.Error())
	case errors.As(err, &pe):
		p := path.Root("role_parameters")
		if onRole {
			p = path.Root("parameters")
		}
		return attrDiag(p, "Invalid Role Parameter", unable+" "+pe.Error())
	case errors.As(err, &ve):
		p := rolesAt
		if onRole {
			p = fieldPath(path.Empty(), ve.Field)
		}
		return attrDiag(p, "Invalid Role", unable+" "+ve.Error())
	case errors.Is(err, engine.ErrRoleInUse):
		return attrDiag(at, "Role In Use", unable+" "+err.Error())
	case errors.Is(err, engine.ErrNoAgent):
		return attrDiag(rolesAt, "Machine Has No Role Agent", unable+" "+err.Error())
	case errors.Is(err, engine.ErrAgentTimeout):
		return attrDiag(rolesAt, "Role Agent Did Not Report", unable+" "+err.Error()+
			"\n\nThe agent runs on the installed machine and polls the boot service; check that the machine is on and "+
			"can reach the boot service's HTTP address, or raise `timeouts.update`. The roles stay desired and the "+
			"change stays pending until an apply sees the agent report success.")
	}
	return bootErrorDiagnostic(op, err, at)
}
