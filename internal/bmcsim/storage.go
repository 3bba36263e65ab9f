package bmcsim

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// DriveSpec is one physical drive of a simulated storage controller.
type DriveSpec struct {
	ID            string
	MediaType     string // HDD, SSD
	Protocol      string // SAS, SATA, NVMe
	CapacityBytes int64
}

// StorageSpec is one simulated storage subsystem (controller). A controller
// without SupportedRAIDTypes cannot create volumes (an AHCI/HBA).
type StorageSpec struct {
	ID                 string
	Name               string
	SupportedRAIDTypes []string
	Drives             []DriveSpec
}

type volume struct {
	id, name, raidType, durable string
	capacity                    int64
	drives                      []string
	initMode                    string
}

type storageState struct {
	spec    StorageSpec
	volumes []*volume
	volSeq  int
}

// task is a TaskService task (volume creation).
type task struct {
	id        string
	polls     int // monitor GETs left before the task finishes
	state     string
	status    string
	messages  []msg
	done      func() // applied when the task completes successfully
	resultURI string
}

// defaultStorage is the vendor's usual controller layout.
func (p *profile) defaultStorage() []StorageSpec {
	ssd := func(id string) DriveSpec {
		return DriveSpec{ID: id, MediaType: "SSD", Protocol: "SAS", CapacityBytes: 960 * 1000 * 1000 * 1000}
	}
	hdd := func(id string) DriveSpec {
		return DriveSpec{ID: id, MediaType: "HDD", Protocol: "SATA", CapacityBytes: 4000 * 1000 * 1000 * 1000}
	}
	switch p.vendor {
	case Dell:
		c := "RAID.Integrated.1-1"
		d := func(i int) string { return "Disk.Bay." + strconv.Itoa(i) + ":Enclosure.Internal.0-1:" + c }
		return []StorageSpec{
			{ID: c, Name: "PERC H755 Front", SupportedRAIDTypes: []string{"RAID0", "RAID1", "RAID5", "RAID6", "RAID10", "RAID50", "RAID60"},
				Drives: []DriveSpec{ssd(d(0)), ssd(d(1)), hdd(d(2)), hdd(d(3)), hdd(d(4)), hdd(d(5))}},
			{ID: "AHCI.Embedded.1-1", Name: "BOSS-N1 AHCI", Drives: []DriveSpec{{ID: "Disk.Direct.0-0:AHCI.Embedded.1-1", MediaType: "SSD", Protocol: "SATA", CapacityBytes: 480 * 1000 * 1000 * 1000}}},
		}
	case HPE:
		return []StorageSpec{{ID: "DE00A000", Name: "HPE Smart Array P408i-a SR Gen10", SupportedRAIDTypes: []string{"RAID0", "RAID1", "RAID5", "RAID6", "RAID10", "RAID50", "RAID60"},
			Drives: []DriveSpec{ssd("0"), ssd("1"), hdd("2"), hdd("3"), hdd("4"), hdd("5")}}}
	case Supermicro:
		return []StorageSpec{{ID: "HA-RAID", Name: "Broadcom MegaRAID 9560-8i", SupportedRAIDTypes: []string{"RAID0", "RAID1", "RAID5", "RAID10"},
			Drives: []DriveSpec{ssd("HA-RAID.0.Disk.0"), ssd("HA-RAID.0.Disk.1"), hdd("HA-RAID.0.Disk.2"), hdd("HA-RAID.0.Disk.3"), hdd("HA-RAID.0.Disk.4")}}}
	default:
		return []StorageSpec{{ID: "1", Name: "RAID Controller", SupportedRAIDTypes: []string{"RAID0", "RAID1", "RAID5", "RAID6", "RAID10"},
			Drives: []DriveSpec{ssd("Drive0"), ssd("Drive1"), hdd("Drive2"), hdd("Drive3"), hdd("Drive4"), hdd("Drive5")}}}
	}
}

// minDrives is the drive count rule per RAID level (RAID10 also needs an
// even count).
func minDrives(raid string) int {
	switch raid {
	case "RAID1":
		return 2
	case "RAID5":
		return 3
	case "RAID6", "RAID10":
		return 4
	case "RAID50":
		return 6
	case "RAID60":
		return 8
	}
	return 1
}

func dataDrives(raid string, n int) int {
	switch raid {
	case "RAID1", "RAID10":
		return n / 2
	case "RAID5":
		return n - 1
	case "RAID6":
		return n - 2
	case "RAID50":
		return n - 2
	case "RAID60":
		return n - 4
	}
	return n
}

func (st *storageState) drive(id string) (DriveSpec, bool) {
	for _, d := range st.spec.Drives {
		if d.ID == id {
			return d, true
		}
	}
	return DriveSpec{}, false
}

func (st *storageState) volumeOf(driveID string) *volume {
	for _, v := range st.volumes {
		if slices.Contains(v.drives, driveID) {
			return v
		}
	}
	return nil
}

func (s *Simulator) storagePath(sys *system, st *storageState) string {
	return s.systemPath(sys) + "/Storage/" + st.spec.ID
}

func (sys *system) findStorage(id string) *storageState {
	for _, st := range sys.storage {
		if st.spec.ID == id {
			return st
		}
	}
	return nil
}

func (s *Simulator) renderStorage(sys *system, base string, rest []string) map[string]any {
	if len(rest) == 0 {
		ids := make([]string, len(sys.storage))
		for i, st := range sys.storage {
			ids[i] = base + "/" + st.spec.ID
		}
		return s.collection(base, "StorageCollection", "Storage Collection", ids)
	}
	st := sys.findStorage(rest[0])
	if st == nil {
		return nil
	}
	p := base + "/" + st.spec.ID
	switch {
	case len(rest) == 1:
		m := s.resource(p, "Storage.v1_15_0.Storage", st.spec.ID, st.spec.Name)
		ctl := map[string]any{
			"@odata.id":          s.link(p) + "#/StorageControllers/0",
			"MemberId":           "0",
			"Name":               st.spec.Name,
			"SupportedRAIDTypes": slices.Clone(st.spec.SupportedRAIDTypes),
			"Status":             statusOK(),
		}
		if ctl["SupportedRAIDTypes"] == nil {
			ctl["SupportedRAIDTypes"] = []string{}
		}
		m["StorageControllers"] = []any{ctl}
		drives := make([]string, len(st.spec.Drives))
		for i, d := range st.spec.Drives {
			drives[i] = p + "/Drives/" + d.ID
		}
		s.setLinks(m, "Drives", drives...)
		m["Volumes"] = s.ref(p + "/Volumes")
		m["Status"] = statusOK()
		return m
	case len(rest) == 3 && rest[1] == "Drives":
		d, ok := st.drive(rest[2])
		if !ok {
			return nil
		}
		m := s.resource(p+"/Drives/"+d.ID, "Drive.v1_17_0.Drive", d.ID, "Drive "+d.ID)
		m["MediaType"] = d.MediaType
		m["Protocol"] = d.Protocol
		m["CapacityBytes"] = d.CapacityBytes
		m["SerialNumber"] = strings.ToUpper(derivedSerial(Supermicro, sys.spec.ID+"/"+d.ID))
		m["Status"] = statusOK()
		links := map[string]any{}
		var vols []string
		if v := st.volumeOf(d.ID); v != nil {
			vols = append(vols, p+"/Volumes/"+v.id)
		}
		s.setLinks(links, "Volumes", vols...)
		m["Links"] = links
		return m
	case len(rest) == 2 && rest[1] == "Volumes":
		ids := make([]string, len(st.volumes))
		for i, v := range st.volumes {
			ids[i] = p + "/Volumes/" + v.id
		}
		return s.collection(p+"/Volumes", "VolumeCollection", "Volume Collection", ids)
	case len(rest) == 3 && rest[1] == "Volumes":
		for _, v := range st.volumes {
			if v.id == rest[2] {
				return s.renderVolume(p+"/Volumes/"+v.id, p, v)
			}
		}
	}
	return nil
}

func (s *Simulator) renderVolume(path, storagePath string, v *volume) map[string]any {
	m := s.resource(path, "Volume.v1_9_0.Volume", v.id, v.name)
	m["RAIDType"] = v.raidType
	m["CapacityBytes"] = v.capacity
	m["Identifiers"] = []any{map[string]any{"DurableNameFormat": "NAA", "DurableName": v.durable}}
	m["Status"] = statusOK()
	if v.initMode != "" {
		m["InitializeMethod"] = v.initMode
	}
	drives := make([]string, len(v.drives))
	for i, d := range v.drives {
		drives[i] = storagePath + "/Drives/" + d
	}
	links := map[string]any{}
	s.setLinks(links, "Drives", drives...)
	m["Links"] = links
	return m
}

func (s *Simulator) volumeID(st *storageState) string {
	st.volSeq++
	switch s.prof.vendor {
	case Dell:
		return "Disk.Virtual." + strconv.Itoa(st.volSeq-1) + ":" + st.spec.ID
	default:
		return strconv.Itoa(st.volSeq)
	}
}

// createVolume validates a POST to Volumes and starts a task.
func (s *Simulator) createVolume(body []byte, sys *system, st *storageState) *response {
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		return s.malformed()
	}
	const ptr = "#/"
	var errs []msg
	raid, _ := req["RAIDType"].(string)
	if raid == "" {
		errs = append(errs, msg{id: "CreateFailedMissingReqProperties", args: []string{"RAIDType"}, severity: "Critical"})
	} else if !slices.Contains(st.spec.SupportedRAIDTypes, raid) {
		errs = append(errs, valueMsg(raid, "RAIDType", ptr+"RAIDType"))
	}
	var driveIDs []string
	links, _ := req["Links"].(map[string]any)
	dl, _ := links["Drives"].([]any)
	for _, d := range dl {
		dm, _ := d.(map[string]any)
		id, _ := dm["@odata.id"].(string)
		id = strings.TrimRight(id, "/")
		i := strings.LastIndex(id, "/")
		short := id[i+1:]
		if _, ok := st.drive(short); !ok || !strings.HasPrefix(id, s.storagePath(sys, st)+"/Drives/") {
			errs = append(errs, msg{id: "ResourceMissingAtURI", args: []string{id}, severity: "Critical"})
			continue
		}
		if v := st.volumeOf(short); v != nil {
			errs = append(errs, msg{id: "ResourceInUse", args: []string{id}, severity: "Critical"})
			continue
		}
		driveIDs = append(driveIDs, short)
	}
	if len(dl) == 0 {
		errs = append(errs, msg{id: "CreateFailedMissingReqProperties", args: []string{"Links/Drives"}, severity: "Critical"})
	}
	if raid != "" && len(errs) == 0 && (len(driveIDs) < minDrives(raid) || (raid == "RAID10" && len(driveIDs)%2 != 0)) {
		errs = append(errs, valueMsg(strconv.Itoa(len(driveIDs))+" drives", "RAIDType", ptr+"RAIDType"))
	}
	var capacity int64
	if len(errs) == 0 {
		smallest := int64(-1)
		for _, id := range driveIDs {
			d, _ := st.drive(id)
			if smallest < 0 || d.CapacityBytes < smallest {
				smallest = d.CapacityBytes
			}
		}
		capacity = smallest * int64(dataDrives(raid, len(driveIDs)))
		if c, ok := req["CapacityBytes"].(float64); ok && c > 0 {
			if int64(c) > capacity {
				errs = append(errs, msg{id: "PropertyValueOutOfRange", args: []string{valueString(req["CapacityBytes"]), "CapacityBytes"}, severity: "Warning", related: []string{ptr + "CapacityBytes"}})
			}
			capacity = int64(c)
		}
	}
	if len(errs) > 0 {
		return s.errResp(http.StatusBadRequest, errs...)
	}
	name, _ := req["Name"].(string)
	initMode, _ := req["InitializeMethod"].(string)
	v := &volume{raidType: raid, capacity: capacity, drives: driveIDs, name: name, initMode: initMode}
	s.taskSeq++
	t := &task{id: strconv.Itoa(s.taskSeq), polls: s.opts.TaskPolls, state: "Running", status: "OK"}
	if len(s.failTasks) > 0 {
		t.messages = s.failTasks
		s.failTasks = nil
	} else {
		t.done = func() {
			v.id = s.volumeID(st)
			if v.name == "" {
				v.name = "Volume " + v.id
			}
			h := derivedHash("volume/" + sys.spec.ID + "/" + st.spec.ID + "/" + v.id)
			v.durable = "6" + strings.ToUpper(hexString(h[:16]))[:31]
			st.volumes = append(st.volumes, v)
			t.resultURI = s.storagePath(sys, st) + "/Volumes/" + v.id
		}
	}
	s.tasks = append(s.tasks, t)
	if t.polls <= 0 {
		s.finishTask(t)
	}
	resp := newResponse(http.StatusAccepted, s.renderTask(t))
	resp.header.Set("Location", s.link(root+"/TaskService/TaskMonitors/"+t.id))
	return resp
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func (s *Simulator) finishTask(t *task) {
	if t.state != "Running" {
		return
	}
	if t.done == nil {
		t.state, t.status = "Exception", "Critical"
		return
	}
	t.done()
	t.state = "Completed"
}

func (s *Simulator) findTask(id string) *task {
	for _, t := range s.tasks {
		if t.id == id {
			return t
		}
	}
	return nil
}

func (s *Simulator) renderTask(t *task) map[string]any {
	path := root + "/TaskService/Tasks/" + t.id
	m := s.resource(path, "Task.v1_7_1.Task", t.id, "Volume creation task")
	m["TaskState"] = t.state
	m["TaskStatus"] = t.status
	m["TaskMonitor"] = s.link(root + "/TaskService/TaskMonitors/" + t.id)
	pct := 50
	if t.state != "Running" {
		pct = 100
	}
	m["PercentComplete"] = pct
	msgs := t.messages
	if t.state == "Completed" {
		msgs = []msg{{id: "Success", severity: "OK"}}
	}
	if msgs == nil {
		msgs = []msg{}
	}
	m["Messages"] = s.prof.extendedInfo(msgs)
	if t.resultURI != "" {
		m["Payload"] = map[string]any{"TargetUri": s.link(t.resultURI)}
	}
	return m
}

// taskMonitor answers GET of a TaskMonitor: 202 while the task runs, then
// the task itself.
func (s *Simulator) taskMonitor(id string) *response {
	t := s.findTask(id)
	if t == nil {
		return s.notFound(root + "/TaskService/TaskMonitors/" + id)
	}
	if t.state == "Running" {
		t.polls--
		if t.polls < 0 {
			s.finishTask(t)
		}
	}
	if t.state == "Running" {
		resp := newResponse(http.StatusAccepted, s.renderTask(t))
		resp.header.Set("Location", s.link(root+"/TaskService/TaskMonitors/"+t.id))
		resp.header.Set("Retry-After", "0")
		return resp
	}
	return newResponse(http.StatusOK, s.renderTask(t))
}

func (s *Simulator) deleteVolume(st *storageState, id string) *response {
	for i, v := range st.volumes {
		if v.id == id {
			st.volumes = slices.Delete(st.volumes, i, i+1)
			return s.success(s.prof.success)
		}
	}
	return nil
}

// FailNextTask makes the next volume-creation task end in Exception with
// these messages (Base registry ids or "oem:" ids, as in error bodies, with
// the text given as the only argument of GeneralError when the id is
// unknown). The volume is not created.
func (s *Simulator) FailNextTask(messages ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failTasks = nil
	for _, m := range messages {
		s.failTasks = append(s.failTasks, msg{id: "TaskFailed", args: []string{m}, severity: "Critical"})
	}
	if len(s.failTasks) == 0 {
		s.failTasks = []msg{{id: "TaskFailed", args: []string{"the controller failed the operation"}, severity: "Critical"}}
	}
}

// VolumeInfo is the ground truth of one simulated volume.
type VolumeInfo struct {
	ID, Name, RAIDType string
	CapacityBytes      int64
	Drives             []string
}

// Volumes lists the volumes of one storage controller.
func (s *Simulator) Volumes(systemID, storageID string) []VolumeInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	sys := s.findLocked(systemID)
	if sys == nil {
		return nil
	}
	st := sys.findStorage(storageID)
	if st == nil {
		return nil
	}
	out := make([]VolumeInfo, len(st.volumes))
	for i, v := range st.volumes {
		out[i] = VolumeInfo{ID: v.id, Name: v.name, RAIDType: v.raidType, CapacityBytes: v.capacity, Drives: slices.Clone(v.drives)}
	}
	return out
}
