package provider

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

var (
	_ datasource.DataSource              = (*discoveredMachinesDataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*discoveredMachinesDataSource)(nil)
)

// NewDiscoveredMachinesDataSource returns the metal_discovered_machines data source.
func NewDiscoveredMachinesDataSource() datasource.DataSource { return &discoveredMachinesDataSource{} }

// discoveredMachinesDataSource lists machines that asked the boot service
// to network-boot without being managed.
type discoveredMachinesDataSource struct {
	engine engine.Engine
	boot   *engine.BootConfig
}

type discoveredMachinesModel struct {
	ID       types.String             `tfsdk:"id"`
	Machines []discoveredMachineModel `tfsdk:"machines"`
}

type discoveredMachineModel struct {
	MAC          types.String `tfsdk:"mac"`
	FirstSeen    types.String `tfsdk:"first_seen"`
	Arch         types.String `tfsdk:"arch"`
	VendorClass  types.String `tfsdk:"vendor_class"`
	CircuitID    types.String `tfsdk:"circuit_id"`
	RemoteID     types.String `tfsdk:"remote_id"`
	RelayAddress types.String `tfsdk:"relay_address"`
	Interface    types.String `tfsdk:"interface"`
}

func (d *discoveredMachinesDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_discovered_machines"
}

func (d *discoveredMachinesDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = discoveredMachinesDataSourceSchemaV0()
}

func discoveredMachinesDataSourceSchemaV0() schema.Schema {
	computed := func(description string) schema.StringAttribute {
		return schema.StringAttribute{Computed: true, MarkdownDescription: description}
	}
	return schema.Schema{
		MarkdownDescription: "Lists machines that asked the boot service to network-boot but are not managed by any " +
			"`metal_machine`, for example to find the MAC of a new machine and the switch port it is cabled to. " +
			"Machines are recorded only while `boot_service.dhcp.discovery = true` and only while the boot service " +
			"runs (during Terraform runs). It only reads: discovered machines are never answered or changed.",
		Attributes: map[string]schema.Attribute{
			"id": computed("Always `discovered`."),
			"machines": schema.ListNestedAttribute{
				Computed:            true,
				MarkdownDescription: "The discovered machines, ordered by MAC address.",
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"mac":          computed("MAC address the machine network-booted from, in lower case with colons."),
						"first_seen":   computed("When the boot service first saw it, in RFC 3339 format (UTC)."),
						"arch":         computed("Firmware architecture from DHCP option 93, such as `EFI x86-64`; empty when not sent."),
						"vendor_class": computed("DHCP vendor class (option 60), such as `PXEClient:Arch:00007:UNDI:003016`."),
						"circuit_id":   computed("Relay agent circuit id (option 82.1), usually the switch port; empty without a relay."),
						"remote_id":    computed("Relay agent remote id (option 82.2), usually the switch; empty without a relay."),
						"relay_address": computed("Address of the DHCP relay the request came through (giaddr); empty when " +
							"it came directly."),
						"interface": computed("Network interface of this host the request arrived on; empty when unknown."),
					},
				},
			},
		},
	}
}

func (d *discoveredMachinesDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
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
	d.boot = data.boot
}

func (d *discoveredMachinesDataSource) Read(ctx context.Context, _ datasource.ReadRequest, resp *datasource.ReadResponse) {
	resp.Diagnostics.Append(requireBootService(d.boot, opDiscovered, path.Empty())...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, defaultReadTimeout)
	defer cancel()
	ctx = withLogging(ctx)
	found, err := d.engine.Discovered(ctx)
	if err != nil {
		resp.Diagnostics.Append(bootErrorDiagnostic(opDiscovered, err, path.Empty()))
		return
	}
	if !d.boot.DHCP.Discovery {
		resp.Diagnostics.AddWarning("Discovery Is Off",
			"`boot_service.dhcp.discovery` is not `true`, so the boot service records no new machines; the list "+
				"holds only machines recorded earlier.")
	}
	sort.Slice(found, func(i, j int) bool { return found[i].MAC < found[j].MAC })
	out := discoveredMachinesModel{ID: types.StringValue("discovered"), Machines: make([]discoveredMachineModel, 0, len(found))}
	for _, m := range found {
		out.Machines = append(out.Machines, discoveredMachineModel{
			MAC:          types.StringValue(m.MAC),
			FirstSeen:    types.StringValue(m.FirstSeen.UTC().Format(time.RFC3339)),
			Arch:         types.StringValue(m.Arch),
			VendorClass:  types.StringValue(m.VendorClass),
			CircuitID:    types.StringValue(m.CircuitID),
			RemoteID:     types.StringValue(m.RemoteID),
			RelayAddress: types.StringValue(m.RelayAddress),
			Interface:    types.StringValue(m.Interface),
		})
	}
	tflog.Debug(ctx, "Read discovered machines", map[string]any{"count": len(found)})
	resp.Diagnostics.Append(resp.State.Set(ctx, &out)...)
}
