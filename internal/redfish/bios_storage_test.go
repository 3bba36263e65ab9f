package redfish_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/redfish"
)

// biosProfiles is a writable profile per vendor (registry names differ).
var biosProfiles = map[bmcsim.Vendor]map[string]string{
	bmcsim.Generic:    {"ProcHyperthreading": "Disabled", "BootRetryCount": "5", "PowerProfile": "MaxPerformance"},
	bmcsim.Dell:       {"LogicalProc": "Disabled", "SysProfile": "Custom", "ProcCStates": "Disabled", "AcPwrRcvryUserDelay": "120"},
	bmcsim.HPE:        {"ProcHyperthreading": "Disabled", "WorkloadProfile": "Virtualization-MaxPerformance"},
	bmcsim.Supermicro: {"HyperThreading": "Disable", "QuietBoot": "false"},
}

func TestApplyBIOSAcrossVendors(t *testing.T) {
	t.Parallel()
	for _, vendor := range bmcsim.Vendors() {
		for _, at := range []redfish.ApplyTime{redfish.ApplyOnReset, redfish.ApplyImmediate} {
			t.Run(string(vendor)+"/"+string(at), func(t *testing.T) {
				t.Parallel()
				sim, cfg := startSim(t, bmcsim.Options{Vendor: vendor, Systems: []bmcsim.SystemSpec{{PoweredOn: true}}})
				c := open(t, cfg)
				id, _ := onlySystem(t, sim, c)
				b, err := c.BIOS()
				if err != nil {
					t.Fatal(err)
				}
				if len(b.Registry) == 0 || b.Attributes["BootMode"] == "" {
					t.Fatalf("BIOS read: %+v", b)
				}
				prof := redfish.BIOSProfile{Attributes: biosProfiles[vendor], ApplyTime: at}
				res, err := c.ApplyBIOS(prof)
				if err != nil {
					t.Fatalf("ApplyBIOS: %v", err)
				}
				if !res.Rebooted || len(res.Changed) != len(prof.Attributes) {
					t.Fatalf("result %+v", res)
				}
				cur, pend, _ := sim.BIOSAttributes(id)
				if len(pend) != 0 {
					t.Fatalf("still pending: %v", pend)
				}
				after, _ := c.BIOS()
				for k, v := range prof.Attributes {
					if after.Attributes[k] != v {
						t.Fatalf("%s = %v (sim %v), want %s", k, after.Attributes[k], cur[k], v)
					}
				}
				// Idempotent: nothing sent, no reboot.
				st0, _ := sim.System(id)
				res, err = c.ApplyBIOS(prof)
				if err != nil || res.Rebooted || len(res.Changed) != 0 {
					t.Fatalf("second apply: %+v %v", res, err)
				}
				if st1, _ := sim.System(id); len(st1.Resets) != len(st0.Resets) {
					t.Fatalf("second apply rebooted: %v", st1.Resets)
				}
			})
		}
	}
}

func TestApplyBIOSSendsTheFullWantedSet(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{{ID: "1", PoweredOn: true}}})
	c := open(t, cfg)
	// A value applied earlier stays in the profile; only one changes.
	if _, err := c.ApplyBIOS(redfish.BIOSProfile{Attributes: map[string]string{"PowerProfile": "MaxPerformance"}}); err != nil {
		t.Fatal(err)
	}
	sim.ResetRequests()
	if _, err := c.ApplyBIOS(redfish.BIOSProfile{Attributes: map[string]string{"PowerProfile": "MaxPerformance", "SriovGlobalEnable": "Enabled"}}); err != nil {
		t.Fatal(err)
	}
	if n := sim.Count(http.MethodPatch, "/redfish/v1/Systems/1/Bios/Settings"); n != 1 {
		t.Fatalf("%d settings PATCHes", n)
	}
	// reset_to_defaults brings unnamed attributes back to the default.
	if _, err := c.ApplyBIOS(redfish.BIOSProfile{Attributes: map[string]string{"SriovGlobalEnable": "Enabled"}, ResetToDefaults: true}); err != nil {
		t.Fatal(err)
	}
	cur, _, _ := sim.BIOSAttributes("1")
	if cur["PowerProfile"] != "Balanced" || cur["SriovGlobalEnable"] != "Enabled" {
		t.Fatalf("after reset_to_defaults: %v", cur)
	}
}

func TestApplyBIOSValueThatDoesNotStick(t *testing.T) {
	t.Parallel()
	t.Run("injected", func(t *testing.T) {
		t.Parallel()
		sim, cfg := startSim(t, bmcsim.Options{Vendor: bmcsim.HPE, Systems: []bmcsim.SystemSpec{{PoweredOn: true}}})
		sim.RejectBIOSValue("1", "Sriov", "Disabled")
		_, err := open(t, cfg).ApplyBIOS(redfish.BIOSProfile{Attributes: map[string]string{"Sriov": "Disabled", "ProcHyperthreading": "Disabled"}})
		var me *redfish.BIOSMismatchError
		if !errors.As(err, &me) || !errors.Is(err, redfish.ErrBIOSNotApplied) || len(me.Mismatches) != 1 ||
			me.Mismatches[0] != (redfish.BIOSMismatch{Attribute: "Sriov", Wanted: "Disabled", Actual: "Enabled"}) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("dell dependency", func(t *testing.T) {
		t.Parallel()
		_, cfg := startSim(t, bmcsim.Options{Vendor: bmcsim.Dell, Systems: []bmcsim.SystemSpec{{PoweredOn: true}}})
		_, err := open(t, cfg).ApplyBIOS(redfish.BIOSProfile{Attributes: map[string]string{"ProcCStates": "Disabled"}, ApplyTime: redfish.ApplyImmediate})
		if !errors.Is(err, redfish.ErrBIOSNotApplied) || !strings.Contains(err.Error(), `ProcCStates: wanted "Disabled", BIOS has "Enabled"`) ||
			!strings.Contains(err.Error(), "Attributes not applied: ProcCStates") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestApplyBIOSValidatesAgainstTheRegistry(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{{ID: "1"}}})
	c := open(t, cfg)
	for attrs, want := range map[[2]string]string{
		{"Bogus", "x"}:            "Bogus is not a BIOS attribute",
		{"SystemModelName", "x"}:  "SystemModelName is read-only",
		{"PowerProfile", "Turbo"}: `PowerProfile = "Turbo" is not allowed (allowed: MaxPerformance, Balanced, PowerSaver)`,
		{"BootRetryCount", "99"}:  "BootRetryCount = 99 is outside [0, 10]",
		{"BootRetryCount", "x"}:   "is not an integer",
	} {
		_, err := c.ApplyBIOS(redfish.BIOSProfile{Attributes: map[string]string{attrs[0]: attrs[1]}})
		if !errors.Is(err, redfish.ErrInvalidSpec) || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want %q", attrs, err, want)
		}
	}
	if n := sim.Count(http.MethodPatch, "/redfish/v1/Systems/1/Bios/Settings"); n != 0 {
		t.Fatalf("invalid profiles were sent: %d PATCHes", n)
	}
}

func TestApplyBIOSMaintenanceWindowStaysPending(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{Vendor: bmcsim.Dell, Systems: []bmcsim.SystemSpec{{PoweredOn: true}}})
	res, err := open(t, cfg).ApplyBIOS(redfish.BIOSProfile{Attributes: map[string]string{"LogicalProc": "Disabled"}, ApplyTime: redfish.ApplyAtMaintenanceWindowStart})
	if err != nil || !res.Pending || res.Rebooted {
		t.Fatalf("%+v %v", res, err)
	}
	if _, pend, _ := sim.BIOSAttributes("System.Embedded.1"); pend["LogicalProc"] != "Disabled" {
		t.Fatalf("pending %v", pend)
	}
}

func TestVolumesAcrossVendors(t *testing.T) {
	t.Parallel()
	for _, vendor := range bmcsim.Vendors() {
		t.Run(string(vendor), func(t *testing.T) {
			t.Parallel()
			sim, cfg := startSim(t, bmcsim.Options{Vendor: vendor, TaskPolls: 2})
			c := open(t, cfg)
			id, _ := onlySystem(t, sim, c)
			ctrls, err := c.Storage()
			if err != nil {
				t.Fatal(err)
			}
			sc, err := redfish.PickController(ctrls, "")
			if err != nil {
				t.Fatal(err)
			}
			ids, err := redfish.SelectDrives(sc, redfish.DriveSelector{MediaType: "SSD", Count: 2})
			if err != nil {
				t.Fatal(err)
			}
			v, err := c.CreateVolume(redfish.VolumeSpec{RAIDType: "RAID1", DriveIDs: ids, Name: "os"})
			if err != nil {
				t.Fatalf("CreateVolume: %v", err)
			}
			if v.RAIDType != "RAID1" || v.Name != "os" || v.CapacityBytes <= 0 || !strings.HasPrefix(v.DeviceHint, "/dev/disk/by-id/wwn-0x6") {
				t.Fatalf("volume %+v", v)
			}
			if got := sim.Volumes(id, sc.ID); len(got) != 1 || got[0].ID != v.ID {
				t.Fatalf("sim volumes %+v", got)
			}
			// The drives now show as used.
			ctrls, _ = c.Storage()
			sc, _ = redfish.PickController(ctrls, sc.ID)
			err = redfish.ValidateVolume(sc, redfish.VolumeSpec{RAIDType: "RAID1", DriveIDs: ids})
			if !errors.Is(err, redfish.ErrInvalidSpec) || !strings.Contains(err.Error(), "already in volume "+v.ID) {
				t.Fatalf("reuse: %v", err)
			}
			// A failed task carries its messages.
			sim.FailNextTask("Physical disk 2 failed")
			free, _ := redfish.SelectDrives(sc, redfish.DriveSelector{Count: 2})
			_, err = c.CreateVolume(redfish.VolumeSpec{RAIDType: "RAID1", DriveIDs: free, Name: "data"})
			var te *redfish.TaskError
			if !errors.As(err, &te) || !errors.Is(err, redfish.ErrTaskFailed) || te.State != "Exception" || !strings.Contains(err.Error(), "Physical disk 2 failed") {
				t.Fatalf("failed task: %v", err)
			}
			if err := c.DeleteVolume(sc.ID, v.ID); err != nil {
				t.Fatal(err)
			}
			if err := c.DeleteVolume(sc.ID, v.ID); err != nil {
				t.Fatalf("second delete: %v", err)
			}
			if got := sim.Volumes(id, sc.ID); len(got) != 0 {
				t.Fatalf("after delete %+v", got)
			}
		})
	}
}

func TestVolumeValidation(t *testing.T) {
	t.Parallel()
	sc := &redfish.StorageController{ID: "c", SupportedRAIDTypes: []string{"RAID0", "RAID1", "RAID5", "RAID6", "RAID10"}}
	for _, id := range []string{"d0", "d1", "d2", "d3", "d4"} {
		sc.Drives = append(sc.Drives, redfish.Drive{ID: id, MediaType: "SSD", CapacityBytes: 100})
	}
	sc.Drives[4].VolumeIDs = []string{"v1"}
	for spec, want := range map[string]redfish.VolumeSpec{
		"RAID1 needs at least 2 drives, got 1":         {RAIDType: "RAID1", DriveIDs: []string{"d0"}},
		"RAID5 needs at least 3 drives, got 2":         {RAIDType: "RAID5", DriveIDs: []string{"d0", "d1"}},
		"RAID6 needs at least 4 drives, got 3":         {RAIDType: "RAID6", DriveIDs: []string{"d0", "d1", "d2"}},
		"RAID10 needs at least 4 drives, got 2":        {RAIDType: "RAID10", DriveIDs: []string{"d0", "d1"}},
		"RAID10 needs an even number of drives, got 5": {RAIDType: "RAID10", DriveIDs: []string{"d0", "d1", "d2", "d3", "d4"}},
		"drive d4 is already in volume v1":             {RAIDType: "RAID0", DriveIDs: []string{"d4"}},
		`RAID type "RAID50" is not supported by c`:     {RAIDType: "RAID50", DriveIDs: []string{"d0", "d1", "d2", "d3", "d0", "d1"}},
		"drive zz is not on controller c":              {RAIDType: "RAID0", DriveIDs: []string{"zz"}},
	} {
		err := redfish.ValidateVolume(sc, want)
		if !errors.Is(err, redfish.ErrInvalidSpec) || !strings.Contains(err.Error(), spec) {
			t.Errorf("%+v: got %v, want %q", want, err, spec)
		}
	}
	if err := redfish.ValidateVolume(sc, redfish.VolumeSpec{RAIDType: "RAID10", DriveIDs: []string{"d0", "d1", "d2", "d3"}}); err != nil {
		t.Fatal(err)
	}
	// Several RAID controllers need storage_id; none is an error too.
	two := []redfish.StorageController{*sc, {ID: "b", SupportedRAIDTypes: []string{"RAID1"}}, {ID: "ahci"}}
	if _, err := redfish.PickController(two, ""); !errors.Is(err, redfish.ErrInvalidSpec) || !strings.Contains(err.Error(), "(c, b)") {
		t.Fatalf("several: %v", err)
	}
	if _, err := redfish.PickController(two[2:], ""); !errors.Is(err, redfish.ErrUnsupported) {
		t.Fatalf("none: %v", err)
	}
	if _, err := redfish.SelectDrives(sc, redfish.DriveSelector{MediaType: "HDD", Count: 1}); !errors.Is(err, redfish.ErrInvalidSpec) {
		t.Fatalf("selector: %v", err)
	}
}
