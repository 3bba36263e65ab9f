package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/datasource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

var (
	_ datasource.DataSource              = (*machineInventoryDataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*machineInventoryDataSource)(nil)
)

// NewMachineInventoryDataSource returns the metal_machine_inventory data source.
func NewMachineInventoryDataSource() datasource.DataSource { return &machineInventoryDataSource{} }

// machineInventoryDataSource lists the systems one BMC manages.
type machineInventoryDataSource struct {
	engine   engine.Engine
	defaults bmcDefaults
}

type machineInventoryDataSourceModel struct {
	BMC      inventoryBMCModel `tfsdk:"bmc"`
	Systems  []systemModel     `tfsdk:"systems"`
	Timeouts timeouts.Value    `tfsdk:"timeouts"`
}

type inventoryBMCModel struct {
	Endpoint      types.String `tfsdk:"endpoint"`
	Username      types.String `tfsdk:"username"`
	Password      types.String `tfsdk:"password"`
	Insecure      types.Bool   `tfsdk:"insecure"`
	CACertificate types.String `tfsdk:"ca_certificate"`
}

type systemModel struct {
	ID           types.String `tfsdk:"id"`
	Name         types.String `tfsdk:"name"`
	UUID         types.String `tfsdk:"uuid"`
	Manufacturer types.String `tfsdk:"manufacturer"`
	Model        types.String `tfsdk:"model"`
	SerialNumber types.String `tfsdk:"serial_number"`
	PowerState   types.String `tfsdk:"power_state"`
}

func (d *machineInventoryDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_machine_inventory"
}

func (d *machineInventoryDataSource) Schema(ctx context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = machineInventoryDataSourceSchemaV0(ctx)
}

func machineInventoryDataSourceSchemaV0(ctx context.Context) schema.Schema {
	computed := func(description string) schema.StringAttribute {
		return schema.StringAttribute{Computed: true, MarkdownDescription: description}
	}
	return schema.Schema{
		MarkdownDescription: "Lists the systems a BMC manages, for example to find the `system_id` of each node " +
			"behind a chassis manager before declaring `metal_machine` resources. It only reads: nothing is powered or changed.",
		Attributes: map[string]schema.Attribute{
			"bmc": schema.SingleNestedAttribute{
				Required: true,
				MarkdownDescription: "How to reach and log in to the BMC. Settings left unset fall back to the " +
					"provider's `bmc_*` defaults and the `" + envBMCUsername + "`/`" + envBMCPassword + "` environment variables.",
				Attributes: map[string]schema.Attribute{
					"endpoint": schema.StringAttribute{
						Required:   true,
						Validators: []validator.String{endpointValidator{}},
						MarkdownDescription: "Address of the BMC's Redfish service: `https://host[:port]` " +
							"(`http://` is accepted for simulators and labs). Checked when planning, without contacting the BMC.",
					},
					"username": schema.StringAttribute{
						Optional: true,
						MarkdownDescription: "BMC username. Defaults to the provider's `bmc_username`, then the `" +
							envBMCUsername + "` environment variable.",
					},
					"password": schema.StringAttribute{
						Optional:  true,
						Sensitive: true,
						MarkdownDescription: "BMC password. Defaults to the provider's `bmc_password`, then the `" +
							envBMCPassword + "` environment variable.",
					},
					"insecure": schema.BoolAttribute{
						Optional: true,
						MarkdownDescription: "Skip verification of the BMC's TLS certificate (default: `false`). " +
							"Lab-only opt-in; verification is also skipped when the provider sets `bmc_insecure = true`. " +
							"Prefer `ca_certificate`.",
					},
					"ca_certificate": schema.StringAttribute{
						Optional: true,
						MarkdownDescription: "PEM-encoded CA certificate(s) to trust for this BMC instead of the system's " +
							"trust store. Defaults to the provider's `bmc_ca_certificate`.",
					},
				},
			},
			"systems": schema.ListNestedAttribute{
				Computed:            true,
				MarkdownDescription: "The systems the BMC manages, in the order it lists them.",
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"id":            computed("The Redfish id of the system; use it as `bmc.system_id` of a `metal_machine`."),
						"name":          computed("The system's name as the BMC reports it."),
						"uuid":          computed("The system UUID reported by the BMC."),
						"manufacturer":  computed("The system manufacturer reported by the BMC."),
						"model":         computed("The system model reported by the BMC."),
						"serial_number": computed("The system serial number reported by the BMC."),
						"power_state": computed("The power state: `" + powerStateOn + "` or `" + powerStateOff +
							"` (a machine powering on counts as `" + powerStateOn + "`, one powering off as `" + powerStateOff +
							"`), or the BMC's own state in lower case when it is neither."),
					},
				},
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": inventoryTimeoutsBlock(ctx),
		},
	}
}

func inventoryTimeoutsBlock(ctx context.Context) schema.Block {
	return readTimeoutsBlock(ctx, "Limits on how long reading may take; every BMC call runs under them.",
		fmt.Sprintf("How long reading the BMC may take (default: `%s`). A duration such as `30s` or `5m`.",
			shortDuration(defaultReadTimeout)))
}

// readTimeoutsBlock is a data source's timeouts block with its descriptions.
func readTimeoutsBlock(ctx context.Context, summary, description string) schema.Block {
	b := timeouts.Block(ctx)
	block, ok := b.(schema.SingleNestedBlock)
	if !ok {
		return b
	}
	block.MarkdownDescription = summary
	for name, a := range block.Attributes {
		if s, ok := a.(schema.StringAttribute); ok {
			s.Description = description
			s.MarkdownDescription = description
			block.Attributes[name] = s
		}
	}
	return block
}

func (d *machineInventoryDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	if req.ProviderData == nil {
		return
	}
	data, ok := req.ProviderData.(*providerData)
	if !ok {
		resp.Diagnostics.AddError("Unexpected Data Source Configure Type",
			fmt.Sprintf("Expected *providerData, got: %T. Please report this issue to the provider developers.", req.ProviderData))
		return
	}
	d.engine = data.engine
	d.defaults = data.defaults
}

func (d *machineInventoryDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var cfg machineInventoryDataSourceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := cfg.Timeouts.Read(ctx, defaultReadTimeout)
	resp.Diagnostics.Append(diags...)
	b := cfg.BMC
	bmc := resolveBMC(d.defaults, b.Endpoint, b.Username, b.Password, b.Insecure, b.CACertificate)
	if bmc.Username == "" {
		resp.Diagnostics.Append(missingUsernameDiagnostic())
	}
	if bmc.Password == "" {
		resp.Diagnostics.AddAttributeError(pathBMCPassword, "Missing BMC Password",
			"No BMC password is configured. Set `bmc.password`, the provider's `bmc_password`, "+
				"or the "+envBMCPassword+" environment variable.")
	}
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx, bmc.Password)

	systems, err := d.engine.Systems(ctx, bmc)
	if err != nil {
		resp.Diagnostics.Append(engineErrorDiagnostic(opInventory, err))
		return
	}
	cfg.Systems = make([]systemModel, 0, len(systems))
	for _, s := range systems {
		cfg.Systems = append(cfg.Systems, systemModel{
			ID:           types.StringValue(s.ID),
			Name:         types.StringValue(s.Name),
			UUID:         types.StringValue(s.UUID),
			Manufacturer: types.StringValue(s.Manufacturer),
			Model:        types.StringValue(s.Model),
			SerialNumber: types.StringValue(s.SerialNumber),
			PowerState:   types.StringValue(powerStateValue(s.PowerState)),
		})
	}
	tflog.Debug(ctx, "Read BMC systems", map[string]any{"endpoint": bmc.Endpoint, "systems": len(systems)})
	resp.Diagnostics.Append(resp.State.Set(ctx, &cfg)...)
}
