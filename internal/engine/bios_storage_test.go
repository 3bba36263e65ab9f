package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

var engineProfiles = map[bmcsim.Vendor]map[string]string{
	bmcsim.Generic:    {"ProcVirtualization": "Disabled"},
	bmcsim.Dell:       {"ProcVirtualization": "Disabled"},
	bmcsim.HPE:        {"ProcVirtualization": "Disabled"},
	bmcsim.Supermicro: {"IntelVTforDirectedI/O(VT-d)": "Disable"},
}

// TestBIOSAndVolumesPerVendor drives BIOS and RAID through the engine, one
// BMC session per operation, against every simulated vendor.
func TestBIOSAndVolumesPerVendor(t *testing.T) {
	t.Parallel()
	for _, v := range bmcsim.Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			sim, bmc := startBMC(t, bmcsim.Options{Vendor: v, PowerTransition: 10 * time.Millisecond, TaskPolls: 1})
			e := newEngine(4)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			prof := engine.BIOSProfile{Attributes: engineProfiles[v], ApplyTime: engine.ApplyOnReset}
			res, err := e.ApplyBIOS(ctx, bmc, prof)
			if err != nil || !res.Rebooted {
				t.Fatalf("ApplyBIOS: %+v %v", res, err)
			}
			b, err := e.BIOS(ctx, bmc)
			if err != nil || len(b.Diff(prof)) != 0 || len(b.Pending) != 0 {
				t.Fatalf("BIOS after apply: %+v %v", b, err)
			}

			ctrls, err := e.Storage(ctx, bmc)
			if err != nil || len(ctrls) == 0 {
				t.Fatalf("Storage: %v %v", ctrls, err)
			}
			vol, err := e.CreateVolume(ctx, bmc, engine.VolumeSpec{RAIDType: "RAID5", Name: "data",
				Selector: &engine.DriveSelector{MediaType: "HDD", Count: 3}})
			if err != nil || len(vol.DriveIDs) != 3 || vol.DeviceHint == "" {
				t.Fatalf("CreateVolume: %+v %v", vol, err)
			}
			_, err = e.CreateVolume(ctx, bmc, engine.VolumeSpec{RAIDType: "RAID1", DriveIDs: vol.DriveIDs[:1]})
			if !errors.Is(err, engine.ErrInvalidSpec) {
				t.Fatalf("bad volume: %v", err)
			}
			sc, _ := e.Storage(ctx, bmc)
			id := ""
			for _, c := range sc {
				if c.RAIDCapable() {
					id = c.ID
				}
			}
			if err := e.DeleteVolume(ctx, bmc, id, vol.ID); err != nil {
				t.Fatal(err)
			}
			if got := sim.ActiveSessions(); got != 0 {
				t.Fatalf("engine leaked %d BMC sessions", got)
			}
		})
	}
}
