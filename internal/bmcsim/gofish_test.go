package bmcsim

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"
)

// A real Redfish client library must be able to drive every vendor flavour:
// session login, system discovery, NICs, boot override, reset, PATCH with
// ETags, logout.
func TestGofishDrivesEveryVendor(t *testing.T) {
	t.Parallel()
	for _, v := range Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, Options{Vendor: v, PowerTransition: 20 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := gofish.ConnectContext(ctx, gofish.ClientConfig{
				Endpoint: e.base, Username: "admin", Password: "password", HTTPClient: e.hc,
			})
			if err != nil {
				t.Fatalf("ConnectContext: %v", err)
			}
			if n := e.sim.ActiveSessions(); n != 1 {
				t.Fatalf("gofish login: %d sessions", n)
			}

			systems, err := c.Service.Systems()
			if err != nil || len(systems) != 1 {
				t.Fatalf("Systems: %v %v", systems, err)
			}
			sys := systems[0]
			id := e.sim.SystemIDs()[0]
			if sys.ID != id || sys.PowerState != schemas.OffPowerState || sys.ProcessorSummary.Count == nil || *sys.ProcessorSummary.Count == 0 {
				t.Fatalf("system as gofish sees it: id=%q power=%q cpus=%v", sys.ID, sys.PowerState, sys.ProcessorSummary.Count)
			}
			if !slices.Contains(sys.Boot.AllowableBootSourceOverrideTargetValues, schemas.PxeBootSource) {
				t.Fatalf("allowable boot targets %v", sys.Boot.AllowableBootSourceOverrideTargetValues)
			}
			types, err := sys.GetSupportedResetTypes()
			if err != nil || !slices.Contains(types, schemas.ForceRestartResetType) {
				t.Fatalf("reset types %v %v", types, err)
			}
			nics, err := sys.EthernetInterfaces()
			if err != nil || len(nics) != 2 || nics[0].MACAddress == "" {
				t.Fatalf("EthernetInterfaces: %v %v", nics, err)
			}

			// Boot override with only target and enabled, as every vendor
			// accepts (iDRAC10 refuses the mode). gofish sends If-Match from
			// the ETag, which Supermicro requires.
			if err := sys.SetBoot(&schemas.Boot{
				BootSourceOverrideTarget:  schemas.PxeBootSource,
				BootSourceOverrideEnabled: schemas.OnceBootSourceOverrideEnabled,
			}); err != nil {
				t.Fatalf("SetBoot: %v", err)
			}
			if st, _ := e.sim.System(id); st.BootTarget != "Pxe" || st.BootEnabled != "Once" {
				t.Fatalf("after SetBoot: %+v", st)
			}

			// gofish sends If-Match on actions too; iDRAC10 refuses it with
			// 412 and gofish retries without.
			if _, err := sys.Reset(schemas.OnResetType); err != nil {
				t.Fatalf("Reset On: %v", err)
			}
			e.waitPower(id, "On")
			if st, _ := e.sim.System(id); st.BootEnabled != "Disabled" || !slices.Equal(st.Resets, []string{"On"}) {
				t.Fatalf("after the boot: %+v", st)
			}

			// Update with a fresh copy (and so a fresh ETag).
			fresh, err := schemas.GetComputerSystem(c, sys.ODataID)
			if err != nil {
				t.Fatalf("GetComputerSystem: %v", err)
			}
			if fresh.PowerState != schemas.OnPowerState {
				t.Fatalf("gofish reads %q after power-on", fresh.PowerState)
			}
			fresh.AssetTag = "from-gofish"
			if err := fresh.Update(); err != nil {
				t.Fatalf("Update: %v", err)
			}
			if st, _ := e.sim.System(id); st.LastPatch["AssetTag"] != "from-gofish" {
				t.Fatalf("LastPatch %v", st.LastPatch)
			}
			if _, err := fresh.Reset(schemas.ForceRestartResetType); err != nil {
				t.Fatalf("Reset ForceRestart: %v", err)
			}
			if v == Dell {
				// The iDRAC10 quirk was hit and gofish's retry got past it.
				var got []int
				for _, r := range e.sim.Requests() {
					if r.Method == http.MethodPost && r.Path == sys.ODataID+"/Actions/ComputerSystem.Reset" {
						got = append(got, r.Status)
					}
				}
				if !slices.Equal(got, []int{412, 204, 412, 204}) {
					t.Fatalf("Dell reset statuses %v", got)
				}
			}
			c.Logout()
			if n := e.sim.ActiveSessions(); n != 0 {
				t.Fatalf("after Logout: %d sessions", n)
			}
		})
	}
}

// gofish's AutoExpand asks for "$expand=." on collections and must get real
// member objects back from a service that advertises NoLinks.
func TestGofishAutoExpand(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Systems: []SystemSpec{{ID: "a"}, {ID: "b"}}})
	c, err := gofish.ConnectContext(context.Background(), gofish.ClientConfig{
		Endpoint: e.base, Username: "admin", Password: "password", HTTPClient: e.hc, BasicAuth: true, AutoExpand: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.sim.ResetRequests()
	systems, err := c.Service.Systems()
	if err != nil || len(systems) != 2 || systems[1].ID != "b" {
		t.Fatalf("Systems: %v %v", systems, err)
	}
	reqs := e.sim.Requests()
	if len(reqs) != 1 || reqs[0].RawQuery != "$expand=." || reqs[0].Auth != "basic" {
		t.Fatalf("AutoExpand should need one expanded GET, got %+v", reqs)
	}
}
