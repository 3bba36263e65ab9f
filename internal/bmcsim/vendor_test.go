package bmcsim

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestVendorShapes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		vendor                  Vendor
		system, manager, chass  string
		nic                     string
		resetTypes              []string
		slash, context, counted bool
	}{
		{Generic, "437XR1138R2", "BMC", "1U", "NIC1", genericProfile().resetTypes, false, false, false},
		{Dell, "System.Embedded.1", "iDRAC.Embedded.1", "System.Embedded.1", "NIC.Integrated.1-1-1",
			[]string{"On", "ForceOff", "ForceRestart", "GracefulRestart", "GracefulShutdown", "PushPowerButton", "Nmi", "PowerCycle"}, false, true, true},
		{HPE, "1", "1", "1", "1",
			[]string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "Nmi", "PushPowerButton", "GracefulRestart"}, true, true, false},
		{Supermicro, "1", "1", "1", "1",
			[]string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn", "PowerCycle"}, false, false, false},
	}
	for _, c := range cases {
		t.Run(string(c.vendor), func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, Options{Vendor: c.vendor})
			want := func(p string) string {
				if c.slash {
					return p + "/"
				}
				return p
			}
			sysPath := "/redfish/v1/Systems/" + c.system
			sys := e.get(sysPath).mustStatus(t, http.StatusOK)
			if sys.body["Id"] != c.system || sys.body["@odata.id"] != want(sysPath) {
				t.Fatalf("system id: %s", sys.raw)
			}
			if _, has := sys.body["@odata.context"]; has != c.context {
				t.Fatalf("@odata.context present=%v, want %v", has, c.context)
			}
			if _, has := path(sys.body, "Links").(map[string]any)["Chassis@odata.count"]; has != c.counted {
				t.Fatalf("@odata.count annotations present=%v, want %v", has, c.counted)
			}
			if got := str(path(sys.body, "Links", "ManagedBy").([]any)[0], "@odata.id"); got != want("/redfish/v1/Managers/"+c.manager) {
				t.Fatalf("ManagedBy %q", got)
			}
			if got := str(path(sys.body, "Links", "Chassis").([]any)[0], "@odata.id"); got != want("/redfish/v1/Chassis/"+c.chass) {
				t.Fatalf("Chassis %q", got)
			}
			reset := path(sys.body, "Actions", "#ComputerSystem.Reset")
			if str(reset, "target") != want(sysPath+"/Actions/ComputerSystem.Reset") {
				t.Fatalf("reset target %q", str(reset, "target"))
			}
			var allowed []string
			for _, v := range path(reset, "ResetType@Redfish.AllowableValues").([]any) {
				allowed = append(allowed, v.(string))
			}
			if !slices.Equal(allowed, c.resetTypes) {
				t.Fatalf("reset types %v, want %v", allowed, c.resetTypes)
			}
			nics := e.get(sysPath+"/EthernetInterfaces").mustStatus(t, http.StatusOK)
			if got := str(nics.body["Members"].([]any)[0], "@odata.id"); got != want(sysPath+"/EthernetInterfaces/"+c.nic) {
				t.Fatalf("first NIC %q", got)
			}
			nic := e.get(sysPath+"/EthernetInterfaces/"+c.nic).mustStatus(t, http.StatusOK)
			if nic.body["MACAddress"] == "" || nic.body["PermanentMACAddress"] != nic.body["MACAddress"] || nic.body["LinkStatus"] != "LinkUp" {
				t.Fatalf("NIC: %s", nic.raw)
			}
			e.get("/redfish/v1/Managers/"+c.manager).mustStatus(t, http.StatusOK)
			e.get("/redfish/v1/Chassis/"+c.chass).mustStatus(t, http.StatusOK)
		})
	}
}

func TestDellQuirks(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Vendor: Dell})
	sp := "/redfish/v1/Systems/System.Embedded.1"

	// iDRAC10 refuses BootSourceOverrideMode; the minimal payload works.
	e.do(http.MethodPatch, sp, map[string]any{"Boot": map[string]any{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI",
	}}, nil).mustError(t, http.StatusBadRequest, "PropertyNotWritable")
	if st, _ := e.sim.System("System.Embedded.1"); st.BootTarget != "None" {
		t.Fatalf("a rejected PATCH was partly applied: %+v", st)
	}
	r := e.do(http.MethodPatch, sp, map[string]any{"Boot": map[string]any{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
	}}, nil).mustStatus(t, http.StatusOK)
	if !hasMessage(r.body, "Success") {
		t.Fatalf("iDRAC PATCH answer: %s", r.raw)
	}

	// iDRAC10 rejects If-Match on actions.
	etag := e.get(sp).header.Get("ETag")
	e.do(http.MethodPost, sp+"/Actions/ComputerSystem.Reset", map[string]any{"ResetType": "On"}, map[string]string{"If-Match": etag}).
		mustError(t, http.StatusPreconditionFailed, "PreconditionFailed")
	e.reset(sp, "On").mustStatus(t, http.StatusNoContent)
	e.reset(sp, "On").mustError(t, http.StatusConflict, "PSU501")
	e.reset(sp, "ForceOff").mustStatus(t, http.StatusNoContent)
	e.reset(sp, "GracefulShutdown").mustError(t, http.StatusConflict, "PSU502")
	if st, _ := e.sim.System("System.Embedded.1"); !slices.Equal(st.Resets, []string{"On", "ForceOff"}) {
		t.Fatalf("rejected resets were recorded: %v", st.Resets)
	}

	// Manager job queue placeholder.
	m := e.get("/redfish/v1/Managers/iDRAC.Embedded.1").mustStatus(t, http.StatusOK)
	jobs := str(m.body, "Links", "Oem", "Dell", "Jobs", "@odata.id")
	if jobs == "" {
		t.Fatalf("no job queue link: %s", m.raw)
	}
	e.get(jobs).mustStatus(t, http.StatusOK)
	if root := e.get("/redfish/v1").body; path(root, "Oem", "Dell", "ServiceTag") == nil || root["Vendor"] != "Dell" {
		t.Fatalf("service root Oem.Dell: %v", root)
	}
}

func TestHPEQuirks(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Vendor: HPE})
	sp := "/redfish/v1/Systems/1/"

	// Success answers carry an "error" object with Base.x.Success.
	r := e.do(http.MethodPatch, sp, map[string]any{"AssetTag": "a1"}, nil).mustStatus(t, http.StatusOK)
	if str(r.body, "error", "code") != "iLO.0.10.ExtendedInfo" || !hasMessage(r.body, "Success") {
		t.Fatalf("iLO success answer: %s", r.raw)
	}
	// Weak ETags, accepted back in If-Match.
	etag := e.get(sp).header.Get("ETag")
	if !strings.HasPrefix(etag, `W/"`) {
		t.Fatalf("iLO ETag %q", etag)
	}
	okWrite(t, e.do(http.MethodPatch, sp, map[string]any{"AssetTag": "a2"}, map[string]string{"If-Match": etag}))
	e.do(http.MethodPatch, sp, map[string]any{"AssetTag": "a3"}, map[string]string{"If-Match": etag}).
		mustStatus(t, http.StatusPreconditionFailed)
	// Property errors use the iLO registry.
	e.do(http.MethodPatch, sp, map[string]any{"PowerState": "On"}, nil).mustError(t, http.StatusBadRequest, "PropertyNotWritableOrUnknown")
	if id := messageIDs(e.do(http.MethodPatch, sp, map[string]any{"Bogus": 1}, nil).body); len(id) != 1 || !strings.HasPrefix(id[0], "iLO.2.") {
		t.Fatalf("iLO message ids %v", id)
	}
	// Conflicting resets are 400 InvalidOperationForSystemState.
	target := str(e.get(sp).body, "Actions", "#ComputerSystem.Reset", "target")
	post := func(rt string) reply { return e.do(http.MethodPost, target, map[string]any{"ResetType": rt}, nil) }
	post("ForceRestart").mustError(t, http.StatusBadRequest, "InvalidOperationForSystemState")
	post("PowerCycle").mustError(t, http.StatusBadRequest, "ActionParameterNotSupported")
	okWrite(t, post("On"))
	post("On").mustError(t, http.StatusBadRequest, "InvalidOperationForSystemState")
	if root := e.get("/redfish/v1/").body; root["@odata.id"] != "/redfish/v1/" || str(root, "Oem", "Hpe", "Moniker", "PRODGEN") != "iLO 5" {
		t.Fatalf("iLO service root: %v", root)
	}
}

func TestHPEBootPatchBlockedDuringPOST(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	e := startEnvClock(t, Options{Vendor: HPE, PowerTransition: time.Minute}, clk)
	sp := "/redfish/v1/Systems/1"
	boot := map[string]any{"Boot": map[string]any{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}
	if got := str(e.get(sp).body, "Oem", "Hpe", "PostState"); got != "PowerOff" {
		t.Fatalf("PostState while off = %q", got)
	}
	okWrite(t, e.reset(sp, "On"))
	sys := e.get(sp)
	if str(sys.body, "Oem", "Hpe", "PostState") != "InPost" || sys.body["PowerState"] != "PoweringOn" {
		t.Fatalf("during power-on: %s", sys.raw)
	}
	e.do(http.MethodPatch, sp, boot, nil).mustError(t, http.StatusBadRequest, "UnableToModifyDuringSystemPOST")
	clk.Advance(time.Minute)
	sys = e.get(sp)
	if str(sys.body, "Oem", "Hpe", "PostState") != "FinishedPost" || sys.body["PowerState"] != "On" {
		t.Fatalf("after POST: %s", sys.raw)
	}
	okWrite(t, e.do(http.MethodPatch, sp, boot, nil))
	// A warm restart goes through POST again with power staying on.
	okWrite(t, e.reset(sp, "ForceRestart"))
	sys = e.get(sp)
	if str(sys.body, "Oem", "Hpe", "PostState") != "InPost" || sys.body["PowerState"] != "On" {
		t.Fatalf("during warm restart: %s", sys.raw)
	}
	e.do(http.MethodPatch, sp, boot, nil).mustError(t, http.StatusBadRequest, "UnableToModifyDuringSystemPOST")
}

func TestHPEGracefulShutdownIsSlow(t *testing.T) {
	t.Parallel()
	const tr = 10 * time.Second
	clk := newFakeClock()
	e := startEnvClock(t, Options{Vendor: HPE, PowerTransition: tr, Systems: []SystemSpec{{PoweredOn: true}}}, clk)
	okWrite(t, e.reset("/redfish/v1/Systems/1", "GracefulShutdown"))
	for _, step := range []struct {
		advance time.Duration
		want    string
	}{{0, "On"}, {3*tr - time.Second, "On"}, {time.Second, "PoweringOff"}, {tr, "Off"}} {
		clk.Advance(step.advance)
		if st, _ := e.sim.System("1"); st.PowerState != step.want {
			t.Fatalf("at +%v: %s, want %s", step.advance, st.PowerState, step.want)
		}
	}
}

func TestSupermicroQuirks(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Vendor: Supermicro})
	sp := "/redfish/v1/Systems/1"
	if root := e.get("/redfish/v1").body; root["ProtocolFeaturesSupported"] != nil {
		t.Fatalf("Supermicro advertises query support: %v", root)
	}
	// Queries are ignored, not rejected.
	r := e.get(sp+"?$expand=.($levels=2)&$select=Id&$filter=x").mustStatus(t, http.StatusOK)
	if _, expanded := path(r.body, "EthernetInterfaces", "Members").([]any); expanded || r.body["PowerState"] == nil {
		t.Fatalf("query was applied: %s", r.raw)
	}
	// PATCH needs If-Match.
	boot := map[string]any{"Boot": map[string]any{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}
	e.do(http.MethodPatch, sp, boot, nil).mustError(t, http.StatusPreconditionRequired, "PreconditionRequired")
	etag := e.get(sp).header.Get("ETag")
	r = e.do(http.MethodPatch, sp, boot, map[string]string{"If-Match": etag}).mustStatus(t, http.StatusOK)
	if str(r.body, "Success", "code") == "" {
		t.Fatalf("Supermicro success answer: %s", r.raw)
	}
	// Mode fell back to Legacy because the PATCH omitted it; Enabled reads
	// back Continuous although Once was stored.
	st, _ := e.sim.System("1")
	got := e.get(sp).body
	if st.BootEnabled != "Once" || st.BootMode != "Legacy" || str(got, "Boot", "BootSourceOverrideEnabled") != "Continuous" ||
		str(got, "Boot", "BootSourceOverrideMode") != "Legacy" || str(got, "Boot", "BootSourceOverrideTarget") != "Pxe" {
		t.Fatalf("truth %+v, read-back %v", st, got["Boot"])
	}
	// The ETag annotation in the body also satisfies the precondition.
	etag = e.get(sp).header.Get("ETag")
	okWrite(t, e.do(http.MethodPatch, sp, map[string]any{"@odata.etag": etag, "Boot": map[string]any{
		"BootSourceOverrideMode": "UEFI", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Pxe"}}, nil))
	if st, _ := e.sim.System("1"); st.BootMode != "UEFI" {
		t.Fatalf("mode with explicit UEFI: %+v", st)
	}
	// Power requests that do not fit the state are accepted.
	r = e.reset(sp, "ForceOff").mustStatus(t, http.StatusOK)
	if r.body["Success"] == nil {
		t.Fatalf("no-op reset answer: %s", r.raw)
	}
}

func TestExpandGeneric(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	sp := e.systemPath()

	r := e.get(sp+"?$expand=.($levels=2)").mustStatus(t, http.StatusOK)
	members, _ := path(r.body, "EthernetInterfaces", "Members").([]any)
	if len(members) != 2 || str(members[0], "MACAddress") == "" || str(members[0], "@odata.etag") == "" {
		t.Fatalf("levels=2 did not inline NIC members: %s", r.raw)
	}
	if str(r.body, "Processors", "Name") == "" || str(r.body, "Bios", "Id") != "Bios" {
		t.Fatalf("levels=2 did not inline Processors/Bios: %s", r.raw)
	}
	if keys := path(r.body, "Links", "Chassis").([]any)[0].(map[string]any); len(keys) != 1 {
		t.Fatalf("'.' expanded a Links reference: %v", keys)
	}

	r = e.get(sp+"?$expand=.").mustStatus(t, http.StatusOK)
	members, _ = path(r.body, "EthernetInterfaces", "Members").([]any)
	if len(members) != 2 || len(members[0].(map[string]any)) != 1 {
		t.Fatalf("levels=1 should inline the collection but not its members: %s", r.raw)
	}

	r = e.get(sp+"?$expand=~").mustStatus(t, http.StatusOK)
	if str(path(r.body, "Links", "Chassis").([]any)[0], "ChassisType") != "RackMount" || len(path(r.body, "EthernetInterfaces").(map[string]any)) != 1 {
		t.Fatalf("'~' should expand only Links: %s", r.raw)
	}
	r = e.get(sp+"?$expand=*").mustStatus(t, http.StatusOK)
	if str(path(r.body, "Links", "Chassis").([]any)[0], "ChassisType") != "RackMount" || str(r.body, "EthernetInterfaces", "Name") == "" {
		t.Fatalf("'*' should expand both: %s", r.raw)
	}
	// A collection expands into its members.
	r = e.get("/redfish/v1/Systems?$expand=.").mustStatus(t, http.StatusOK)
	if str(r.body["Members"].([]any)[0], "PowerState") == "" {
		t.Fatalf("collection members not inlined: %s", r.raw)
	}

	e.get(sp+"?$expand=.($levels=7)").mustError(t, http.StatusBadRequest, "QueryParameterOutOfRange")
	e.get(sp+"?$expand=.($levels=0)").mustError(t, http.StatusBadRequest, "QueryParameterOutOfRange")
	e.get(sp+"?$expand=!").mustError(t, http.StatusBadRequest, "QueryParameterValueFormatError")
	e.get(sp+"?$expand=.($levels=two)").mustError(t, http.StatusBadRequest, "QueryParameterValueFormatError")
	e.get(sp+"?$filter=PowerState%20eq%20'On'").mustError(t, http.StatusNotImplemented, "QueryParameterUnsupported")
	e.get(sp+"?$expand=.&$select=Id").mustError(t, http.StatusBadRequest, "QueryCombinationInvalid")
	e.get(sp+"?only&foo=bar").mustStatus(t, http.StatusOK) // non-$ parameters are ignored

	r = e.get(sp+"?$select=PowerState,Boot/BootSourceOverrideTarget").mustStatus(t, http.StatusOK)
	if r.body["PowerState"] == nil || str(r.body, "Boot", "BootSourceOverrideTarget") != "None" || r.body["Model"] != nil ||
		path(r.body, "Boot", "BootSourceOverrideMode") != nil || r.body["@odata.id"] == nil || r.body["@odata.type"] == nil {
		t.Fatalf("$select: %s", r.raw)
	}
}

func TestExpandPerVendor(t *testing.T) {
	t.Parallel()
	cases := []struct {
		vendor Vendor
		query  string
		status int
	}{
		{Dell, "$expand=.", http.StatusOK},
		{Dell, "$expand=*", http.StatusOK},
		{Dell, "$expand=~($levels=1)", http.StatusOK},
		{Dell, "$expand=.($levels=2)", http.StatusBadRequest},
		{Dell, "$select=PowerState", http.StatusOK},
		{HPE, "$expand=.", http.StatusOK},
		{HPE, "$expand=.($levels=1)", http.StatusOK},
		{HPE, "$expand=.($levels=2)", http.StatusBadRequest},
		{HPE, "$expand=*", http.StatusNotImplemented},
		{HPE, "$expand=~", http.StatusNotImplemented},
		{HPE, "$select=PowerState", http.StatusNotImplemented},
		{Supermicro, "$expand=*($levels=3)", http.StatusOK},
		{Supermicro, "$select=PowerState", http.StatusOK},
	}
	envs := map[Vendor]*env{}
	for _, v := range []Vendor{Dell, HPE, Supermicro} {
		envs[v] = startEnv(t, Options{Vendor: v})
	}
	for _, c := range cases {
		e := envs[c.vendor]
		r := e.get(e.systemPath() + "?" + c.query)
		if r.status != c.status {
			t.Fatalf("%s ?%s: status %d, want %d (%s)", c.vendor, c.query, r.status, c.status, r.raw)
		}
	}
	// Dell's one level inlines the NIC collection, not its members.
	r := envs[Dell].get(envs[Dell].systemPath()+"?$expand=.").mustStatus(t, http.StatusOK)
	if m, _ := path(r.body, "EthernetInterfaces", "Members").([]any); len(m) != 2 {
		t.Fatalf("Dell $expand=.: %s", r.raw)
	}
	root := envs[HPE].get("/redfish/v1/").body
	if path(root, "ProtocolFeaturesSupported", "ExpandQuery", "ExpandAll") != false ||
		path(root, "ProtocolFeaturesSupported", "ExpandQuery", "MaxLevels") != 1.0 ||
		path(root, "ProtocolFeaturesSupported", "SelectQuery") != false {
		t.Fatalf("iLO ProtocolFeaturesSupported: %v", root["ProtocolFeaturesSupported"])
	}
	root = envs[Dell].get("/redfish/v1").body
	if path(root, "ProtocolFeaturesSupported", "ExpandQuery", "MaxLevels") != 1.0 ||
		path(root, "ProtocolFeaturesSupported", "SelectQuery") != true {
		t.Fatalf("iDRAC ProtocolFeaturesSupported: %v", root["ProtocolFeaturesSupported"])
	}
}
