package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/datasource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

var (
	_ datasource.DataSource              = (*roleDataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*roleDataSource)(nil)
)

// NewRoleDataSource returns the metal_role data source.
func NewRoleDataSource() datasource.DataSource { return &roleDataSource{} }

// roleDataSource reads a role from the boot service's catalog, for
// workspaces that use roles another workspace owns.
type roleDataSource struct {
	engine engine.Engine
	boot   *engine.BootConfig
}

type roleDataSourceModel struct {
	RoleContentModel
	Timeouts timeouts.Value `tfsdk:"timeouts"`
}

func (d *roleDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_role"
}

func (d *roleDataSource) Schema(ctx context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Computed: true, MarkdownDescription: desc}
	}
	strs := func(desc string) schema.ListAttribute {
		return schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: desc}
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads a role from the boot service's catalog: for a workspace whose machines use roles " +
			"that another workspace owns (with a shared boot service daemon, every workspace sees one catalog). Use " +
			"its `ref` in `metal_machine.roles` or in a `metal_role`'s `requires`: it changes with the role's content, " +
			"so the machines update in place when the owning workspace changes the role. It only reads.",
		Attributes: map[string]schema.Attribute{
			"name": schema.StringAttribute{
				Required: true,
				Validators: []validator.String{
					stringvalidator.RegexMatches(roleNameRegexp, "must be 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit"),
				},
				MarkdownDescription: "Name of the role in the catalog. A name the catalog does not have is an error.",
			},
			"ref":         str("`<name>@<digest>`: what `metal_machine.roles` and `requires` take."),
			"description": str("What the role is for."),
			"requires":    strs("The `ref`s of the roles this one builds on, as stored."),
			"parameters": schema.MapNestedAttribute{
				Computed:            true,
				MarkdownDescription: "Inputs of the role by name; machines set them in `role_parameters`.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"type":        str("Type of the value: " + backtickList(engine.RoleParameterTypes()) + "."),
					"default":     str("Value when a machine does not set one; null when every machine must."),
					"description": str("What the parameter means."),
				}},
			},
			"files": schema.ListNestedAttribute{
				Computed:            true,
				MarkdownDescription: "Files the role writes, as templates.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"path":    str("Absolute path; may be a template."),
					"content": str("Content template."),
					"mode":    str("Octal permissions; null for the default `0644`."),
					"owner":   str("`user` or `user:group`; null for `root:root`."),
				}},
			},
			"packages":     strs("Packages the role installs."),
			"scripts":      strs("Scripts the role runs, in order, as templates."),
			"cloud_config": str("The `#cloud-config` fragment merged into install configs."),
			"on_remove":    str("Script run when the role leaves a machine."),
		},
		Blocks: map[string]schema.Block{"timeouts": readTimeoutsBlock(ctx, "Limits on how long reading may take.",
			fmt.Sprintf("How long reading the catalog may take (default: `%s`). A duration such as `30s` or `5m`.",
				shortDuration(defaultRoleTimeout)))},
	}
}

func (d *roleDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	if req.ProviderData == nil {
		return
	}
	data, ok := req.ProviderData.(*providerData)
	if !ok {
		resp.Diagnostics.AddError("Unexpected Data Source Configure Type",
			fmt.Sprintf("Expected *providerData, got: %T. Please report this issue to the provider developers.", req.ProviderData))
		return
	}
	d.engine, d.boot = data.engine, data.boot
}

func (d *roleDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var cfg roleDataSourceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := cfg.Timeouts.Read(ctx, defaultRoleTimeout)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(requireBootService(d.boot, opRoleRead, path.Empty())...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name := cfg.Name.ValueString()
	info, err := d.engine.Role(withLogging(ctx), name)
	if errors.Is(err, engine.ErrRoleNotFound) {
		resp.Diagnostics.AddAttributeError(path.Root("name"), "Role Not Found",
			fmt.Sprintf("The boot service's catalog has no role %q. Create it with a metal_role (in this workspace, or in "+
				"the one that owns it against the same boot service daemon) and apply that first.", name))
		return
	}
	if err != nil {
		resp.Diagnostics.Append(roleErrorDiagnostic(opRoleRead, err, path.Empty()))
		return
	}
	out := roleDataSourceModel{Timeouts: cfg.Timeouts}
	out.fromRole(info.Role)
	out.Ref = types.StringValue(info.Ref)
	resp.Diagnostics.Append(resp.State.Set(ctx, &out)...)
}
