package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-nettypes/hwtypes"
	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

func TestEngineErrorDiagnostic(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("POST /redfish/v1/SessionService/Sessions: %w", err) }
	_, endpointErr := engine.ParseEndpoint("bmc.example")
	tests := []struct {
		name     string
		op       operation
		err      error
		summary  string
		path     path.Path // empty for a diagnostic without attribute
		contains []string
	}{
		{"invalid endpoint", opCreate, endpointErr, "Invalid BMC Endpoint", pathBMCEndpoint, []string{"https://host[:port]", "it has no scheme"}},
		{"unauthorized", opRead, wrap(engine.ErrUnauthorized), "BMC Authentication Failed", pathBMCPassword,
			[]string{"check `bmc.username`/`bmc.password`", "METAL_BMC_USERNAME/METAL_BMC_PASSWORD", "Unable to read machine."}},
		{"ambiguous", opCreate, wrap(&engine.AmbiguousSystemError{IDs: []string{"1", "2"}}), "Ambiguous BMC System", pathBMCSystemID,
			[]string{`manages 2 systems: "1", "2"`, "`bmc.system_id`"}},
		{"tls", opCreate, wrap(engine.ErrTLS), "Untrusted BMC Certificate", pathBMCCACertificate,
			[]string{"`bmc.ca_certificate`", "`insecure = true`", "lab"}},
		{"unreachable", opDelete, wrap(engine.ErrUnreachable), "BMC Unreachable", pathBMCEndpoint, []string{"`bmc.endpoint`", "Unable to delete machine."}},
		{"timeout create", opCreate, wrap(engine.ErrTimeout), "BMC Operation Timed Out", path.Empty(), []string{"`timeouts.create`", "`20m`"}},
		{"timeout delete", opDelete, wrap(engine.ErrTimeout), "BMC Operation Timed Out", path.Empty(), []string{"`timeouts.delete`", "`10m`"}},
		{"timeout inventory", opInventory, wrap(engine.ErrTimeout), "BMC Operation Timed Out", path.Empty(), []string{"`timeouts.read`", "machine inventory"}},
		{"not found", opUpdate, wrap(engine.ErrNotFound), "BMC System Not Found", pathBMCSystemID, nil},
		{"unsupported", opUpdate, wrap(engine.ErrUnsupported), "BMC Operation Not Supported", path.Empty(), nil},
		{"task failed", opUpdate, wrap(engine.ErrTaskFailed), "BMC Task Failed", path.Empty(), nil},
		{"other", opCreate, errors.New("HTTP 500: boom"), "BMC Operation Failed", path.Empty(), []string{"Original Error: HTTP 500: boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := engineErrorDiagnostic(tt.op, tt.err)
			if d.Severity() != diag.SeverityError {
				t.Errorf("severity %v", d.Severity())
			}
			if d.Summary() != tt.summary {
				t.Errorf("summary %q, want %q", d.Summary(), tt.summary)
			}
			wp, hasPath := d.(diag.DiagnosticWithPath)
			switch {
			case tt.path.Equal(path.Empty()) && hasPath:
				t.Errorf("path %q, want none", wp.Path())
			case !tt.path.Equal(path.Empty()) && (!hasPath || !wp.Path().Equal(tt.path)):
				t.Errorf("want path %q (diagnostic %#v)", tt.path, d)
			}
			for _, c := range tt.contains {
				if !strings.Contains(strings.ToLower(d.Detail()), strings.ToLower(c)) {
					t.Errorf("detail does not contain %q:\n%s", c, d.Detail())
				}
			}
		})
	}
}

func TestShortDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		20 * time.Minute: "20m", 10 * time.Minute: "10m", 5 * time.Minute: "5m", time.Hour: "1h",
		90 * time.Minute: "1h30m", 30 * time.Second: "30s", 1500 * time.Millisecond: "1.5s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestParseImportID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id, endpoint, systemID, err string
	}{
		{id: "https://10.0.0.5", endpoint: "https://10.0.0.5"},
		{id: " https://10.0.0.5:8443 ", endpoint: "https://10.0.0.5:8443"},
		{id: "https://10.0.0.5#System.Embedded.1", endpoint: "https://10.0.0.5", systemID: "System.Embedded.1"},
		{id: "https://10.0.0.5/redfish/v1/Systems/1", endpoint: "https://10.0.0.5/redfish/v1/Systems/1", systemID: "1"},
		{id: "https://10.0.0.5/redfish/v1/Systems/1#1", endpoint: "https://10.0.0.5/redfish/v1/Systems/1", systemID: "1"},
		{id: "https://10.0.0.5/redfish/v1/Systems/1#2", err: `names system "1" but the ID names "2"`},
		{id: "https://10.0.0.5#", err: "nothing follows"},
		{id: "10.0.0.5", err: "no scheme"},
		{id: "", err: "empty"},
		{id: "https://admin:secret@10.0.0.5", err: "credentials do not belong"},
	}
	for _, tt := range tests {
		endpoint, systemID, err := parseImportID(tt.id)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseImportID(%q) error %v, want one containing %q", tt.id, err, tt.err)
			}
			continue
		}
		if err != nil || endpoint != tt.endpoint || systemID != tt.systemID {
			t.Errorf("parseImportID(%q) = %q, %q, %v; want %q, %q", tt.id, endpoint, systemID, err, tt.endpoint, tt.systemID)
		}
	}
}

// fakeEngine answers with canned results.
type fakeEngine struct {
	// Engine is nil: calling a method the test did not fake panics.
	engine.Engine
	machine func(engine.BMC) (*engine.Inventory, error)
	systems func(engine.BMC) ([]engine.SystemSummary, error)
	bmcs    []engine.BMC
}

var _ engine.Engine = (*fakeEngine)(nil)

func (f *fakeEngine) Systems(_ context.Context, b engine.BMC) ([]engine.SystemSummary, error) {
	f.bmcs = append(f.bmcs, b)
	return f.systems(b)
}

func (f *fakeEngine) Machine(_ context.Context, b engine.BMC) (*engine.Inventory, error) {
	f.bmcs = append(f.bmcs, b)
	return f.machine(b)
}

func (f *fakeEngine) SetPower(context.Context, engine.BMC, engine.PowerState, engine.PowerOptions) (*engine.Inventory, error) {
	return nil, errors.New("not expected")
}

func (f *fakeEngine) BootOnce(context.Context, engine.BMC, engine.BootOverride) error {
	return errors.New("not expected")
}

func (f *fakeEngine) Close() error { return nil }

// readMachine runs the resource's Read on a state for system "node1" that
// was created with password_wo (no password in state).
func readMachine(t *testing.T, eng engine.Engine, defaults bmcDefaults) resource.ReadResponse {
	t.Helper()
	ctx := t.Context()
	s := machineResourceSchemaV0(ctx)
	state := tfsdk.State{Schema: s, Raw: tftypes.NewValue(s.Type().TerraformType(ctx), nil)}
	model := machineResourceModel{
		ID: types.StringValue("https://bmc#node1"),
		BMC: machineBMCModel{
			Endpoint: types.StringValue("https://bmc"), Username: types.StringValue("admin"),
			Password: types.StringNull(), PasswordWO: types.StringNull(), PasswordWOVersion: types.Int64Value(1),
			Insecure: types.BoolValue(false), CACertificate: types.StringNull(), SystemID: types.StringValue("node1"),
		},
		PowerState: types.StringValue("on"), BootMAC: hwtypes.NewMACAddressNull(), OnDestroy: types.StringValue("power_off"),
		UUID: types.StringNull(), Manufacturer: types.StringNull(), Model: types.StringNull(), SerialNumber: types.StringNull(),
		BIOSVersion: types.StringNull(), CPUCount: types.Int64Null(), CPUModel: types.StringNull(), MemoryGiB: types.Float64Null(),
		BootMode: types.StringNull(), NICs: types.ListNull(types.ObjectType{AttrTypes: nicAttrTypes}),
		Timeouts: timeouts.Value{Object: types.ObjectNull(map[string]attr.Type{
			"create": types.StringType, "read": types.StringType, "update": types.StringType, "delete": types.StringType,
		})},
		OSImage: types.StringNull(), Hostname: types.StringNull(), SSHAuthorizedKeys: types.ListNull(types.StringType),
		UserData: types.StringNull(), IPAddress: types.StringNull(), Gateway: types.StringNull(), DNS: types.ListNull(types.StringType),
		RootDevice: types.StringNull(), WaitFor: types.StringValue("provisioned"), MachineID: types.StringNull(),
		Timeline: types.ListNull(types.StringType), RenderedIPXE: types.StringNull(), RenderedUserData: types.StringNull(),
		Roles: types.ListNull(types.StringType), RoleParameters: types.MapNull(types.MapType{ElemType: types.StringType}),
		RolesFailed: types.ListNull(types.StringType),
	}
	if diags := state.Set(ctx, &model); diags.HasError() {
		t.Fatalf("building state: %v", diags)
	}
	r := &machineResource{engine: eng, defaults: defaults}
	resp := resource.ReadResponse{State: state}
	r.Read(ctx, resource.ReadRequest{State: state}, &resp)
	return resp
}

func TestMachineRead_goneFromBMC(t *testing.T) {
	t.Parallel()
	eng := &fakeEngine{
		machine: func(engine.BMC) (*engine.Inventory, error) {
			return nil, fmt.Errorf("system node1: %w", engine.ErrNotFound)
		},
		systems: func(engine.BMC) ([]engine.SystemSummary, error) {
			return []engine.SystemSummary{{ID: "node2", Path: "/redfish/v1/Systems/node2"}}, nil
		},
	}
	resp := readMachine(t, eng, bmcDefaults{password: "from-provider"})
	if resp.Diagnostics.HasError() {
		t.Fatalf("diagnostics: %v", resp.Diagnostics)
	}
	if !resp.State.Raw.IsNull() {
		t.Error("the machine was not removed from state")
	}
	warnings := resp.Diagnostics.Warnings()
	if len(warnings) != 1 || warnings[0].Summary() != "Machine Gone From BMC" || !strings.Contains(warnings[0].Detail(), `"node1"`) {
		t.Errorf("warnings: %v", warnings)
	}
	if got := eng.bmcs[0].Password; got != "from-provider" {
		t.Errorf("Read used password %q, want the provider's", got)
	}
}

func TestMachineRead_notFoundButBMCDoesNotConfirm(t *testing.T) {
	t.Parallel()
	// A 404 from something that is not this BMC must not drop the machine.
	eng := &fakeEngine{
		machine: func(engine.BMC) (*engine.Inventory, error) { return nil, engine.ErrNotFound },
		systems: func(engine.BMC) ([]engine.SystemSummary, error) { return nil, engine.ErrNotFound },
	}
	resp := readMachine(t, eng, bmcDefaults{password: "from-provider"})
	if !resp.Diagnostics.HasError() || resp.State.Raw.IsNull() {
		t.Errorf("want an error and the machine kept; diagnostics %v, state null %v", resp.Diagnostics, resp.State.Raw.IsNull())
	}
}

func TestMachineRead_writeOnlyPasswordNeedsProviderPassword(t *testing.T) {
	t.Parallel()
	eng := &fakeEngine{machine: func(engine.BMC) (*engine.Inventory, error) { t.Fatal("the BMC was contacted"); return nil, nil }}
	resp := readMachine(t, eng, bmcDefaults{})
	errs := resp.Diagnostics.Errors()
	if len(errs) != 1 || errs[0].Summary() != "Missing BMC Password" ||
		!strings.Contains(errs[0].Detail(), "`bmc.password_wo`") || !strings.Contains(errs[0].Detail(), "METAL_BMC_PASSWORD") {
		t.Errorf("diagnostics: %v", resp.Diagnostics)
	}
}
