package machinesim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/iana"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
)

// redfish drives a bmcsim system over its Redfish API, as the provider does.
type redfish struct {
	t    *testing.T
	base string
	sys  string
}

func (r redfish) do(method, path string, body any) {
	r.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		r.t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(r.t.Context(), method, r.base+path, bytes.NewReader(b))
	if err != nil {
		r.t.Fatal(err)
	}
	req.SetBasicAuth("admin", "password")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		r.t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
}

func (r redfish) pxeOnce() {
	r.t.Helper()
	r.do(http.MethodPatch, "/redfish/v1/Systems/"+r.sys, map[string]any{"Boot": map[string]any{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
	}})
}

func (r redfish) reset(rt string) {
	r.t.Helper()
	r.do(http.MethodPost, "/redfish/v1/Systems/"+r.sys+"/Actions/ComputerSystem.Reset", map[string]any{"ResetType": rt})
}

// The acceptance-test loop: a Pxe once-override and a power-on install the
// machine; a plain restart boots its disk; a deprovision and another Pxe
// boot wipe it.
func TestFleetWithBMCSimulator(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	l.provision("node1", mac1, ip1, render.KindCloudInit)

	fleet := NewFleet(FleetConfig{DHCPServer: l.dhcpAddr, Logger: l.logger()})
	t.Cleanup(fleet.Close)
	sim := bmcsim.New(bmcsim.Options{
		PowerTransition: 10 * time.Millisecond,
		Systems: []bmcsim.SystemSpec{{
			ID:     "node1",
			NICs:   []bmcsim.NIC{{MAC: mac1.String(), LinkUp: true}},
			OnBoot: fleet.OnBoot,
		}},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 3*ioTimeout)
	defer cancel()
	base, err := sim.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rf := redfish{t: t, base: base, sys: "node1"}

	rf.pxeOnce()
	rf.reset("On")
	recs, err := fleet.WaitBoots(ctx, "node1", 1)
	if err != nil {
		t.Fatal(err)
	}
	rec := recs[0]
	if rec.Err != nil || rec.Event.Target != "Pxe" || !rec.Result.Provisioned || rec.Result.Installer != InstallerCloudInit {
		t.Fatalf("install boot: %v %s %+v", rec.Err, rec.Result, rec.Event)
	}
	if req := l.lastLookup(); req.Arch != iana.EFI_X86_64 {
		t.Errorf("a UEFI system netbooted as arch %d", req.Arch)
	}
	m := fleet.Machine("node1")
	if inst, ok := m.Disk.Installed(); !ok || inst.Hostname != "node1.example.com" {
		t.Fatalf("disk after install: %+v", inst)
	}

	rf.reset("ForceRestart")
	recs, err = fleet.WaitBoots(ctx, "node1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if rec := recs[1]; rec.Err != nil || rec.Event.Target != "" || rec.Result.BootedFrom != BootedFromDisk {
		t.Fatalf("second boot: %v %s", rec.Err, rec.Result)
	}

	l.deprovision("node1")
	rf.pxeOnce()
	rf.reset("ForceRestart")
	recs, err = fleet.WaitBoots(ctx, "node1", 3)
	if err != nil {
		t.Fatal(err)
	}
	if rec := recs[2]; rec.Err != nil || rec.Result.Installer != InstallerWipe || !rec.Result.Provisioned {
		t.Fatalf("wipe boot: %v %s", rec.Err, rec.Result)
	}
	if _, ok := m.Disk.Installed(); ok {
		t.Error("disk not wiped")
	}

	// With nothing installed, a normal boot has no operating system.
	rf.reset("ForceRestart")
	recs, err = fleet.WaitBoots(ctx, "node1", 4)
	if err != nil {
		t.Fatal(err)
	}
	if rec := recs[3]; !errors.Is(rec.Err, ErrNoOS) {
		t.Fatalf("boot of the wiped disk: %v", rec.Err)
	}
	l.noLeaks(t)
}

// A Legacy system netboots as BIOS; unsupported targets and boots after
// Close are recorded as errors.
func TestFleetModesTargetsAndClose(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	l.provision("node1", mac1, ip1, render.KindKickstart)
	fleet := NewFleet(FleetConfig{DHCPServer: l.dhcpAddr})
	fleet.Add("node1", &Machine{MAC: mac1})

	fleet.OnBoot(bmcsim.BootEvent{SystemID: "node1", Target: "Pxe", Mode: "Legacy", MACs: []string{"02:00:00:00:00:01"}, Seq: 1})
	recs := fleet.Records("node1")
	if len(recs) != 1 || recs[0].Err != nil || !recs[0].Result.Provisioned {
		t.Fatalf("records %+v", recs)
	}
	if req := l.lastLookup(); req.Arch != iana.INTEL_X86PC || req.VendorClass != "PXEClient:Arch:00000:UNDI:002001" {
		t.Errorf("a Legacy boot sent %+v", req.ClientFacts)
	}

	fleet.OnBoot(bmcsim.BootEvent{SystemID: "node1", Target: "Cd", Mode: "UEFI", Seq: 2})
	if recs := fleet.Records("node1"); len(recs) != 2 || recs[1].Err == nil {
		t.Fatalf("Cd boot: %+v", recs)
	}
	fleet.Close()
	fleet.OnBoot(bmcsim.BootEvent{SystemID: "node1", Target: "Pxe", Seq: 3})
	if recs := fleet.Records(""); len(recs) != 3 || !errors.Is(recs[2].Err, ErrFleetClosed) {
		t.Fatalf("after Close: %+v", recs)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := fleet.WaitBoots(ctx, "node1", 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitBoots: %v", err)
	}
}
