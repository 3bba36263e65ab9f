package bmcsim

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestPowerTransitions(t *testing.T) {
	t.Parallel()
	const tr = 10 * time.Second
	clk := newFakeClock()
	e := startEnvClock(t, Options{PowerTransition: tr, Systems: []SystemSpec{{ID: "s"}}}, clk)
	sp := "/redfish/v1/Systems/s"
	redfish := func() any { return e.get(sp).body["PowerState"] }
	truth := func() string { st, _ := e.sim.System("s"); return st.PowerState }

	e.reset(sp, "On").mustStatus(t, http.StatusNoContent)
	if got := redfish(); got != "PoweringOn" {
		t.Fatalf("right after On: %v", got)
	}
	clk.Advance(tr - time.Second)
	if got := truth(); got != "PoweringOn" {
		t.Fatalf("before the transition ends: %v", got)
	}
	clk.Advance(time.Second)
	if got := redfish(); got != "On" {
		t.Fatalf("after the transition: %v", got)
	}

	e.reset(sp, "ForceOff").mustStatus(t, http.StatusNoContent)
	if got := truth(); got != "PoweringOff" {
		t.Fatalf("right after ForceOff: %s", got)
	}
	clk.Advance(tr)
	if got := redfish(); got != "Off" {
		t.Fatalf("after ForceOff: %v", got)
	}

	// A graceful shutdown leaves power on while the OS stops; a ForceOff
	// meanwhile cuts it short.
	e.reset(sp, "On")
	clk.Advance(tr)
	e.reset(sp, "GracefulShutdown").mustStatus(t, http.StatusNoContent)
	clk.Advance(tr / 2)
	if got := truth(); got != "On" {
		t.Fatalf("during the OS shutdown: %s", got)
	}
	e.reset(sp, "ForceOff").mustStatus(t, http.StatusNoContent)
	if got := truth(); got != "PoweringOff" {
		t.Fatalf("ForceOff during a graceful shutdown: %s", got)
	}
	// Another ForceOff while power is already going off is accepted and
	// changes nothing.
	e.reset(sp, "ForceOff").mustStatus(t, http.StatusNoContent)
	clk.Advance(tr)
	if got := truth(); got != "Off" {
		t.Fatalf("after the cut: %s", got)
	}

	// PowerCycle: off, then on again, through both transitions.
	e.reset(sp, "On")
	clk.Advance(tr)
	e.reset(sp, "PowerCycle").mustStatus(t, http.StatusNoContent)
	for _, want := range []string{"PoweringOff", "PoweringOn", "On"} {
		if got := truth(); got != want {
			t.Fatalf("power cycle: %s, want %s", got, want)
		}
		clk.Advance(tr)
	}
	st, _ := e.sim.System("s")
	if !slices.Equal(st.Resets, []string{"On", "ForceOff", "On", "GracefulShutdown", "ForceOff", "ForceOff", "On", "PowerCycle"}) {
		t.Fatalf("reset history %v", st.Resets)
	}
}

// Real time, polled: what tests of clients do.
func TestPowerTransitionRealTime(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{PowerTransition: 30 * time.Millisecond, Systems: []SystemSpec{{ID: "s"}}})
	e.reset("/redfish/v1/Systems/s", "On").mustStatus(t, http.StatusNoContent)
	e.waitPower("s", "On")
	e.reset("/redfish/v1/Systems/s", "GracefulShutdown").mustStatus(t, http.StatusNoContent)
	e.waitPower("s", "Off")
}

func TestInstantPowerWithoutTransition(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Systems: []SystemSpec{{ID: "s"}}})
	for _, c := range []struct{ reset, want string }{
		{"On", "On"}, {"ForceRestart", "On"}, {"PowerCycle", "On"}, {"GracefulRestart", "On"},
		{"Nmi", "On"}, {"GracefulShutdown", "Off"}, {"PushPowerButton", "On"}, {"PushPowerButton", "Off"}, {"ForceOn", "On"},
	} {
		e.reset("/redfish/v1/Systems/s", c.reset).mustStatus(t, http.StatusNoContent)
		if st, _ := e.sim.System("s"); st.PowerState != c.want {
			t.Fatalf("after %s: %s, want %s", c.reset, st.PowerState, c.want)
		}
	}
}

func TestResetValidation(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	target := e.systemPath() + "/Actions/ComputerSystem.Reset"
	e.do(http.MethodPost, target, map[string]any{"ResetType": "Explode"}, nil).mustError(t, http.StatusBadRequest, "ActionParameterNotSupported")
	e.do(http.MethodPost, target, map[string]any{"ResetType": 3}, nil).mustError(t, http.StatusBadRequest, "ActionParameterNotSupported")
	e.do(http.MethodPost, target, map[string]any{}, nil).mustError(t, http.StatusBadRequest, "ActionParameterMissing")
	e.do(http.MethodPost, target, map[string]any{"ResetType": "On", "Delay": 3}, nil).mustError(t, http.StatusBadRequest, "ActionParameterUnknown")
	e.do(http.MethodPost, target, "{", nil).mustError(t, http.StatusBadRequest, "MalformedJSON")
	if st, _ := e.sim.System(e.sim.SystemIDs()[0]); len(st.Resets) != 0 || st.PowerState != "Off" {
		t.Fatalf("invalid resets changed state: %+v", st)
	}
	// Supermicro does not offer PushPowerButton, Dell does not offer ForceOn.
	for v, rt := range map[Vendor]string{Supermicro: "PushPowerButton", Dell: "ForceOn"} {
		ev := startEnv(t, Options{Vendor: v})
		ev.reset(ev.systemPath(), rt).mustError(t, http.StatusBadRequest, "ActionParameterNotSupported")
	}
}

// What each vendor does with a reset that does not fit the power state.
func TestResetConflicts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		vendor   Vendor
		on       bool
		reset    string
		status   int
		message  string
		recorded bool
	}{
		{Generic, true, "On", http.StatusNoContent, "", true},
		{Generic, false, "ForceOff", http.StatusNoContent, "", true},
		{Generic, false, "ForceRestart", http.StatusConflict, "ResourceInStandby", false},
		{Dell, true, "On", http.StatusConflict, "PSU501", false},
		{Dell, false, "ForceOff", http.StatusConflict, "PSU502", false},
		{HPE, true, "On", http.StatusBadRequest, "InvalidOperationForSystemState", false},
		{HPE, false, "Nmi", http.StatusBadRequest, "InvalidOperationForSystemState", false},
		{Supermicro, true, "On", http.StatusOK, "", true},
		{Supermicro, false, "GracefulRestart", http.StatusOK, "", true},
	}
	for _, c := range cases {
		e := startEnv(t, Options{Vendor: c.vendor, Systems: []SystemSpec{{PoweredOn: c.on}}})
		r := e.reset(e.systemPath(), c.reset)
		if c.message != "" {
			r.mustError(t, c.status, c.message)
		} else {
			r.mustStatus(t, c.status)
		}
		id := e.sim.SystemIDs()[0]
		st, _ := e.sim.System(id)
		want := "Off"
		if c.on {
			want = "On"
		}
		if st.PowerState != want || (len(st.Resets) == 1) != c.recorded {
			t.Fatalf("%s %s (on=%v): state %+v", c.vendor, c.reset, c.on, st)
		}
	}
}

func TestOutOfBandPower(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{PowerTransition: 20 * time.Millisecond, Systems: []SystemSpec{{ID: "s"}}})
	e.sim.SetPowerState("s", true)
	e.waitPower("s", "On")
	e.sim.SetPowerState("s", false)
	e.waitPower("s", "Off")
	if st, _ := e.sim.System("s"); len(st.Resets) != 0 {
		t.Fatalf("out-of-band changes are not Redfish resets: %v", st.Resets)
	}
	e.sim.SetPowerState("missing", true) // no-op
}

func TestOneTimeBootIsConsumed(t *testing.T) {
	t.Parallel()
	for _, v := range Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, Options{Vendor: v, PowerTransition: 20 * time.Millisecond, Systems: []SystemSpec{{PoweredOn: true}}})
			sp := e.systemPath()
			id := e.sim.SystemIDs()[0]
			etag := e.get(sp).header.Get("ETag")
			okWrite(t, e.do(http.MethodPatch, sp, map[string]any{"Boot": map[string]any{
				"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
			}}, map[string]string{"If-Match": etag}))
			if st, _ := e.sim.System(id); st.BootEnabled != "Once" || st.BootTarget != "Pxe" {
				t.Fatalf("after PATCH: %+v", st)
			}
			okWrite(t, e.reset(sp, "ForceRestart"))
			waitFor(t, "the override to be consumed", func() bool {
				st, _ := e.sim.System(id)
				return st.BootEnabled == "Disabled"
			})
			e.waitPower(id, "On")
			got := str(e.get(sp).body, "Boot", "BootSourceOverrideEnabled")
			want := "Disabled"
			if v == Supermicro {
				want = "Continuous" // the read-back the client must not trust
			}
			if got != want {
				t.Fatalf("read-back after the boot: %q, want %q", got, want)
			}
		})
	}
}

func TestContinuousBootIsKept(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Systems: []SystemSpec{{ID: "s", PoweredOn: true}}})
	okWrite(t, e.do(http.MethodPatch, "/redfish/v1/Systems/s", map[string]any{"Boot": map[string]any{
		"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideMode": "Legacy",
	}}, nil))
	e.reset("/redfish/v1/Systems/s", "ForceRestart")
	if st, _ := e.sim.System("s"); st.BootEnabled != "Continuous" || st.BootMode != "Legacy" || st.BootTarget != "Hdd" {
		t.Fatalf("after restart: %+v", st)
	}
}

func TestBootPatchValidation(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Systems: []SystemSpec{{ID: "s"}}})
	sp := "/redfish/v1/Systems/s"
	patch := func(body any) reply { return e.do(http.MethodPatch, sp, body, nil) }
	boot := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return map[string]any{"Boot": m}
	}

	patch(boot("BootSourceOverrideTarget", "Floppy")).mustError(t, http.StatusBadRequest, "PropertyValueNotInList")
	patch(boot("BootSourceOverrideEnabled", "Sometimes")).mustError(t, http.StatusBadRequest, "PropertyValueNotInList")
	patch(boot("BootSourceOverrideMode", "BIOS")).mustError(t, http.StatusBadRequest, "PropertyValueNotInList")
	patch(boot("BootSourceOverrideTarget", 7)).mustError(t, http.StatusBadRequest, "PropertyValueTypeError")
	patch(boot("BootOrder", []string{"Boot0002"})).mustError(t, http.StatusBadRequest, "PropertyNotWritable")
	patch(boot("BootSourceOverrideTarget@Redfish.AllowableValues", []string{"Pxe"})).mustError(t, http.StatusBadRequest, "PropertyNotWritable")
	patch(boot("Frobnicate", true)).mustError(t, http.StatusBadRequest, "PropertyUnknown")
	patch(map[string]any{"Boot": "Pxe"}).mustError(t, http.StatusBadRequest, "PropertyValueTypeError")
	patch(map[string]any{"PowerState": "On"}).mustError(t, http.StatusBadRequest, "PropertyNotWritable")
	patch(map[string]any{"Wings": 2}).mustError(t, http.StatusBadRequest, "PropertyUnknown")
	patch(map[string]any{"IndicatorLED": "Disco"}).mustError(t, http.StatusBadRequest, "PropertyValueNotInList")
	patch("[1,2]").mustError(t, http.StatusBadRequest, "MalformedJSON")

	// All or nothing: one bad property and nothing is applied; every error is reported.
	r := patch(map[string]any{"AssetTag": "x", "Boot": map[string]any{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Never"}, "Model": "y"})
	r.mustError(t, http.StatusBadRequest, "PropertyValueNotInList")
	if !hasMessage(r.body, "PropertyNotWritable") || len(messageIDs(r.body)) != 2 {
		t.Fatalf("want both errors: %v", messageIDs(r.body))
	}
	if st, _ := e.sim.System("s"); st.BootTarget != "None" || st.LastPatch != nil || e.get(sp).body["AssetTag"] != "" {
		t.Fatalf("a rejected PATCH changed state: %+v", st)
	}

	body := map[string]any{"AssetTag": "rack-7", "IndicatorLED": "Blinking", "LocationIndicatorActive": true,
		"Boot": map[string]any{"BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI"}}
	patch(body).mustStatus(t, http.StatusNoContent)
	got := e.get(sp).body
	if got["AssetTag"] != "rack-7" || got["IndicatorLED"] != "Blinking" || got["LocationIndicatorActive"] != true ||
		str(got, "Boot", "BootSourceOverrideTarget") != "UefiHttp" || str(got, "Boot", "BootSourceOverrideEnabled") != "Once" {
		t.Fatalf("after PATCH: %v", got)
	}
	st, _ := e.sim.System("s")
	if st.LastPatch["AssetTag"] != "rack-7" || path(st.LastPatch, "Boot", "BootSourceOverrideTarget") != "UefiHttp" {
		t.Fatalf("LastPatch %v", st.LastPatch)
	}
}

func TestIfMatch(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	sp := e.systemPath()
	etag := e.get(sp).header.Get("ETag")
	e.do(http.MethodPatch, sp, map[string]any{"AssetTag": "a"}, map[string]string{"If-Match": `"stale"`}).
		mustError(t, http.StatusPreconditionFailed, "PreconditionFailed")
	e.do(http.MethodPatch, sp, map[string]any{"AssetTag": "a"}, map[string]string{"If-Match": etag}).mustStatus(t, http.StatusNoContent)
	// The resource changed, so the old ETag is stale now.
	e.do(http.MethodPatch, sp, map[string]any{"AssetTag": "b"}, map[string]string{"If-Match": etag}).mustStatus(t, http.StatusPreconditionFailed)
	e.do(http.MethodPatch, sp, map[string]any{"AssetTag": "b"}, map[string]string{"If-Match": "*"}).mustStatus(t, http.StatusNoContent)
	// Power changes change the ETag too.
	etag = e.get(sp).header.Get("ETag")
	e.reset(sp, "On")
	if e.get(sp).header.Get("ETag") == etag {
		t.Fatal("ETag unchanged by a power change")
	}
}
