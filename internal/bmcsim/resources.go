package bmcsim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
)

const root = "/redfish/v1"

// link renders an internal path the way the vendor writes @odata.id values.
func (s *Simulator) link(p string) string {
	if s.prof.trailingSlash && !strings.HasSuffix(p, "/") {
		return p + "/"
	}
	return p
}

func (s *Simulator) ref(p string) map[string]any { return map[string]any{"@odata.id": s.link(p)} }

func (s *Simulator) refs(ps ...string) []any {
	out := make([]any, len(ps))
	for i, p := range ps {
		out[i] = s.ref(p)
	}
	return out
}

// setLinks sets key to a list of references, with the @odata.count
// annotation where the vendor emits one.
func (s *Simulator) setLinks(m map[string]any, key string, ps ...string) {
	m[key] = s.refs(ps...)
	if s.prof.countAnnot {
		m[key+"@odata.count"] = len(ps)
	}
}

// resource starts a resource body. typ is "Namespace.vX_Y_Z.Type".
func (s *Simulator) resource(path, typ, id, name string) map[string]any {
	m := map[string]any{
		"@odata.id":   s.link(path),
		"@odata.type": "#" + typ,
	}
	if id != "" {
		m["Id"] = id
	}
	if name != "" {
		m["Name"] = name
	}
	if s.prof.odataContext {
		short := typ
		if parts := strings.Split(typ, "."); len(parts) == 3 {
			short = parts[0] + "." + parts[2]
		}
		m["@odata.context"] = root + "/$metadata#" + short
	}
	return m
}

func (s *Simulator) collection(path, typ, name string, members []string) map[string]any {
	m := s.resource(path, typ+"."+typ, "", name)
	m["Members"] = s.refs(members...)
	m["Members@odata.count"] = len(members)
	return m
}

func statusOK() map[string]any { return map[string]any{"State": "Enabled", "Health": "OK"} }

// etagOf computes the vendor-styled ETag of a rendered resource.
func (s *Simulator) etagOf(m map[string]any) string {
	delete(m, "@odata.etag")
	b, _ := json.Marshal(m) // map keys are sorted, so this is deterministic
	sum := sha256.Sum256(b)
	if s.prof.etagWeak {
		return `W/"` + strings.ToUpper(hex.EncodeToString(sum[:4])) + `"`
	}
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// etagMatch compares an If-Match / If-None-Match value with the current ETag.
// Weak prefixes and quotes are ignored because real clients echo iLO's weak
// tags in If-Match and iLO accepts them.
func etagMatch(header, current string) bool {
	norm := func(t string) string {
		t = strings.TrimSpace(t)
		t = strings.TrimPrefix(t, "W/")
		return strings.Trim(t, `"`)
	}
	for _, t := range strings.Split(header, ",") {
		if strings.TrimSpace(t) == "*" || norm(t) == norm(current) {
			return true
		}
	}
	return false
}

// getLocked renders the resource at an internal path (normalized, without
// query) including its ETag, or returns nil. Caller holds s.mu.
func (s *Simulator) getLocked(path string) map[string]any {
	m := s.renderLocked(path)
	if m == nil {
		return nil
	}
	m["@odata.etag"] = s.etagOf(m)
	return m
}

func segments(path string) ([]string, bool) {
	if path == root {
		return nil, true
	}
	rest, ok := strings.CutPrefix(path, root+"/")
	if !ok {
		return nil, false
	}
	return strings.Split(rest, "/"), true
}

func (s *Simulator) renderLocked(path string) map[string]any {
	segs, ok := segments(path)
	if !ok {
		return nil
	}
	if len(segs) == 0 {
		return s.serviceRoot()
	}
	switch segs[0] {
	case "Systems":
		if len(segs) == 1 {
			ids := make([]string, len(s.systems))
			for i, sys := range s.systems {
				ids[i] = root + "/Systems/" + sys.spec.ID
			}
			return s.collection(path, "ComputerSystemCollection", "Computer System Collection", ids)
		}
		sys := s.findLocked(segs[1])
		if sys == nil {
			return nil
		}
		return s.renderSystemPart(sys, segs[2:])
	case "Chassis":
		if len(segs) == 1 {
			ids := make([]string, len(s.systems))
			for i, sys := range s.systems {
				ids[i] = root + "/Chassis/" + sys.chassisID
			}
			return s.collection(path, "ChassisCollection", "Chassis Collection", ids)
		}
		if len(segs) == 2 {
			for _, sys := range s.systems {
				if sys.chassisID == segs[1] {
					return s.chassis(sys)
				}
			}
		}
		return nil
	case "Managers":
		if len(segs) == 1 {
			return s.collection(path, "ManagerCollection", "Manager Collection", []string{root + "/Managers/" + s.prof.managerID})
		}
		if segs[1] != s.prof.managerID {
			return nil
		}
		switch {
		case len(segs) == 2:
			return s.manager()
		case len(segs) == 3 && segs[2] == "Jobs" && s.prof.dellJobs:
			// The iDRAC job queue (DellJobCollection).
			m := s.resource(path, "DellJobCollection.DellJobCollection", "", "JobQueue")
			m["Description"] = "Collection of Job Instances"
			ids := make([]string, len(s.jobs))
			for i, j := range s.jobs {
				ids[i] = path + "/" + j.id
			}
			m["Members"] = s.refs(ids...)
			m["Members@odata.count"] = len(ids)
			return m
		case len(segs) == 4 && segs[2] == "Jobs" && s.prof.dellJobs:
			for _, sys := range s.systems {
				s.status(sys) // a completed boot runs scheduled jobs
			}
			for _, j := range s.jobs {
				if j.id == segs[3] {
					return s.renderJob(j)
				}
			}
		}
		return nil
	case "Registries":
		switch {
		case len(segs) == 1:
			return s.registriesCollection(path)
		case len(segs) == 2 && segs[1] == s.registryID():
			return s.registryFile(path)
		case len(segs) == 3 && segs[1] == s.registryID() && segs[2] == "BiosAttributeRegistry":
			return s.renderRegistry(path)
		}
		return nil
	case "TaskService":
		switch {
		case len(segs) == 1:
			m := s.resource(path, "TaskService.v1_2_0.TaskService", "TaskService", "Task Service")
			m["ServiceEnabled"] = true
			m["Tasks"] = s.ref(root + "/TaskService/Tasks")
			return m
		case len(segs) == 2 && segs[1] == "Tasks":
			ids := make([]string, len(s.tasks))
			for i, t := range s.tasks {
				ids[i] = path + "/" + t.id
			}
			return s.collection(path, "TaskCollection", "Task Collection", ids)
		case len(segs) == 3 && segs[1] == "Tasks":
			if t := s.findTask(segs[2]); t != nil {
				return s.renderTask(t)
			}
		}
		return nil
	case "SessionService":
		if s.opts.DisableSessionService {
			return nil
		}
		switch {
		case len(segs) == 1:
			m := s.resource(path, "SessionService.v1_1_9.SessionService", "SessionService", "Session Service")
			m["Description"] = "Session Service"
			m["ServiceEnabled"] = true
			m["SessionTimeout"] = int(s.opts.SessionTimeout.Seconds())
			m["Sessions"] = s.ref(root + "/SessionService/Sessions")
			m["Status"] = statusOK()
			return m
		case len(segs) == 2 && segs[1] == "Sessions":
			ids := make([]string, 0, len(s.sessions))
			for _, se := range s.sessions {
				ids = append(ids, root+"/SessionService/Sessions/"+se.id)
			}
			slices.Sort(ids)
			return s.collection(path, "SessionCollection", "Session Collection", ids)
		case len(segs) == 3 && segs[1] == "Sessions":
			for _, se := range s.sessions {
				if se.id == segs[2] {
					return s.sessionBody(se)
				}
			}
		}
		return nil
	}
	return nil
}

func (s *Simulator) serviceRoot() map[string]any {
	p := s.prof
	m := s.resource(root, "ServiceRoot.v1_15_0.ServiceRoot", "RootService", "Root Service")
	if p.trailingSlash {
		m["@odata.id"] = root + "/"
	}
	m["RedfishVersion"] = p.redfishVersion
	m["UUID"] = s.uuid
	m["Vendor"] = p.vendorName
	if p.product != "" {
		m["Product"] = p.product
	}
	m["Systems"] = s.ref(root + "/Systems")
	m["Chassis"] = s.ref(root + "/Chassis")
	m["Managers"] = s.ref(root + "/Managers")
	m["Registries"] = s.ref(root + "/Registries")
	m["TaskService"] = s.ref(root + "/TaskService")
	links := map[string]any{}
	if !s.opts.DisableSessionService {
		m["SessionService"] = s.ref(root + "/SessionService")
		links["Sessions"] = s.ref(root + "/SessionService/Sessions")
	}
	m["Links"] = links
	if e := p.expand; e.advertised {
		m["ProtocolFeaturesSupported"] = map[string]any{
			"ExpandQuery": map[string]any{
				"ExpandAll": e.expandAll,
				"Levels":    e.levels,
				"Links":     e.links,
				"NoLinks":   e.noLinks,
				"MaxLevels": e.maxLevels,
			},
			"SelectQuery":     p.selectQuery,
			"FilterQuery":     false,
			"OnlyMemberQuery": false,
			"ExcerptQuery":    false,
		}
	}
	switch {
	case p.dellOem:
		m["Oem"] = map[string]any{"Dell": map[string]any{
			"@odata.type": "#DellServiceRoot.v1_0_0.DellServiceRoot",
			"IsBranded":   0,
			"ServiceTag":  derivedSerial(Dell, "manager"),
		}}
	case p.hpeOem:
		m["Oem"] = map[string]any{"Hpe": map[string]any{
			"@odata.type": "#HpeiLOServiceExt.v2_3_0.HpeiLOServiceExt",
			"Manager": []any{map[string]any{
				"ManagerType":            "iLO 5",
				"ManagerFirmwareVersion": "2.72",
				"Status":                 map[string]any{"Health": "OK"},
			}},
			"Moniker": map[string]any{"PRODGEN": "iLO 5", "VENDABR": "HPE"},
		}}
	case p.smcOem:
		m["Oem"] = map[string]any{"Supermicro": map[string]any{}}
	}
	return m
}

func (s *Simulator) systemPath(sys *system) string { return root + "/Systems/" + sys.spec.ID }

func (s *Simulator) renderSystemPart(sys *system, rest []string) map[string]any {
	base := s.systemPath(sys)
	if len(rest) == 0 {
		return s.computerSystem(sys)
	}
	path := base + "/" + strings.Join(rest, "/")
	switch rest[0] {
	case "EthernetInterfaces":
		if len(rest) == 1 {
			ids := make([]string, len(sys.spec.NICs))
			for i, n := range sys.spec.NICs {
				ids[i] = path + "/" + n.ID
			}
			return s.collection(path, "EthernetInterfaceCollection", "Ethernet Interface Collection", ids)
		}
		if len(rest) == 2 {
			for _, n := range sys.spec.NICs {
				if n.ID == rest[1] {
					return s.ethernetInterface(path, n)
				}
			}
		}
	case "Processors":
		ids := s.cpuIDs(sys)
		if len(rest) == 1 {
			return s.collection(path, "ProcessorCollection", "Processors Collection", prefixAll(path+"/", ids))
		}
		if i := slices.Index(ids, rest[1]); len(rest) == 2 && i >= 0 {
			return s.processor(path, sys, i, rest[1])
		}
	case "Memory":
		ids := s.dimmIDs(sys)
		if len(rest) == 1 {
			return s.collection(path, "MemoryCollection", "Memory Module Collection", prefixAll(path+"/", ids))
		}
		if i := slices.Index(ids, rest[1]); len(rest) == 2 && i >= 0 {
			return s.memory(path, sys, i, rest[1])
		}
	case "Bios":
		if len(rest) == 1 {
			return s.renderBIOS(sys, path, false)
		}
		if len(rest) == 2 && rest[1] == "Settings" {
			return s.renderBIOS(sys, path, true)
		}
	case "Storage":
		return s.renderStorage(sys, base+"/Storage", rest[1:])
	case "ResetActionInfo":
		if len(rest) == 1 && s.prof.resetActionInfo {
			m := s.resource(path, "ActionInfo.v1_3_0.ActionInfo", "ResetActionInfo", "Reset Action Info")
			m["Parameters"] = []any{map[string]any{
				"Name":            "ResetType",
				"Required":        true,
				"DataType":        "String",
				"AllowableValues": slices.Clone(s.prof.resetTypes),
			}}
			return m
		}
	}
	return nil
}

func prefixAll(prefix string, ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = prefix + id
	}
	return out
}

func (s *Simulator) cpuIDs(sys *system) []string {
	ids := make([]string, sys.spec.CPUCount)
	for i := range ids {
		n := strconv.Itoa(i + 1)
		switch s.prof.vendor {
		case Dell:
			ids[i] = "CPU.Socket." + n
		case HPE, Supermicro:
			ids[i] = n
		default:
			ids[i] = "CPU" + n
		}
	}
	return ids
}

// dimmsPerCPU is how many DIMMs each socket gets in the simulated inventory.
const dimmsPerCPU = 2

func (s *Simulator) dimmIDs(sys *system) []string {
	ids := make([]string, sys.spec.CPUCount*dimmsPerCPU)
	for i := range ids {
		cpu, slot := i/dimmsPerCPU+1, i%dimmsPerCPU+1
		switch s.prof.vendor {
		case Dell:
			ids[i] = "DIMM.Socket." + string(rune('A'+cpu-1)) + strconv.Itoa(slot)
		case HPE:
			ids[i] = "proc" + strconv.Itoa(cpu) + "dimm" + strconv.Itoa(slot)
		case Supermicro:
			ids[i] = strconv.Itoa(i + 1)
		default:
			ids[i] = "DIMM" + strconv.Itoa(i+1)
		}
	}
	return ids
}

func (s *Simulator) computerSystem(sys *system) map[string]any {
	p := s.prof
	sp := sys.spec
	st := s.status(sys)
	path := s.systemPath(sys)
	m := s.resource(path, "ComputerSystem.v1_20_0.ComputerSystem", sp.ID, "System")
	m["Description"] = "Computer System"
	m["SystemType"] = "Physical"
	m["UUID"] = sp.UUID
	m["Manufacturer"] = sp.Manufacturer
	m["Model"] = sp.Model
	m["SerialNumber"] = sp.SerialNumber
	m["BiosVersion"] = sp.BIOSVersion
	m["AssetTag"] = sys.assetTag
	m["IndicatorLED"] = sys.led
	m["LocationIndicatorActive"] = sys.locateLED
	m["HostName"] = ""
	m["Status"] = statusOK()

	m["PowerState"] = st.State

	enabled := sys.boot.enabled
	if p.misreportEnabled != "" {
		// Supermicro: read-back of BootSourceOverrideEnabled is not trustworthy.
		enabled = p.misreportEnabled
	}
	boot := map[string]any{
		"BootSourceOverrideEnabled":                        enabled,
		"BootSourceOverrideTarget":                         sys.boot.target,
		"BootSourceOverrideTarget@Redfish.AllowableValues": slices.Clone(p.bootTargets),
		"BootSourceOverrideMode":                           sys.boot.mode,
		"BootOrder":                                        []any{"Boot0001", "Boot0002", "Boot0003"},
	}
	if p.vendor == Generic {
		boot["BootSourceOverrideMode@Redfish.AllowableValues"] = []any{"UEFI", "Legacy"}
	}
	if p.vendor == Dell || p.vendor == HPE || p.vendor == Generic {
		boot["UefiTargetBootSourceOverride"] = nil
	}
	if p.countAnnot {
		boot["BootOrder@odata.count"] = 3
	}
	m["Boot"] = boot

	cpu := map[string]any{"Count": sp.CPUCount, "Model": sp.CPUModel, "Status": statusOK()}
	cpu["LogicalProcessorCount"] = sp.CPUCount * 32
	m["ProcessorSummary"] = cpu
	m["MemorySummary"] = map[string]any{
		"TotalSystemMemoryGiB": jsonNumber(sp.MemoryGiB),
		"Status":               statusOK(),
	}

	m["EthernetInterfaces"] = s.ref(path + "/EthernetInterfaces")
	m["Processors"] = s.ref(path + "/Processors")
	m["Memory"] = s.ref(path + "/Memory")
	m["Bios"] = s.ref(path + "/Bios")
	m["Storage"] = s.ref(path + "/Storage")

	links := map[string]any{}
	s.setLinks(links, "Chassis", root+"/Chassis/"+sys.chassisID)
	s.setLinks(links, "ManagedBy", root+"/Managers/"+p.managerID)
	m["Links"] = links

	reset := map[string]any{
		"target":                            s.link(path + "/Actions/ComputerSystem.Reset"),
		"ResetType@Redfish.AllowableValues": slices.Clone(p.resetTypes),
	}
	if p.resetActionInfo {
		reset["@Redfish.ActionInfo"] = s.link(path + "/ResetActionInfo")
	}
	m["Actions"] = map[string]any{"#ComputerSystem.Reset": reset}

	switch {
	case p.hpeOem:
		post := "PowerOff"
		switch {
		case st.InPOST:
			post = "InPost"
		case isOnState(st.State):
			post = "FinishedPost"
		}
		m["Oem"] = map[string]any{"Hpe": map[string]any{
			"@odata.type":           "#HpeComputerSystemExt.v2_11_0.HpeComputerSystemExt",
			"PostState":             post,
			"PowerAutoOn":           "Restore",
			"PowerOnDelay":          "Minimum",
			"PowerRegulatorMode":    "Dynamic",
			"PostMode":              "Normal",
			"PostDiscoveryMode":     nil,
			"AggregateHealthStatus": map[string]any{"AggregateServerHealth": "OK"},
		}}
	case p.dellOem:
		m["Oem"] = map[string]any{"Dell": map[string]any{
			"@odata.type": "#DellOem.v1_3_0.DellOemResources",
			"DellSystem": map[string]any{
				"ChassisServiceTag": sp.SerialNumber,
				"SystemGeneration":  "16G Monolithic",
				"Id":                sp.ID,
			},
		}}
	case p.smcOem:
		m["Oem"] = map[string]any{"Supermicro": map[string]any{
			"@odata.type": "#SmcSystemExtensions.v1_0_0.System",
		}}
	}
	return m
}

// jsonNumber renders whole numbers as integers, like BMCs do.
func jsonNumber(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int64(f)
	}
	return f
}

func (s *Simulator) ethernetInterface(path string, n NIC) map[string]any {
	m := s.resource(path, "EthernetInterface.v1_9_0.EthernetInterface", n.ID, "System Ethernet Interface")
	m["Description"] = "Host Ethernet interface " + n.ID
	m["MACAddress"] = n.MAC
	m["PermanentMACAddress"] = n.MAC
	m["InterfaceEnabled"] = true
	if n.LinkUp {
		m["LinkStatus"] = "LinkUp"
		m["SpeedMbps"] = 25000
		m["Status"] = statusOK()
	} else {
		m["LinkStatus"] = "LinkDown"
		m["SpeedMbps"] = 0
		m["Status"] = map[string]any{"State": "Enabled", "Health": "OK"}
	}
	return m
}

func (s *Simulator) processor(path string, sys *system, i int, id string) map[string]any {
	m := s.resource(path, "Processor.v1_18_0.Processor", id, "Processor")
	m["Socket"] = "CPU " + strconv.Itoa(i+1)
	m["ProcessorType"] = "CPU"
	m["ProcessorArchitecture"] = "x86"
	m["InstructionSet"] = "x86-64"
	m["Manufacturer"] = "Intel(R) Corporation"
	m["Model"] = sys.spec.CPUModel
	m["TotalCores"] = 16
	m["TotalThreads"] = 32
	m["Status"] = statusOK()
	return m
}

func (s *Simulator) memory(path string, sys *system, i int, id string) map[string]any {
	m := s.resource(path, "Memory.v1_17_0.Memory", id, "DIMM "+id)
	n := len(s.dimmIDs(sys))
	m["CapacityMiB"] = jsonNumber(math.Round(sys.spec.MemoryGiB * 1024 / float64(n)))
	m["MemoryDeviceType"] = "DDR4"
	m["MemoryType"] = "DRAM"
	m["OperatingSpeedMhz"] = 3200
	m["DeviceLocator"] = "DIMM " + strconv.Itoa(i+1)
	m["Status"] = statusOK()
	return m
}

func (s *Simulator) chassis(sys *system) map[string]any {
	path := root + "/Chassis/" + sys.chassisID
	m := s.resource(path, "Chassis.v1_23_0.Chassis", sys.chassisID, "Computer System Chassis")
	m["ChassisType"] = "RackMount"
	m["Manufacturer"] = sys.spec.Manufacturer
	m["Model"] = sys.spec.Model
	m["SerialNumber"] = sys.spec.SerialNumber
	st := s.status(sys)
	if isOnState(st.State) {
		m["PowerState"] = PowerOn
	} else {
		m["PowerState"] = PowerOff
	}
	m["Status"] = statusOK()
	links := map[string]any{}
	s.setLinks(links, "ComputerSystems", s.systemPath(sys))
	s.setLinks(links, "ManagedBy", root+"/Managers/"+s.prof.managerID)
	m["Links"] = links
	return m
}

func (s *Simulator) manager() map[string]any {
	p := s.prof
	path := root + "/Managers/" + p.managerID
	m := s.resource(path, "Manager.v1_18_0.Manager", p.managerID, "Manager")
	m["ManagerType"] = "BMC"
	m["UUID"] = derivedUUID(string(p.vendor) + "/manager")
	m["PowerState"] = PowerOn
	m["Status"] = statusOK()
	switch p.vendor {
	case Dell:
		m["Model"] = "16G Monolithic"
		m["FirmwareVersion"] = "7.10.30.00"
	case HPE:
		m["Model"] = "iLO 5"
		m["FirmwareVersion"] = "iLO 5 v2.72"
	case Supermicro:
		m["Model"] = "ASPEED"
		m["FirmwareVersion"] = "01.01.10"
	default:
		m["Model"] = "Joo Janta 200"
		m["FirmwareVersion"] = "1.00"
	}
	servers := make([]string, len(s.systems))
	chassis := make([]string, len(s.systems))
	for i, sys := range s.systems {
		servers[i] = s.systemPath(sys)
		chassis[i] = root + "/Chassis/" + sys.chassisID
	}
	links := map[string]any{}
	s.setLinks(links, "ManagerForServers", servers...)
	s.setLinks(links, "ManagerForChassis", chassis...)
	switch {
	case p.dellJobs:
		// iDRAC keeps its job queue under Links.Oem.Dell (placeholder for
		// the Lifecycle Controller job model).
		links["Oem"] = map[string]any{"Dell": map[string]any{
			"@odata.type": "#DellOem.v1_3_0.DellOemLinks",
			"Jobs":        s.ref(path + "/Jobs"),
		}}
		m["Oem"] = map[string]any{"Dell": map[string]any{
			"@odata.type": "#DellOem.v1_3_0.DellOemResources",
		}}
	case p.hpeOem:
		m["Oem"] = map[string]any{"Hpe": map[string]any{
			"@odata.type": "#HpeiLO.v2_8_0.HpeiLO",
			"Firmware": map[string]any{"Current": map[string]any{
				"VersionString": "iLO 5 v2.72",
				"Date":          "Sep 04 2022",
			}},
			"License": map[string]any{"LicenseString": "iLO Advanced"},
		}}
	}
	m["Links"] = links
	return m
}

func (s *Simulator) sessionBody(se *session) map[string]any {
	path := root + "/SessionService/Sessions/" + se.id
	m := s.resource(path, "Session.v1_6_0.Session", se.id, "User Session")
	m["Description"] = "Manager User Session"
	m["UserName"] = se.user
	m["Password"] = nil // never echoed
	return m
}
