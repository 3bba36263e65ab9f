package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-nettypes/hwtypes"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

func TestBootErrorDiagnostic(t *testing.T) {
	t.Parallel()
	bind := func(errno syscall.Errno) error {
		return fmt.Errorf("%w: binding DHCP on 0.0.0.0:67/udp needs root or CAP_NET_BIND_SERVICE: %w",
			engine.ErrBind, &os.SyscallError{Syscall: "bind", Err: errno})
	}
	mismatch := &engine.ImageFileError{Role: "kernel", Err: &engine.ChecksumMismatchError{URL: "file:///srv/vmlinuz", Want: strings.Repeat("a", 64), Got: strings.Repeat("b", 64)}}
	tests := []struct {
		name     string
		err      error
		at       path.Path
		summary  string
		wantPath path.Path
		contains []string
	}{
		{"not configured", fmt.Errorf("%w: add a boot_service block", engine.ErrBootServiceNotConfigured), pathOSImage,
			"Boot Service Not Configured", pathOSImage, []string{"`boot_service` block", "`address`", "Unable to create machine."}},
		{"image not found", fmt.Errorf("%w: ubuntu", engine.ErrImageNotFound), pathOSImage,
			"OS Image Not Found", pathOSImage, []string{"`metal_os_image`", "metal_os_image.<name>.name"}},
		{"permission", bind(syscall.EACCES), pathOSImage, "Boot Service Could Not Start", path.Empty(),
			[]string{"CAP_NET_BIND_SERVICE", "`boot_service.dhcp.listen`"}},
		{"in use", bind(syscall.EADDRINUSE), path.Empty(), "Boot Service Could Not Start", path.Empty(), []string{"0.0.0.0:67"}},
		{"checksum", mismatch, path.Empty(), "OS Image Checksum Mismatch", path.Root("kernel").AtName("sha256"),
			[]string{"the kernel (`kernel.url` = file:///srv/vmlinuz)", strings.Repeat("a", 64), strings.Repeat("b", 64)}},
		{"bmc", fmt.Errorf("POST: %w", engine.ErrUnauthorized), pathOSImage, "BMC Authentication Failed", pathBMCPassword, nil},
		{"other", errors.New("disk full"), pathOSImage, "Boot Service Operation Failed", path.Empty(), []string{"disk full"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := bootErrorDiagnostic(opCreate, tt.err, tt.at)
			if d.Severity() != diag.SeverityError || d.Summary() != tt.summary {
				t.Errorf("diagnostic %v %q, want error %q", d.Severity(), d.Summary(), tt.summary)
			}
			wp, hasPath := d.(diag.DiagnosticWithPath)
			switch {
			case tt.wantPath.Equal(path.Empty()) && hasPath:
				t.Errorf("path %q, want none", wp.Path())
			case !tt.wantPath.Equal(path.Empty()) && (!hasPath || !wp.Path().Equal(tt.wantPath)):
				t.Errorf("want path %q (diagnostic %#v)", tt.wantPath, d)
			}
			for _, c := range tt.contains {
				if !strings.Contains(d.Detail(), c) {
					t.Errorf("detail does not contain %q:\n%s", c, d.Detail())
				}
			}
		})
	}
}

func TestProvisionErrorDiagnostic(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	perr := &engine.ProvisionError{MachineID: "m-1", Want: "provisioned", Err: fmt.Errorf("%w: deadline", engine.ErrProvisionTimeout),
		Timeline: []engine.TimelineEvent{{Time: at, Source: "engine", Stage: "registered"}, {Time: at, Source: "http", Stage: "script", Message: "10 bytes"}}}
	d := provisionErrorDiagnostic("Machine Did Not Finish Provisioning", opCreate, perr, "Kept.")
	for _, c := range []string{`did not reach "provisioned"`, "Last step reached: http script: 10 bytes.", "Timeline:\n", "engine   registered",
		"raise `timeouts.create` (default: `20m`)", "Kept."} {
		if !strings.Contains(d.Detail(), c) {
			t.Errorf("detail does not contain %q:\n%s", c, d.Detail())
		}
	}
	empty := provisionErrorDiagnostic("X", opCreate, &engine.ProvisionError{MachineID: "m-1", Want: "provisioned", Err: errors.New("failed")}, "")
	if !strings.Contains(empty.Detail(), "never asked the boot service") {
		t.Errorf("detail without timeline:\n%s", empty.Detail())
	}
}

func TestTimelineValue(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.FixedZone("x", 3600))
	got := timelineValue([]engine.TimelineEvent{
		{Time: at, Source: "engine", Stage: "registered"},
		{Time: at, Source: "http", Stage: "provisioned"},
		{Time: at, Source: "engine", Stage: "registered"},
		{Time: at, Source: "dhcp", Stage: "ack", Message: "192.0.2.10"},
	})
	want := types.ListValueMust(types.StringType, []attr.Value{
		types.StringValue("2025-01-02T02:04:05.006Z engine registered"),
		types.StringValue("2025-01-02T02:04:05.006Z dhcp ack 192.0.2.10"),
	})
	if !got.Equal(want) {
		t.Errorf("timeline %v, want only the last provisioning: %v", got, want)
	}
}

func TestLeasedAddress(t *testing.T) {
	t.Parallel()
	boot := &engine.BootConfig{DHCP: engine.DHCPConfig{Subnet: netip.MustParsePrefix("192.0.2.0/24")}}
	for raw, want := range map[string]string{"192.0.2.10": "192.0.2.10/24", "198.51.100.7": "198.51.100.7/32", "192.0.2.9/25": "192.0.2.9/25"} {
		if got := leasedAddress(boot, raw).ValueString(); got != want {
			t.Errorf("leasedAddress(%q) = %q, want %q", raw, got, want)
		}
	}
	if got := leasedAddress(boot, "garbage"); !got.IsNull() {
		t.Errorf("leasedAddress(garbage) = %v, want null", got)
	}
}

// renderEngine records Render calls.
type renderEngine struct {
	engine.Engine
	bmc   engine.BMC
	macs  []string
	spec  engine.ProvisionSpec
	calls int
}

func (f *renderEngine) Render(_ context.Context, bmc engine.BMC, macs []string, spec engine.ProvisionSpec) (*engine.Rendered, error) {
	f.calls++
	f.bmc, f.macs, f.spec = bmc, macs, spec
	return &engine.Rendered{IPXE: "#!ipxe\n" + spec.UserData + "\nchain /boot/" + engine.PlaceholderToken + "/x", UserData: ""}, nil
}

func TestRenderAtPlan(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	nic := func(mac string) attr.Value {
		return types.ObjectValueMust(nicAttrTypes, map[string]attr.Value{
			"id": types.StringValue("n"), "mac": types.StringValue(mac), "link_status": types.StringValue("LinkUp"), "link_up": types.BoolValue(true),
		})
	}
	state := machineResourceModel{
		BMC:  machineBMCModel{Endpoint: types.StringValue("https://bmc"), SystemID: types.StringValue("node1")},
		NICs: types.ListValueMust(types.ObjectType{AttrTypes: nicAttrTypes}, []attr.Value{nic("52:54:00:00:00:01"), nic("52:54:00:00:00:02")}),
	}
	plan := func() *machineResourceModel {
		return &machineResourceModel{
			BMC:     machineBMCModel{Endpoint: types.StringValue("https://bmc"), SystemID: types.StringValue("node1")},
			BootMAC: hwtypes.NewMACAddressValue("52:54:00:00:00:02"), OSImage: types.StringValue("img"),
			Hostname: types.StringValue("n1"), SSHAuthorizedKeys: types.ListNull(types.StringType), UserData: types.StringValue("secret-script"),
			IPAddress: types.StringValue("192.0.2.10/24"), Gateway: types.StringNull(), DNS: types.ListNull(types.StringType),
			RootDevice: types.StringNull(), WaitFor: types.StringValue("provisioned"),
		}
	}

	eng := &renderEngine{}
	r := &machineResource{engine: eng}
	got, ok := r.renderAtPlan(ctx, plan(), &state)
	if !ok || eng.calls != 1 {
		t.Fatalf("not rendered (ok %v, calls %d)", ok, eng.calls)
	}
	if eng.bmc.SystemID != "node1" || !slices.Equal(eng.macs, []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}) ||
		eng.spec.BootMAC != "52:54:00:00:00:02" || eng.spec.Image != "img" || eng.spec.IPAddress != "192.0.2.10/24" {
		t.Errorf("Render(%+v, %v, %+v)", eng.bmc, eng.macs, eng.spec)
	}
	if s := got.ipxe.ValueString(); strings.Contains(s, "secret-script") || !strings.Contains(s, sensitiveUserDataMark) {
		t.Errorf("rendered_ipxe shows user_data:\n%s", s)
	}
	if !got.userData.IsNull() {
		t.Errorf("rendered_user_data %v, want null for a kind without user-data", got.userData)
	}

	for name, p := range map[string]func(*machineResourceModel){
		"unknown input":  func(m *machineResourceModel) { m.Hostname = types.StringUnknown() },
		"other endpoint": func(m *machineResourceModel) { m.BMC.Endpoint = types.StringValue("https://other") },
		"other system":   func(m *machineResourceModel) { m.BMC.SystemID = types.StringValue("node2") },
	} {
		m := plan()
		p(m)
		if _, ok := r.renderAtPlan(ctx, m, &state); ok {
			t.Errorf("%s: rendered at plan time", name)
		}
	}
	if eng.calls != 1 {
		t.Errorf("Render called %d times, want once", eng.calls)
	}
}
