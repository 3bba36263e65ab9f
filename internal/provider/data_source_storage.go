package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

var (
	_ datasource.DataSource              = (*storageDataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*storageDataSource)(nil)
)

// NewStorageDataSource returns the metal_storage data source.
func NewStorageDataSource() datasource.DataSource { return &storageDataSource{} }

// storageDataSource lists a system's storage controllers, drives and volumes.
type storageDataSource struct {
	engine   engine.Engine
	defaults bmcDefaults
}

type storageDataSourceModel struct {
	BMC         inventoryBMCModel `tfsdk:"bmc"`
	SystemID    types.String      `tfsdk:"system_id"`
	Controllers types.List        `tfsdk:"controllers"`
}

var (
	driveAttrTypes = map[string]attr.Type{
		"id": types.StringType, "name": types.StringType, "media_type": types.StringType, "protocol": types.StringType,
		"capacity_bytes": types.Int64Type, "volume_ids": types.ListType{ElemType: types.StringType},
	}
	volumeAttrTypes = map[string]attr.Type{
		"id": types.StringType, "name": types.StringType, "raid_type": types.StringType, "capacity_bytes": types.Int64Type,
		"drive_ids": types.ListType{ElemType: types.StringType}, "durable_name": types.StringType, "device_hint": types.StringType,
	}
	controllerAttrTypes = map[string]attr.Type{
		"id": types.StringType, "name": types.StringType,
		"supported_raid_types": types.ListType{ElemType: types.StringType},
		"drives":               types.ListType{ElemType: types.ObjectType{AttrTypes: driveAttrTypes}},
		"volumes":              types.ListType{ElemType: types.ObjectType{AttrTypes: volumeAttrTypes}},
	}
)

func (d *storageDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_storage"
}

func (d *storageDataSource) Schema(ctx context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Computed: true, MarkdownDescription: desc}
	}
	i64 := func(desc string) schema.Int64Attribute {
		return schema.Int64Attribute{Computed: true, MarkdownDescription: desc}
	}
	strs := func(desc string) schema.ListAttribute {
		return schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: desc}
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Lists a machine's storage controllers with their drives and volumes, for example to " +
			"choose the drives of a `metal_raid_volume`. It only reads.",
		Attributes: map[string]schema.Attribute{
			"bmc": machineInventoryDataSourceSchemaV0(ctx).Attributes["bmc"],
			"system_id": schema.StringAttribute{Optional: true,
				MarkdownDescription: "Redfish id of the system on a multi-system BMC. Defaults to the BMC's only system."},
			"controllers": schema.ListNestedAttribute{
				Computed:            true,
				MarkdownDescription: "The storage controllers, in the order the BMC lists them.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"id":                   str("Redfish id of the controller; `storage_id` of a `metal_raid_volume`."),
					"name":                 str("Controller name."),
					"supported_raid_types": strs("RAID levels the controller can build; empty for a non-RAID controller."),
					"drives": schema.ListNestedAttribute{Computed: true, MarkdownDescription: "Physical drives.",
						NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
							"id": str("Redfish id of the drive."), "name": str("Drive name."),
							"media_type": str("`HDD` or `SSD`."), "protocol": str("`SAS`, `SATA`, `NVMe`, ..."),
							"capacity_bytes": i64("Capacity in bytes."), "volume_ids": strs("Volumes the drive belongs to."),
						}}},
					"volumes": schema.ListNestedAttribute{Computed: true, MarkdownDescription: "Volumes.",
						NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
							"id": str("Redfish id of the volume."), "name": str("Volume name."), "raid_type": str("RAID level."),
							"capacity_bytes": i64("Capacity in bytes."), "drive_ids": strs("Drives of the volume."),
							"durable_name": str("Durable identifier (NAA WWN)."), "device_hint": str("Stable Linux device path."),
						}}},
				}},
			},
		},
	}
}

func (d *storageDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
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

func (d *storageDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var cfg storageDataSourceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	b := cfg.BMC
	bmc := resolveBMC(d.defaults, b.Endpoint, b.Username, b.Password, b.Insecure, b.CACertificate)
	bmc.SystemID = cfg.SystemID.ValueString()
	if bmc.Username == "" {
		resp.Diagnostics.Append(missingUsernameDiagnostic())
	}
	if bmc.Password == "" {
		resp.Diagnostics.Append(missingPasswordDiagnostic())
	}
	if resp.Diagnostics.HasError() {
		return
	}
	ctx = withLogging(ctx, bmc.Password)
	ctrls, err := d.engine.Storage(ctx, bmc)
	if err != nil {
		resp.Diagnostics.Append(engineErrorDiagnostic(operation{verb: "read", object: "storage"}, err))
		return
	}
	type driveM struct {
		ID            string   `tfsdk:"id"`
		Name          string   `tfsdk:"name"`
		MediaType     string   `tfsdk:"media_type"`
		Protocol      string   `tfsdk:"protocol"`
		CapacityBytes int64    `tfsdk:"capacity_bytes"`
		VolumeIDs     []string `tfsdk:"volume_ids"`
	}
	type volumeM struct {
		ID            string   `tfsdk:"id"`
		Name          string   `tfsdk:"name"`
		RAIDType      string   `tfsdk:"raid_type"`
		CapacityBytes int64    `tfsdk:"capacity_bytes"`
		DriveIDs      []string `tfsdk:"drive_ids"`
		DurableName   string   `tfsdk:"durable_name"`
		DeviceHint    string   `tfsdk:"device_hint"`
	}
	type controllerM struct {
		ID                 string    `tfsdk:"id"`
		Name               string    `tfsdk:"name"`
		SupportedRAIDTypes []string  `tfsdk:"supported_raid_types"`
		Drives             []driveM  `tfsdk:"drives"`
		Volumes            []volumeM `tfsdk:"volumes"`
	}
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	out := make([]controllerM, 0, len(ctrls))
	for _, c := range ctrls {
		cm := controllerM{ID: c.ID, Name: c.Name, SupportedRAIDTypes: nonNil(c.SupportedRAIDTypes), Drives: []driveM{}, Volumes: []volumeM{}}
		for _, dr := range c.Drives {
			cm.Drives = append(cm.Drives, driveM{ID: dr.ID, Name: dr.Name, MediaType: dr.MediaType, Protocol: dr.Protocol,
				CapacityBytes: dr.CapacityBytes, VolumeIDs: nonNil(dr.VolumeIDs)})
		}
		for _, v := range c.Volumes {
			cm.Volumes = append(cm.Volumes, volumeM{ID: v.ID, Name: v.Name, RAIDType: v.RAIDType, CapacityBytes: v.CapacityBytes,
				DriveIDs: nonNil(v.DriveIDs), DurableName: v.DurableName, DeviceHint: v.DeviceHint})
		}
		out = append(out, cm)
	}
	list, diags := types.ListValueFrom(ctx, types.ObjectType{AttrTypes: controllerAttrTypes}, out)
	resp.Diagnostics.Append(diags...)
	cfg.Controllers = list
	resp.Diagnostics.Append(resp.State.Set(ctx, &cfg)...)
}
