package redfish

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
)

// Drive is one physical drive behind a storage controller.
type Drive struct {
	ID            string   `json:"id"`
	Path          string   `json:"path"`
	Name          string   `json:"name,omitempty"`
	MediaType     string   `json:"media_type,omitempty"` // HDD, SSD, SMR
	Protocol      string   `json:"protocol,omitempty"`   // SAS, SATA, NVMe, ...
	CapacityBytes int64    `json:"capacity_bytes"`
	VolumeIDs     []string `json:"volume_ids,omitempty"`
}

// Volume is one logical volume of a storage controller.
type Volume struct {
	ID                string   `json:"id"`
	Path              string   `json:"path"`
	Name              string   `json:"name,omitempty"`
	RAIDType          string   `json:"raid_type,omitempty"`
	CapacityBytes     int64    `json:"capacity_bytes"`
	DriveIDs          []string `json:"drive_ids,omitempty"`
	DurableName       string   `json:"durable_name,omitempty"`
	DurableNameFormat string   `json:"durable_name_format,omitempty"`
	// DeviceHint is the stable Linux device path the volume shows up as
	// (from its NAA/EUI identifier), "" when the BMC gives none.
	DeviceHint string `json:"device_hint,omitempty"`
}

// StorageController is one Storage resource of a system.
type StorageController struct {
	ID                 string   `json:"id"`
	Path               string   `json:"path"`
	Name               string   `json:"name,omitempty"`
	SupportedRAIDTypes []string `json:"supported_raid_types,omitempty"`
	Drives             []Drive  `json:"drives"`
	Volumes            []Volume `json:"volumes"`
}

// RAIDCapable reports whether the controller can build volumes.
func (s *StorageController) RAIDCapable() bool { return len(s.SupportedRAIDTypes) > 0 }

// VolumeSpec is a volume to create.
type VolumeSpec struct {
	StorageID     string    `json:"storage_id"`
	RAIDType      string    `json:"raid_type"`
	DriveIDs      []string  `json:"drive_ids"`
	CapacityBytes int64     `json:"capacity_bytes,omitempty"` // 0 = all the drives give
	Name          string    `json:"name,omitempty"`
	ApplyTime     ApplyTime `json:"apply_time,omitempty"`
	// InitMode is the Volume InitializeMethod: Fast, Background, Foreground, Skip.
	InitMode string `json:"init_mode,omitempty"`
	// Selector picks the drives when DriveIDs is empty.
	Selector *DriveSelector `json:"drive_selector,omitempty"`
}

// DriveSelector picks drives by properties instead of ids.
type DriveSelector struct {
	MediaType        string `json:"media_type,omitempty"`
	Protocol         string `json:"protocol,omitempty"`
	MinCapacityBytes int64  `json:"min_capacity_bytes,omitempty"`
	Count            int    `json:"count"`
}

type storageDoc struct {
	ODataID            string `json:"@odata.id"`
	ID                 string `json:"Id"`
	Name               string `json:"Name"`
	StorageControllers []struct {
		SupportedRAIDTypes []string `json:"SupportedRAIDTypes"`
	} `json:"StorageControllers"`
	Drives  []link `json:"Drives"`
	Volumes link   `json:"Volumes"`
}

type driveDoc struct {
	ODataID       string `json:"@odata.id"`
	ID            string `json:"Id"`
	Name          string `json:"Name"`
	MediaType     string `json:"MediaType"`
	Protocol      string `json:"Protocol"`
	CapacityBytes int64  `json:"CapacityBytes"`
	Links         struct {
		Volumes []link `json:"Volumes"`
	} `json:"Links"`
}

type volumeDoc struct {
	ODataID       string `json:"@odata.id"`
	ID            string `json:"Id"`
	Name          string `json:"Name"`
	RAIDType      string `json:"RAIDType"`
	CapacityBytes int64  `json:"CapacityBytes"`
	Identifiers   []struct {
		DurableName       string `json:"DurableName"`
		DurableNameFormat string `json:"DurableNameFormat"`
	} `json:"Identifiers"`
	Links struct {
		Drives []link `json:"Drives"`
	} `json:"Links"`
}

func lastSeg(p string) string { return path.Base(strings.TrimRight(p, "/")) }

// Storage lists the system's storage controllers with drives and volumes.
func (c *Client) Storage() ([]StorageController, error) {
	p, err := c.SystemPath()
	if err != nil {
		return nil, err
	}
	return c.storage(p)
}

func (c *Client) storage(p string) ([]StorageController, error) {
	var coll collectionDoc
	if err := c.getJSON(p+"/Storage", &coll); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing storage: %w", err)
	}
	var out []StorageController
	for _, m := range coll.Members {
		var l link
		if json.Unmarshal(m, &l) != nil || l.ODataID == "" {
			continue
		}
		sc, err := c.controller(c.relative(l.ODataID))
		if err != nil {
			return nil, err
		}
		out = append(out, *sc)
	}
	return out, nil
}

func (c *Client) controller(uri string) (*StorageController, error) {
	var d storageDoc
	if err := c.getJSON(uri, &d); err != nil {
		return nil, fmt.Errorf("reading storage %s: %w", lastSeg(uri), err)
	}
	sc := &StorageController{ID: firstNonEmpty(d.ID, lastSeg(uri)), Path: strings.TrimRight(uri, "/"), Name: d.Name}
	for _, ctl := range d.StorageControllers {
		for _, t := range ctl.SupportedRAIDTypes {
			if !slices.Contains(sc.SupportedRAIDTypes, t) {
				sc.SupportedRAIDTypes = append(sc.SupportedRAIDTypes, t)
			}
		}
	}
	for _, dl := range d.Drives {
		var dd driveDoc
		if err := c.getJSON(c.relative(dl.ODataID), &dd); err != nil {
			return nil, fmt.Errorf("reading drive %s: %w", lastSeg(dl.ODataID), err)
		}
		drv := Drive{ID: firstNonEmpty(dd.ID, lastSeg(dl.ODataID)), Path: strings.TrimRight(c.relative(dl.ODataID), "/"),
			Name: dd.Name, MediaType: dd.MediaType, Protocol: dd.Protocol, CapacityBytes: dd.CapacityBytes}
		for _, v := range dd.Links.Volumes {
			drv.VolumeIDs = append(drv.VolumeIDs, lastSeg(v.ODataID))
		}
		sc.Drives = append(sc.Drives, drv)
	}
	if d.Volumes.ODataID != "" {
		var vc collectionDoc
		if err := c.getJSON(c.relative(d.Volumes.ODataID), &vc); err != nil {
			return nil, fmt.Errorf("listing volumes of %s: %w", sc.ID, err)
		}
		for _, m := range vc.Members {
			var l link
			if json.Unmarshal(m, &l) != nil || l.ODataID == "" {
				continue
			}
			v, err := c.volume(c.relative(l.ODataID))
			if err != nil {
				return nil, err
			}
			sc.Volumes = append(sc.Volumes, *v)
		}
	}
	return sc, nil
}

func (c *Client) volume(uri string) (*Volume, error) {
	var d volumeDoc
	if err := c.getJSON(uri, &d); err != nil {
		return nil, fmt.Errorf("reading volume %s: %w", lastSeg(uri), err)
	}
	v := &Volume{ID: firstNonEmpty(d.ID, lastSeg(uri)), Path: strings.TrimRight(uri, "/"), Name: d.Name, RAIDType: d.RAIDType, CapacityBytes: d.CapacityBytes}
	for _, l := range d.Links.Drives {
		v.DriveIDs = append(v.DriveIDs, lastSeg(l.ODataID))
	}
	for _, id := range d.Identifiers {
		if id.DurableName != "" {
			v.DurableName, v.DurableNameFormat = id.DurableName, id.DurableNameFormat
			v.DeviceHint = deviceHint(id.DurableNameFormat, id.DurableName)
			break
		}
	}
	return v, nil
}

// deviceHint maps a volume identifier to the /dev/disk/by-id name udev
// gives it.
func deviceHint(format, name string) string {
	n := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(name, "0x"), "0X"))
	switch format {
	case "NAA":
		return "/dev/disk/by-id/wwn-0x" + n
	case "EUI":
		return "/dev/disk/by-id/nvme-eui." + n
	case "NGUID":
		return "/dev/disk/by-id/nvme-eui." + n
	}
	return ""
}

// PickController returns the controller with id, or when id is "" the only
// RAID-capable one.
func PickController(ctrls []StorageController, id string) (*StorageController, error) {
	if id != "" {
		var ids []string
		for i := range ctrls {
			if ctrls[i].ID == id {
				return &ctrls[i], nil
			}
			ids = append(ids, ctrls[i].ID)
		}
		return nil, &opError{kind: ErrNotFound, msg: fmt.Sprintf("storage controller %q is not on the system (it has: %s)", id, strings.Join(ids, ", "))}
	}
	var capable []int
	for i := range ctrls {
		if ctrls[i].RAIDCapable() {
			capable = append(capable, i)
		}
	}
	switch len(capable) {
	case 0:
		return nil, &opError{kind: ErrUnsupported, msg: "the system has no RAID-capable storage controller"}
	case 1:
		return &ctrls[capable[0]], nil
	}
	ids := make([]string, len(capable))
	for i, j := range capable {
		ids[i] = ctrls[j].ID
	}
	return nil, &opError{kind: ErrInvalidSpec, msg: "the system has several RAID-capable storage controllers (" + strings.Join(ids, ", ") + "): set storage_id to one of them"}
}

// MinDrives is the smallest drive count of a RAID level; even reports
// whether the count must be even.
func MinDrives(raid string) (n int, even bool) {
	switch raid {
	case "RAID1":
		return 2, false
	case "RAID5":
		return 3, false
	case "RAID6":
		return 4, false
	case "RAID10":
		return 4, true
	case "RAID50":
		return 6, true
	case "RAID60":
		return 8, true
	}
	return 1, false
}

// ValidateVolume checks a spec against a controller before anything is
// sent: the RAID type must be supported, drives must exist and be free,
// and their count must fit the RAID level.
func ValidateVolume(sc *StorageController, spec VolumeSpec) error {
	var problems []string
	if !slices.Contains(sc.SupportedRAIDTypes, spec.RAIDType) {
		problems = append(problems, fmt.Sprintf("RAID type %q is not supported by %s (supported: %s)", spec.RAIDType, sc.ID, strings.Join(sc.SupportedRAIDTypes, ", ")))
	}
	seen := map[string]bool{}
	for _, id := range spec.DriveIDs {
		if seen[id] {
			problems = append(problems, fmt.Sprintf("drive %s is listed twice", id))
			continue
		}
		seen[id] = true
		i := slices.IndexFunc(sc.Drives, func(d Drive) bool { return d.ID == id })
		switch {
		case i < 0:
			problems = append(problems, fmt.Sprintf("drive %s is not on controller %s", id, sc.ID))
		case len(sc.Drives[i].VolumeIDs) > 0:
			problems = append(problems, fmt.Sprintf("drive %s is already in volume %s", id, strings.Join(sc.Drives[i].VolumeIDs, ", ")))
		}
	}
	n, even := MinDrives(spec.RAIDType)
	switch {
	case len(spec.DriveIDs) < n:
		problems = append(problems, fmt.Sprintf("%s needs at least %d drives, got %d", spec.RAIDType, n, len(spec.DriveIDs)))
	case even && len(spec.DriveIDs)%2 != 0:
		problems = append(problems, fmt.Sprintf("%s needs an even number of drives, got %d", spec.RAIDType, len(spec.DriveIDs)))
	}
	if len(problems) > 0 {
		return &opError{kind: ErrInvalidSpec, msg: "volume: " + strings.Join(problems, "; ")}
	}
	return nil
}

// SelectDrives picks sel.Count free drives matching sel, smallest first
// (so large drives stay free), ties by id.
func SelectDrives(sc *StorageController, sel DriveSelector) ([]string, error) {
	var match []Drive
	for _, d := range sc.Drives {
		if len(d.VolumeIDs) > 0 ||
			(sel.MediaType != "" && !strings.EqualFold(d.MediaType, sel.MediaType)) ||
			(sel.Protocol != "" && !strings.EqualFold(d.Protocol, sel.Protocol)) ||
			d.CapacityBytes < sel.MinCapacityBytes {
			continue
		}
		match = append(match, d)
	}
	if len(match) < sel.Count {
		return nil, &opError{kind: ErrInvalidSpec, msg: fmt.Sprintf("drive_selector wants %d free drives (media %q, protocol %q, >= %d bytes) on %s; only %d match",
			sel.Count, sel.MediaType, sel.Protocol, sel.MinCapacityBytes, sc.ID, len(match))}
	}
	slices.SortStableFunc(match, func(a, b Drive) int {
		if a.CapacityBytes != b.CapacityBytes {
			if a.CapacityBytes < b.CapacityBytes {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	ids := make([]string, sel.Count)
	for i := range ids {
		ids[i] = match[i].ID
	}
	return ids, nil
}

// CreateVolume validates the spec against the controller, POSTs the volume
// and follows the 202 + TaskMonitor until it is built. A failed task is a
// *TaskError (ErrTaskFailed) carrying the task's messages.
func (c *Client) CreateVolume(spec VolumeSpec) (*Volume, error) {
	p, err := c.SystemPath()
	if err != nil {
		return nil, err
	}
	ctrls, err := c.storage(p)
	if err != nil {
		return nil, err
	}
	sc, err := PickController(ctrls, spec.StorageID)
	if err != nil {
		return nil, err
	}
	if len(spec.DriveIDs) == 0 && spec.Selector != nil {
		if spec.DriveIDs, err = SelectDrives(sc, *spec.Selector); err != nil {
			return nil, err
		}
	}
	if err := ValidateVolume(sc, spec); err != nil {
		return nil, err
	}
	drives := make([]any, len(spec.DriveIDs))
	for i, id := range spec.DriveIDs {
		drives[i] = map[string]any{"@odata.id": sc.Path + "/Drives/" + id}
	}
	body := map[string]any{"RAIDType": spec.RAIDType, "Links": map[string]any{"Drives": drives}}
	if spec.Name != "" {
		body["Name"] = spec.Name
	}
	if spec.CapacityBytes > 0 {
		body["CapacityBytes"] = spec.CapacityBytes
	}
	if spec.InitMode != "" {
		body["InitializeMethod"] = spec.InitMode
	}
	if spec.ApplyTime != "" && spec.ApplyTime != ApplyImmediate {
		body["@Redfish.OperationApplyTime"] = string(spec.ApplyTime)
	}
	what := fmt.Sprintf("creating %s volume %q on %s", spec.RAIDType, spec.Name, sc.ID)
	resp, err := c.sendJSON(http.MethodPost, sc.Path+"/Volumes", body, nil, sendOpts{nonIdempotent: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	loc := resp.Header.Get("Location")
	status := resp.StatusCode
	drain(resp)
	target := ""
	if status == http.StatusAccepted && loc != "" {
		res, err := c.waitTask(loc, what)
		if err != nil {
			return nil, err
		}
		target = res.TargetURI
	} else if loc != "" {
		target = loc
	}
	if target != "" && strings.Contains(target, "/Volumes/") {
		return c.volume(c.relative(target))
	}
	// Find the volume the task built: the one on our drives.
	after, err := c.controller(sc.Path)
	if err != nil {
		return nil, err
	}
	for _, v := range after.Volumes {
		if len(v.DriveIDs) > 0 && slices.Contains(v.DriveIDs, spec.DriveIDs[0]) {
			return &v, nil
		}
	}
	return nil, &opError{kind: ErrNotFound, msg: what + ": the task finished but no volume uses the drives"}
}

// GetVolume reads one volume.
func (c *Client) GetVolume(storageID, volumeID string) (*Volume, error) {
	p, err := c.SystemPath()
	if err != nil {
		return nil, err
	}
	v, err := c.volume(p + "/Storage/" + storageID + "/Volumes/" + volumeID)
	if err != nil && errors.Is(err, ErrNotFound) {
		return nil, &opError{kind: ErrNotFound, msg: fmt.Sprintf("volume %s is not on storage %s", volumeID, storageID), err: err}
	}
	return v, err
}

// DeleteVolume deletes a volume; one that is already gone is not an error.
func (c *Client) DeleteVolume(storageID, volumeID string) error {
	p, err := c.SystemPath()
	if err != nil {
		return err
	}
	uri := p + "/Storage/" + storageID + "/Volumes/" + volumeID
	resp, err := c.send(http.MethodDelete, uri, nil, nil, sendOpts{nonIdempotent: true})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return fmt.Errorf("deleting volume %s on %s: %w", volumeID, storageID, err)
	}
	loc, status := resp.Header.Get("Location"), resp.StatusCode
	drain(resp)
	if status == http.StatusAccepted && loc != "" {
		if _, err := c.waitTask(loc, "deleting volume "+volumeID); err != nil {
			return err
		}
	}
	return nil
}
