package bmcsim

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// vendorAttr is a writable enumeration attribute each vendor has, with a
// non-default value.
var vendorAttr = map[Vendor][2]string{
	Generic:    {"ProcHyperthreading", "Disabled"},
	Dell:       {"LogicalProc", "Disabled"},
	HPE:        {"ProcHyperthreading", "Disabled"},
	Supermicro: {"HyperThreading", "Disable"},
}

func (e *env) patchSettings(sp string, body map[string]any) reply {
	e.t.Helper()
	etag := e.get(sp+"/Bios/Settings").mustStatus(e.t, http.StatusOK).header.Get("ETag")
	return e.do(http.MethodPatch, sp+"/Bios/Settings", body, map[string]string{"If-Match": etag})
}

func TestBIOSSettingsAppliedAtReboot(t *testing.T) {
	t.Parallel()
	for _, v := range Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, Options{Vendor: v, Systems: []SystemSpec{{PoweredOn: true}}})
			sp := e.systemPath()
			id := e.sim.SystemIDs()[0]
			attr, val := vendorAttr[v][0], vendorAttr[v][1]

			bios := e.get(sp+"/Bios").mustStatus(t, http.StatusOK)
			if str(bios.body, "@Redfish.Settings", "SettingsObject", "@odata.id") == "" {
				t.Fatalf("no @Redfish.Settings: %s", bios.raw)
			}
			supported, _ := path(bios.body, "@Redfish.Settings", "SupportedApplyTimes").([]any)
			if (v == HPE) != (supported == nil) {
				t.Fatalf("SupportedApplyTimes %v for %s", supported, v)
			}
			// Registry reachable from Registries with types and values.
			reg := e.get("/redfish/v1/Registries").mustStatus(t, http.StatusOK)
			file := e.get(str(reg.body["Members"].([]any)[0], "@odata.id")).mustStatus(t, http.StatusOK)
			uri := str(file.body["Location"].([]any)[0], "Uri")
			r := e.get(uri).mustStatus(t, http.StatusOK)
			attrs, _ := path(r.body, "RegistryEntries", "Attributes").([]any)
			found := false
			for _, a := range attrs {
				if str(a, "AttributeName") == attr && str(a, "Type") == "Enumeration" {
					found = true
				}
			}
			if !found {
				t.Fatalf("registry lacks %s: %s", attr, r.raw)
			}

			body := map[string]any{"Attributes": map[string]any{attr: val}}
			if v != HPE {
				body["@Redfish.SettingsApplyTime"] = map[string]any{"ApplyTime": "OnReset"}
			}
			pr := e.patchSettings(sp, body)
			if v == Dell {
				pr.mustStatus(t, http.StatusAccepted)
				job := e.get(pr.header.Get("Location")).mustStatus(t, http.StatusOK)
				if job.body["JobState"] != "Scheduled" {
					t.Fatalf("job %s", job.raw)
				}
			} else {
				okWrite(t, pr)
			}
			cur, pend, _ := e.sim.BIOSAttributes(id)
			if cur[attr] == val || pend[attr] != val {
				t.Fatalf("before reboot: current %v pending %v", cur[attr], pend[attr])
			}
			okWrite(t, e.reset(sp, "ForceRestart"))
			waitFor(t, "BIOS applied", func() bool {
				cur, pend, _ := e.sim.BIOSAttributes(id)
				return cur[attr] == val && len(pend) == 0
			})
			if v == Dell {
				job := e.get(pr.header.Get("Location")).mustStatus(t, http.StatusOK)
				if job.body["JobState"] != "Completed" {
					t.Fatalf("job %s", job.raw)
				}
			}
		})
	}
}

func TestBIOSSettingsRejections(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Vendor: Generic, Systems: []SystemSpec{{PoweredOn: true}}})
	sp := e.systemPath()
	id := e.sim.SystemIDs()[0]
	e.patchSettings(sp, map[string]any{"Attributes": map[string]any{"Bogus": "x"}}).mustError(t, http.StatusBadRequest, "PropertyUnknown")
	e.patchSettings(sp, map[string]any{"Attributes": map[string]any{"SystemModelName": "x"}}).mustError(t, http.StatusBadRequest, "PropertyNotWritable")
	e.patchSettings(sp, map[string]any{"Attributes": map[string]any{"PowerProfile": "Turbo"}}).mustError(t, http.StatusBadRequest, "PropertyValueNotInList")
	e.patchSettings(sp, map[string]any{"Attributes": map[string]any{"BootRetryCount": 99}}).mustError(t, http.StatusBadRequest, "PropertyValueOutOfRange")
	e.patchSettings(sp, map[string]any{"Attributes": map[string]any{"BootRetryCount": "3"}}).mustError(t, http.StatusBadRequest, "PropertyValueTypeError")

	// A value the firmware refuses at reboot is never applied.
	e.sim.RejectBIOSValue(id, "PowerProfile", "PowerSaver")
	okWrite(t, e.patchSettings(sp, map[string]any{"Attributes": map[string]any{"PowerProfile": "PowerSaver", "BootRetryCount": 5},
		"@Redfish.SettingsApplyTime": map[string]any{"ApplyTime": "Immediate"}}))
	waitFor(t, "settings consumed", func() bool { _, p, _ := e.sim.BIOSAttributes(id); return len(p) == 0 })
	cur, _, _ := e.sim.BIOSAttributes(id)
	if cur["PowerProfile"] != "Balanced" || cur["BootRetryCount"] != int64(5) {
		t.Fatalf("current %v", cur)
	}

	// HPE: no SettingsApplyTime; Supermicro: OnReset only.
	h := startEnv(t, Options{Vendor: HPE})
	h.patchSettings(h.systemPath(), map[string]any{"Attributes": map[string]any{"Sriov": "Disabled"},
		"@Redfish.SettingsApplyTime": map[string]any{"ApplyTime": "OnReset"}}).mustError(t, http.StatusBadRequest, "PropertyNotWritableOrUnknown")
	sm := startEnv(t, Options{Vendor: Supermicro})
	sm.patchSettings(sm.systemPath(), map[string]any{"Attributes": map[string]any{"QuietBoot": false},
		"@Redfish.SettingsApplyTime": map[string]any{"ApplyTime": "Immediate"}}).mustError(t, http.StatusBadRequest, "PropertyValueNotInList")
	// Supermicro requires If-Match on Bios/Settings too.
	sm.do(http.MethodPatch, sm.systemPath()+"/Bios/Settings", map[string]any{"Attributes": map[string]any{"QuietBoot": false}}, nil).
		mustError(t, http.StatusPreconditionRequired, "PreconditionRequired")

	// Dell: ProcCStates only sticks with SysProfile=Custom; the job says so.
	d := startEnv(t, Options{Vendor: Dell, Systems: []SystemSpec{{PoweredOn: true}}})
	dp := d.systemPath()
	pr := d.patchSettings(dp, map[string]any{"Attributes": map[string]any{"ProcCStates": "Disabled"},
		"@Redfish.SettingsApplyTime": map[string]any{"ApplyTime": "Immediate"}}).mustStatus(t, http.StatusAccepted)
	waitFor(t, "job done", func() bool {
		return d.get(pr.header.Get("Location")).body["JobState"] != "Scheduled"
	})
	job := d.get(pr.header.Get("Location"))
	if job.body["JobState"] != "CompletedWithErrors" || !strings.Contains(str(job.body, "Message"), "ProcCStates") {
		t.Fatalf("job %s", job.raw)
	}
	if jobs := d.get("/redfish/v1/Managers/iDRAC.Embedded.1/Jobs"); path(jobs.body, "Members@odata.count") != float64(1) {
		t.Fatalf("job queue %s", jobs.raw)
	}
}

func TestStorageVolumes(t *testing.T) {
	t.Parallel()
	for _, v := range Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, Options{Vendor: v, TaskPolls: 2})
			sp := e.systemPath()
			coll := e.get(sp+"/Storage").mustStatus(t, http.StatusOK)
			stPath := str(coll.body["Members"].([]any)[0], "@odata.id")
			st := e.get(stPath).mustStatus(t, http.StatusOK)
			raids, _ := path(st.body["StorageControllers"].([]any)[0], "SupportedRAIDTypes").([]any)
			if !slices.Contains(raids, any("RAID1")) {
				t.Fatalf("SupportedRAIDTypes %v", raids)
			}
			drives := st.body["Drives"].([]any)
			d0 := e.get(str(drives[0], "@odata.id")).mustStatus(t, http.StatusOK)
			if d0.body["MediaType"] != "SSD" || d0.body["CapacityBytes"] == nil || d0.body["Protocol"] == nil {
				t.Fatalf("drive %s", d0.raw)
			}
			vols := str(st.body, "Volumes", "@odata.id")
			link := func(ds ...any) map[string]any { return map[string]any{"Drives": ds} }

			// Bad inputs are refused up front.
			e.do(http.MethodPost, vols, map[string]any{"RAIDType": "RAID5", "Links": link(drives[0], drives[1])}, nil).
				mustError(t, http.StatusBadRequest, "PropertyValueNotInList")
			e.do(http.MethodPost, vols, map[string]any{"RAIDType": "RAID3", "Links": link(drives[0], drives[1], drives[2])}, nil).
				mustError(t, http.StatusBadRequest, "PropertyValueNotInList")

			// Create: 202 + TaskMonitor, 202 while running, then the task.
			r := e.do(http.MethodPost, vols, map[string]any{"RAIDType": "RAID1", "Name": "os", "Links": link(drives[0], drives[1])}, nil).
				mustStatus(t, http.StatusAccepted)
			mon := r.header.Get("Location")
			if !strings.Contains(mon, "/TaskService/TaskMonitors/") {
				t.Fatalf("Location %q", mon)
			}
			e.get(mon).mustStatus(t, http.StatusAccepted)
			e.get(mon).mustStatus(t, http.StatusAccepted)
			done := e.get(mon).mustStatus(t, http.StatusOK)
			if done.body["TaskState"] != "Completed" {
				t.Fatalf("task %s", done.raw)
			}
			volURI := str(done.body, "Payload", "TargetUri")
			vol := e.get(volURI).mustStatus(t, http.StatusOK)
			if vol.body["RAIDType"] != "RAID1" || str(vol.body["Identifiers"].([]any)[0], "DurableName") == "" {
				t.Fatalf("volume %s", vol.raw)
			}
			// A drive in a volume cannot be reused.
			e.do(http.MethodPost, vols, map[string]any{"RAIDType": "RAID1", "Links": link(drives[1], drives[2])}, nil).
				mustError(t, http.StatusBadRequest, "ResourceInUse")

			// Injected failure: Exception with the messages, no volume.
			e.sim.FailNextTask("Physical disk failure")
			r = e.do(http.MethodPost, vols, map[string]any{"RAIDType": "RAID1", "Links": link(drives[2], drives[3])}, nil).mustStatus(t, http.StatusAccepted)
			var fin reply
			waitFor(t, "task end", func() bool { fin = e.get(r.header.Get("Location")); return fin.status == http.StatusOK })
			if fin.body["TaskState"] != "Exception" || !strings.Contains(string(fin.raw), "Physical disk failure") {
				t.Fatalf("task %s", fin.raw)
			}
			if n := len(e.sim.Volumes(e.sim.SystemIDs()[0], path2id(stPath))); n != 1 {
				t.Fatalf("%d volumes", n)
			}
			okWrite(t, e.do(http.MethodDelete, volURI, nil, nil))
			e.get(volURI).mustStatus(t, http.StatusNotFound)
		})
	}
}

func path2id(p string) string {
	p = strings.TrimRight(p, "/")
	return p[strings.LastIndex(p, "/")+1:]
}
