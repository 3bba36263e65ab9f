package bmcsim

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// biosAttr is one entry of a BiosAttributeRegistry.
type biosAttr struct {
	name, typ    string // typ: Enumeration, String, Integer, Boolean
	values       []string
	readOnly     bool
	lower, upper int64
	def          any
}

// biosRegistry is the vendor's attribute registry. Names follow each
// vendor's published registries (iDRAC BIOS.Setup.1-1 names, iLO 5 Bios
// names, Supermicro/AMI and bmcweb-style names for the others).
func (p *profile) biosRegistry() []biosAttr {
	onOff := []string{"Enabled", "Disabled"}
	switch p.vendor {
	case Dell:
		return []biosAttr{
			{name: "BootMode", typ: "Enumeration", values: []string{"Uefi", "Bios"}, def: "Uefi"},
			{name: "LogicalProc", typ: "Enumeration", values: onOff, def: "Enabled"},
			{name: "ProcVirtualization", typ: "Enumeration", values: onOff, def: "Enabled"},
			{name: "SriovGlobalEnable", typ: "Enumeration", values: onOff, def: "Disabled"},
			{name: "SysProfile", typ: "Enumeration", values: []string{"PerfPerWattOptimizedDapc", "PerfPerWattOptimizedOs", "PerfOptimized", "Custom"}, def: "PerfPerWattOptimizedDapc"},
			// Only writable when SysProfile is Custom (iDRAC registry
			// Dependencies); otherwise the BIOS job drops the change.
			{name: "ProcCStates", typ: "Enumeration", values: onOff, def: "Enabled"},
			{name: "AcPwrRcvryUserDelay", typ: "Integer", lower: 60, upper: 600, def: int64(60)},
			{name: "AssetTag", typ: "String", def: ""},
			{name: "SystemModelName", typ: "String", readOnly: true, def: p.model},
		}
	case HPE:
		return []biosAttr{
			{name: "BootMode", typ: "Enumeration", values: []string{"Uefi", "LegacyBios"}, def: "Uefi"},
			{name: "ProcHyperthreading", typ: "Enumeration", values: onOff, def: "Enabled"},
			{name: "ProcVirtualization", typ: "Enumeration", values: onOff, def: "Enabled"},
			{name: "Sriov", typ: "Enumeration", values: onOff, def: "Enabled"},
			{name: "WorkloadProfile", typ: "Enumeration", values: []string{"GeneralPowerEfficientCompute", "GeneralPeakFrequencyCompute", "Virtualization-MaxPerformance", "Custom"}, def: "GeneralPowerEfficientCompute"},
			{name: "ServerAssetTag", typ: "String", def: ""},
			{name: "AdminPhone", typ: "String", def: ""},
		}
	case Supermicro:
		return []biosAttr{
			{name: "BootMode", typ: "Enumeration", values: []string{"UEFI", "LEGACY", "DUAL"}, def: "UEFI"},
			{name: "HyperThreading", typ: "Enumeration", values: []string{"Enable", "Disable"}, def: "Enable"},
			{name: "IntelVTforDirectedI/O(VT-d)", typ: "Enumeration", values: []string{"Enable", "Disable"}, def: "Enable"},
			{name: "SR-IOVSupport", typ: "Enumeration", values: []string{"Enabled", "Disabled"}, def: "Enabled"},
			{name: "QuietBoot", typ: "Boolean", def: true},
			{name: "Re-tryBoot", typ: "Enumeration", values: []string{"Disabled", "LegacyBoot", "EFIBoot"}, def: "Disabled"},
		}
	default:
		return []biosAttr{
			{name: "BootMode", typ: "Enumeration", values: []string{"Uefi", "Legacy"}, def: "Uefi"},
			{name: "ProcHyperthreading", typ: "Enumeration", values: onOff, def: "Enabled"},
			{name: "ProcVirtualization", typ: "Enumeration", values: onOff, def: "Enabled"},
			{name: "SriovGlobalEnable", typ: "Enumeration", values: onOff, def: "Disabled"},
			{name: "PowerProfile", typ: "Enumeration", values: []string{"MaxPerformance", "Balanced", "PowerSaver"}, def: "Balanced"},
			{name: "BootRetryCount", typ: "Integer", lower: 0, upper: 10, def: int64(3)},
			{name: "AssetTag", typ: "String", def: ""},
			{name: "SystemModelName", typ: "String", readOnly: true, def: p.model},
		}
	}
}

// settingsApplyTimes is @Redfish.Settings.SupportedApplyTimes; nil means
// the BMC does not implement @Redfish.SettingsApplyTime (iLO 5 applies BIOS
// settings at the next reboot and rejects the annotation).
func (p *profile) settingsApplyTimes() []string {
	switch p.vendor {
	case HPE:
		return nil
	case Supermicro:
		return []string{"OnReset"}
	default:
		return []string{"Immediate", "OnReset", "AtMaintenanceWindowStart", "InMaintenanceWindowOnReset"}
	}
}

// biosState is one system's BIOS: current and pending attributes.
type biosState struct {
	current   map[string]any
	pending   map[string]any
	applyTime string
	windowAt  time.Time // AtMaintenanceWindowStart: not applied before
	job       *dellJob  // Dell: the job that applies pending at reboot
}

// dellJob is an iDRAC Lifecycle Controller job.
type dellJob struct {
	id, name, jobType, state, message string
	percent                           int
}

func (s *Simulator) newBIOS() *biosState {
	b := &biosState{current: map[string]any{}, pending: map[string]any{}}
	for _, a := range s.prof.biosRegistry() {
		b.current[a.name] = a.def
	}
	return b
}

func (s *Simulator) biosAttr(name string) (biosAttr, bool) {
	for _, a := range s.prof.biosRegistry() {
		if a.name == name {
			return a, true
		}
	}
	return biosAttr{}, false
}

func (s *Simulator) registryID() string {
	switch s.prof.vendor {
	case Dell:
		return "BiosAttributeRegistry.v1_0_0"
	case HPE:
		return "BiosAttributeRegistryU32.v1_2_68"
	default:
		return "BiosAttributeRegistry.1.0.0"
	}
}

func (s *Simulator) renderBIOS(sys *system, path string, settings bool) map[string]any {
	s.status(sys) // a completed boot applies pending settings
	if settings {
		m := s.resource(path, "Bios.v1_2_1.Bios", "Settings", "BIOS Configuration Pending Settings")
		m["AttributeRegistry"] = s.registryID()
		m["Attributes"] = maps.Clone(sys.bios.pending)
		return m
	}
	m := s.resource(path, "Bios.v1_2_1.Bios", "Bios", "BIOS Configuration Current Settings")
	m["AttributeRegistry"] = s.registryID()
	m["Attributes"] = maps.Clone(sys.bios.current)
	rs := map[string]any{
		"@odata.type":    "#Settings.v1_3_5.Settings",
		"SettingsObject": s.ref(path + "/Settings"),
	}
	if ts := s.prof.settingsApplyTimes(); ts != nil {
		rs["SupportedApplyTimes"] = slices.Clone(ts)
	}
	m["@Redfish.Settings"] = rs
	m["Actions"] = map[string]any{"#Bios.ResetBios": map[string]any{"target": s.link(path + "/Actions/Bios.ResetBios")}}
	return m
}

func (s *Simulator) renderRegistry(path string) map[string]any {
	m := s.resource(path, "AttributeRegistry.v1_3_6.AttributeRegistry", s.registryID(), "BIOS Attribute Registry")
	m["RegistryVersion"] = "1.0.0"
	m["Language"] = "en"
	m["OwningEntity"] = s.prof.vendorName
	var attrs []any
	for _, a := range s.prof.biosRegistry() {
		e := map[string]any{
			"AttributeName": a.name,
			"Type":          a.typ,
			"ReadOnly":      a.readOnly,
			"DisplayName":   a.name,
			"DefaultValue":  a.def,
		}
		if a.typ == "Enumeration" {
			vals := make([]any, len(a.values))
			for i, v := range a.values {
				vals[i] = map[string]any{"ValueName": v, "ValueDisplayName": v}
			}
			e["Value"] = vals
		}
		if a.typ == "Integer" {
			e["LowerBound"] = a.lower
			e["UpperBound"] = a.upper
		}
		attrs = append(attrs, e)
	}
	m["RegistryEntries"] = map[string]any{"Attributes": attrs}
	return m
}

func (s *Simulator) registriesCollection(path string) map[string]any {
	return s.collection(path, "MessageRegistryFileCollection", "Registry File Collection", []string{path + "/" + s.registryID()})
}

func (s *Simulator) registryFile(path string) map[string]any {
	m := s.resource(path, "MessageRegistryFile.v1_1_3.MessageRegistryFile", s.registryID(), "BIOS Attribute Registry File")
	m["Registry"] = s.registryID()
	m["Languages"] = []any{"en"}
	m["Location"] = []any{map[string]any{"Language": "en", "Uri": s.link(root + "/Registries/" + s.registryID() + "/BiosAttributeRegistry")}}
	return m
}

// checkAttr validates one attribute value against the registry.
func (s *Simulator) checkAttr(name string, v any) *msg {
	ptr := "#/Attributes/" + name
	a, ok := s.biosAttr(name)
	if !ok {
		m := s.propMsg("PropertyUnknown", name, ptr)
		return &m
	}
	if a.readOnly {
		m := s.propMsg("PropertyNotWritable", name, ptr)
		return &m
	}
	switch a.typ {
	case "Enumeration":
		if _, e := checkEnum(v, a.values, name, ptr); e != nil {
			return e
		}
	case "String":
		if _, ok := v.(string); !ok {
			m := typeMsg(v, name, ptr)
			return &m
		}
	case "Boolean":
		if _, ok := v.(bool); !ok {
			m := typeMsg(v, name, ptr)
			return &m
		}
	case "Integer":
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			m := typeMsg(v, name, ptr)
			return &m
		}
		if int64(f) < a.lower || int64(f) > a.upper {
			m := msg{id: "PropertyValueOutOfRange", args: []string{valueString(v), name}, severity: "Warning", related: []string{ptr}}
			return &m
		}
	}
	return nil
}

func normalizeValue(v any) any {
	if f, ok := v.(float64); ok && f == float64(int64(f)) {
		return int64(f)
	}
	return v
}

// patchBIOSSettings stages pending attributes (PATCH Bios/Settings).
func (s *Simulator) patchBIOSSettings(r *http.Request, body []byte, sys *system, path string) *response {
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		return s.malformed()
	}
	if resp := s.checkIfMatch(r, req, path); resp != nil {
		return resp
	}
	applyTime := ""
	var windowAt time.Time
	var errs []msg
	attrs := map[string]any{}
	for _, k := range sortedKeys(req) {
		v := req[k]
		switch k {
		case "@odata.etag":
		case "Attributes":
			am, ok := v.(map[string]any)
			if !ok {
				errs = append(errs, typeMsg(v, k, "#/"+k))
				continue
			}
			for _, name := range sortedKeys(am) {
				if e := s.checkAttr(name, am[name]); e != nil {
					errs = append(errs, *e)
					continue
				}
				attrs[name] = normalizeValue(am[name])
			}
		case "@Redfish.SettingsApplyTime":
			supported := s.prof.settingsApplyTimes()
			if supported == nil {
				errs = append(errs, s.propMsg("PropertyUnknown", k, "#/"+k))
				continue
			}
			am, ok := v.(map[string]any)
			if !ok {
				errs = append(errs, typeMsg(v, k, "#/"+k))
				continue
			}
			t, e := checkEnum(am["ApplyTime"], supported, "ApplyTime", "#/"+k+"/ApplyTime")
			if e != nil {
				errs = append(errs, *e)
				continue
			}
			applyTime = t
			if ws, ok := am["MaintenanceWindowStartTime"].(string); ok {
				at, err := time.Parse(time.RFC3339, ws)
				if err != nil {
					errs = append(errs, typeMsg(ws, "MaintenanceWindowStartTime", "#/"+k+"/MaintenanceWindowStartTime"))
					continue
				}
				windowAt = at
			}
		default:
			errs = append(errs, s.propMsg("PropertyUnknown", k, "#/"+k))
		}
	}
	if len(errs) > 0 {
		return s.errResp(http.StatusBadRequest, errs...)
	}
	b := sys.bios
	maps.Copy(b.pending, attrs)
	if applyTime == "" {
		applyTime = "OnReset"
	}
	b.applyTime, b.windowAt = applyTime, windowAt
	var resp *response
	if s.prof.dellJobs {
		if b.job == nil || b.job.state != "Scheduled" {
			s.jobSeq++
			b.job = &dellJob{id: "JID_" + strconv.FormatInt(s.clock().Unix(), 10)[4:] + strconv.Itoa(100000+s.jobSeq),
				name: "Configure: BIOS.Setup.1-1", jobType: "BIOSConfiguration", state: "Scheduled",
				message: "Task successfully scheduled."}
			s.jobs = append(s.jobs, b.job)
		}
		resp = newResponse(http.StatusAccepted, nil)
		resp.header.Set("Location", s.link(s.jobsPath()+"/"+b.job.id))
	} else {
		resp = s.success(s.prof.success)
	}
	if applyTime == "Immediate" {
		s.rebootLocked(r, sys)
	}
	return resp
}

// checkIfMatch applies the vendor's precondition rules to a write.
func (s *Simulator) checkIfMatch(r *http.Request, req map[string]any, path string) *response {
	cur := s.getLocked(path)
	etag, _ := cur["@odata.etag"].(string)
	ifMatch := r.Header.Get("If-Match")
	if ifMatch == "" && req != nil {
		ifMatch, _ = req["@odata.etag"].(string)
	}
	if ifMatch == "" && s.prof.requireIfMatch {
		return s.errResp(http.StatusPreconditionRequired, msg{id: "PreconditionRequired", args: []string{path}, severity: "Critical",
			resolution: "Try the request again with the appropriate precondition header or annotation."})
	}
	if ifMatch != "" && !etagMatch(ifMatch, etag) {
		return s.errResp(http.StatusPreconditionFailed, msg{id: "PreconditionFailed", severity: "Critical",
			resolution: "Try the operation again using the appropriate ETag."})
	}
	return nil
}

// rebootLocked restarts (or powers on) the host, as a BMC does for an
// Immediate apply time. Caller holds s.mu.
func (s *Simulator) rebootLocked(r *http.Request, sys *system) {
	st := s.status(sys)
	s.tellBootOverrideLocked(sys)
	if isOnState(st.State) {
		_ = sys.power.Reset(r.Context(), "ForceRestart")
		sys.resets = append(sys.resets, "ForceRestart")
	} else {
		sys.power.SetPower(true)
	}
	s.watchBootsLocked(sys)
	s.status(sys)
}

// resetBIOS stages every attribute's default (Bios.ResetBios).
func (s *Simulator) resetBIOS(sys *system) *response {
	for _, a := range s.prof.biosRegistry() {
		if !a.readOnly {
			sys.bios.pending[a.name] = a.def
		}
	}
	sys.bios.applyTime = "OnReset"
	return s.success(s.prof.resetSuccess)
}

// applyBIOSLocked applies pending attributes at a completed boot. Values
// the vendor rejects are dropped, never applied. Caller holds s.mu.
func (s *Simulator) applyBIOSLocked(sys *system) {
	b := sys.bios
	if len(b.pending) == 0 {
		return
	}
	if b.applyTime == "AtMaintenanceWindowStart" || b.applyTime == "InMaintenanceWindowOnReset" {
		if !b.windowAt.IsZero() && s.clock().Before(b.windowAt) {
			return
		}
	}
	var rejected []string
	next := maps.Clone(b.current)
	maps.Copy(next, b.pending)
	for _, name := range sortedKeys(b.pending) {
		v := b.pending[name]
		if s.biosRejects(sys, next, name, v) {
			rejected = append(rejected, name)
			continue
		}
		b.current[name] = v
	}
	clear(b.pending)
	if j := b.job; j != nil && j.state == "Scheduled" {
		j.percent = 100
		if len(rejected) > 0 {
			j.state = "CompletedWithErrors"
			j.message = "Job completed with errors. Attributes not applied: " + strings.Join(rejected, ", ") + "."
		} else {
			j.state = "Completed"
			j.message = "Job completed successfully."
		}
		b.job = nil
	}
}

// biosRejects reports whether the BIOS refuses a value at apply time.
func (s *Simulator) biosRejects(sys *system, next map[string]any, name string, v any) bool {
	if want, ok := sys.biosReject[name]; ok && (want == "" || want == valueString(v)) {
		return true
	}
	// iDRAC: ProcCStates is only writable with SysProfile=Custom.
	if s.prof.vendor == Dell && name == "ProcCStates" && next["SysProfile"] != "Custom" && v != sys.bios.current[name] {
		return true
	}
	return false
}

// RejectBIOSValue makes the system's BIOS refuse attr=value (any value when
// value is "") when pending settings are applied at reboot, as firmware does
// for values that fail its own dependency checks. Rejected values are never
// applied.
func (s *Simulator) RejectBIOSValue(systemID, attr, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sys := s.findLocked(systemID); sys != nil {
		if sys.biosReject == nil {
			sys.biosReject = map[string]string{}
		}
		sys.biosReject[attr] = value
	}
}

// BIOSAttributes returns the current and pending BIOS attributes.
func (s *Simulator) BIOSAttributes(systemID string) (current, pending map[string]any, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sys := s.findLocked(systemID)
	if sys == nil {
		return nil, nil, false
	}
	s.status(sys)
	return maps.Clone(sys.bios.current), maps.Clone(sys.bios.pending), true
}

func (s *Simulator) jobsPath() string { return root + "/Managers/" + s.prof.managerID + "/Jobs" }

func (s *Simulator) renderJob(j *dellJob) map[string]any {
	path := s.jobsPath() + "/" + j.id
	m := s.resource(path, "DellJob.v1_0_2.DellJob", j.id, j.name)
	m["JobState"] = j.state
	m["JobType"] = j.jobType
	m["Message"] = j.message
	m["MessageId"] = "IDRAC.2.8.SYS053"
	m["PercentComplete"] = j.percent
	m["Description"] = "Job Instance"
	return m
}

// handleStorageBIOS routes the BIOS, storage and task-monitor requests that
// are not plain GETs of rendered resources; nil means "not handled here".
// Caller holds s.mu.
func (s *Simulator) handleStorageBIOS(r *http.Request, segs []string, body []byte, method, path string) *response {
	if len(segs) == 3 && segs[0] == "TaskService" && segs[1] == "TaskMonitors" {
		if method != http.MethodGet && method != http.MethodHead {
			return s.methodNotAllowed(http.MethodGet, http.MethodHead)
		}
		return s.taskMonitor(segs[2])
	}
	if len(segs) < 3 || segs[0] != "Systems" {
		return nil
	}
	sys := s.findLocked(segs[1])
	if sys == nil {
		return nil
	}
	switch {
	case len(segs) == 4 && segs[2] == "Bios" && segs[3] == "Settings" && method == http.MethodPatch:
		s.status(sys)
		return s.patchBIOSSettings(r, body, sys, path)
	case len(segs) == 5 && segs[2] == "Bios" && segs[3] == "Actions" && segs[4] == "Bios.ResetBios":
		if method != http.MethodPost {
			return s.methodNotAllowed(http.MethodPost)
		}
		return s.resetBIOS(sys)
	case len(segs) == 5 && segs[2] == "Storage" && segs[4] == "Volumes" && method == http.MethodPost:
		st := sys.findStorage(segs[3])
		if st == nil {
			return nil
		}
		return s.createVolume(body, sys, st)
	case len(segs) == 6 && segs[2] == "Storage" && segs[4] == "Volumes" && method == http.MethodDelete:
		st := sys.findStorage(segs[3])
		if st == nil {
			return nil
		}
		return s.deleteVolume(st, segs[5])
	}
	return nil
}

// SetBIOSAttribute changes a current BIOS attribute out of band, as someone
// in the BIOS setup screen would.
func (s *Simulator) SetBIOSAttribute(systemID, attr string, value any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sys := s.findLocked(systemID); sys != nil {
		sys.bios.current[attr] = value
	}
}
