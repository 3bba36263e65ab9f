package redfish

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/stmcginnis/gofish/schemas"
)

// PowerState is the Redfish PowerState of a system.
type PowerState string

const (
	PowerOn          PowerState = "On"
	PowerOff         PowerState = "Off"
	PowerPoweringOn  PowerState = "PoweringOn"
	PowerPoweringOff PowerState = "PoweringOff"
)

// NIC is one EthernetInterface of a system.
type NIC struct {
	ID         string `json:"id"`
	MAC        string `json:"mac"`
	LinkStatus string `json:"link_status"`
	LinkUp     bool   `json:"link_up"`
}

// Inventory is what a machine refresh reads from its BMC.
type Inventory struct {
	SystemID     string     `json:"system_id"`
	Path         string     `json:"path"`
	UUID         string     `json:"uuid"`
	Manufacturer string     `json:"manufacturer"`
	Model        string     `json:"model"`
	SerialNumber string     `json:"serial_number"`
	BIOSVersion  string     `json:"bios_version"`
	CPUCount     int        `json:"cpu_count"`
	CPUModel     string     `json:"cpu_model"`
	MemoryGiB    float64    `json:"memory_gib"`
	NICs         []NIC      `json:"nics"`
	PowerState   PowerState `json:"power_state"`
	BootMode     string     `json:"boot_mode"`
}

// FirstLinkedMAC is the MAC of the first NIC with link, else of the first NIC.
func (inv *Inventory) FirstLinkedMAC() string {
	for _, n := range inv.NICs {
		if n.LinkUp && n.MAC != "" {
			return n.MAC
		}
	}
	for _, n := range inv.NICs {
		if n.MAC != "" {
			return n.MAC
		}
	}
	return ""
}

// SystemSummary is one entry of a BMC's Systems collection.
type SystemSummary struct {
	ID           string     `json:"id"`
	Path         string     `json:"path"`
	Name         string     `json:"name"`
	UUID         string     `json:"uuid"`
	Manufacturer string     `json:"manufacturer"`
	Model        string     `json:"model"`
	SerialNumber string     `json:"serial_number"`
	PowerState   PowerState `json:"power_state"`
}

type link struct {
	ODataID string `json:"@odata.id"`
}

// systemDoc is the subset of ComputerSystem we read, tolerant of expanded
// and unexpanded navigation properties.
type systemDoc struct {
	ODataID          string `json:"@odata.id"`
	ODataEtag        string `json:"@odata.etag"`
	ID               string `json:"Id"`
	Name             string `json:"Name"`
	UUID             string `json:"UUID"`
	Manufacturer     string `json:"Manufacturer"`
	Model            string `json:"Model"`
	SerialNumber     string `json:"SerialNumber"`
	BiosVersion      string `json:"BiosVersion"`
	PowerState       string `json:"PowerState"`
	ProcessorSummary struct {
		Count int    `json:"Count"`
		Model string `json:"Model"`
	} `json:"ProcessorSummary"`
	MemorySummary struct {
		TotalSystemMemoryGiB float64 `json:"TotalSystemMemoryGiB"`
	} `json:"MemorySummary"`
	Boot struct {
		Target         string   `json:"BootSourceOverrideTarget"`
		Enabled        string   `json:"BootSourceOverrideEnabled"`
		Mode           string   `json:"BootSourceOverrideMode"`
		AllowedTargets []string `json:"BootSourceOverrideTarget@Redfish.AllowableValues"`
	} `json:"Boot"`
	EthernetInterfaces *collectionDoc `json:"EthernetInterfaces"`
}

type collectionDoc struct {
	ODataID string            `json:"@odata.id"`
	Members []json.RawMessage `json:"Members"`
}

type nicDoc struct {
	ODataID             string `json:"@odata.id"`
	ID                  string `json:"Id"`
	MACAddress          string `json:"MACAddress"`
	PermanentMACAddress string `json:"PermanentMACAddress"`
	LinkStatus          string `json:"LinkStatus"`
	Status              struct {
		State string `json:"State"`
	} `json:"Status"`
}

// snapshot is one read of the system: our view plus gofish's typed object
// (for actions), and the ETag for conditional PATCH.
type snapshot struct {
	doc  systemDoc
	sys  *schemas.ComputerSystem
	etag string
}

func (s *snapshot) power() PowerState { return PowerState(s.doc.PowerState) }

// SystemPath resolves the system this client manages: the configured id,
// else the only member of the Systems collection.
func (c *Client) SystemPath() (string, error) {
	c.s.mu.Lock()
	id := c.s.cfg.SystemID
	c.s.mu.Unlock()
	if id != "" {
		return systemPath(id), nil
	}
	members, err := c.systemMembers()
	if err != nil {
		return "", err
	}
	switch len(members) {
	case 0:
		return "", &opError{kind: ErrNotFound, msg: "the BMC lists no systems"}
	case 1:
		id = path.Base(members[0])
		c.s.mu.Lock()
		c.s.cfg.SystemID = id
		c.s.mu.Unlock()
		return members[0], nil
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = path.Base(m)
	}
	return "", &AmbiguousSystemError{IDs: ids}
}

func (c *Client) systemMembers() ([]string, error) {
	var coll collectionDoc
	if err := c.getJSON(systemsPath, &coll); err != nil {
		return nil, fmt.Errorf("listing systems: %w", err)
	}
	out := make([]string, 0, len(coll.Members))
	for _, m := range coll.Members {
		var l link
		if err := json.Unmarshal(m, &l); err != nil || l.ODataID == "" {
			continue
		}
		out = append(out, strings.TrimRight(l.ODataID, "/"))
	}
	return out, nil
}

// Systems lists every system the BMC manages.
func (c *Client) Systems() ([]SystemSummary, error) {
	members, err := c.systemMembers()
	if err != nil {
		return nil, err
	}
	out := make([]SystemSummary, 0, len(members))
	for _, m := range members {
		snap, err := c.fetchSystem(m, "")
		if err != nil {
			return nil, err
		}
		d := snap.doc
		out = append(out, SystemSummary{
			ID: firstNonEmpty(d.ID, path.Base(m)), Path: m, Name: d.Name, UUID: d.UUID,
			Manufacturer: d.Manufacturer, Model: d.Model, SerialNumber: d.SerialNumber,
			PowerState: PowerState(d.PowerState),
		})
	}
	return out, nil
}

// Inventory reads the system with as few requests as the BMC allows: one
// expanded GET where $expand is supported, else the NIC collection too.
func (c *Client) Inventory() (*Inventory, error) {
	p, err := c.SystemPath()
	if err != nil {
		return nil, err
	}
	snap, err := c.fetchExpanded(p)
	if err != nil {
		return nil, err
	}
	nics, err := c.nics(snap.doc.EthernetInterfaces)
	if err != nil {
		return nil, err
	}
	return snap.inventory(p, nics), nil
}

func (s *snapshot) inventory(p string, nics []NIC) *Inventory {
	d := s.doc
	return &Inventory{
		SystemID:     firstNonEmpty(d.ID, path.Base(p)),
		Path:         p,
		UUID:         d.UUID,
		Manufacturer: d.Manufacturer,
		Model:        d.Model,
		SerialNumber: d.SerialNumber,
		BIOSVersion:  d.BiosVersion,
		CPUCount:     d.ProcessorSummary.Count,
		CPUModel:     d.ProcessorSummary.Model,
		MemoryGiB:    d.MemorySummary.TotalSystemMemoryGiB,
		NICs:         nics,
		PowerState:   PowerState(d.PowerState),
		BootMode:     d.Boot.Mode,
	}
}

// fetchExpanded GETs the system asking for its subordinate resources inline.
// A BMC that refuses the query (400/501) is asked again without it, and the
// answer is remembered for this client.
func (c *Client) fetchExpanded(p string) (*snapshot, error) {
	queries := []string{2: "$expand=.($levels=2)", 1: "$expand=.", 0: ""}
	level := 2
	if known := int(c.s.quirks.expandLevels.Load()); known >= 0 {
		level = min(known, 2)
	}
	for ; ; level-- {
		snap, err := c.fetchSystem(p, queries[level])
		if err == nil {
			c.s.quirks.expandLevels.Store(int32(level))
			return snap, nil
		}
		var se *StatusError
		if level == 0 || !errors.As(err, &se) || (se.Status != http.StatusBadRequest && se.Status != http.StatusNotImplemented) {
			return nil, err
		}
	}
}

func (c *Client) fetchSystem(p, query string) (*snapshot, error) {
	uri := p
	if query != "" {
		uri += "?" + query
	}
	resp, err := c.send(http.MethodGet, uri, nil, nil, sendOpts{})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, &opError{kind: ErrNotFound, msg: fmt.Sprintf("system %s is not on the BMC", path.Base(p)), err: err}
		}
		return nil, err
	}
	defer drain(resp)
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return nil, fmt.Errorf("decoding system %s: %w", p, err)
	}
	snap := &snapshot{}
	if err := json.Unmarshal(raw, &snap.doc); err != nil {
		return nil, fmt.Errorf("decoding system %s: %w", p, err)
	}
	sys := &schemas.ComputerSystem{}
	if err := json.Unmarshal(raw, sys); err != nil {
		return nil, fmt.Errorf("decoding system %s: %w", p, err)
	}
	sys.SetClient(c)
	snap.sys = sys
	snap.etag = firstNonEmpty(resp.Header.Get("ETag"), snap.doc.ODataEtag)
	return snap, nil
}

// nics returns the NICs from an expanded collection, fetching whatever the
// BMC left as links.
func (c *Client) nics(coll *collectionDoc) ([]NIC, error) {
	if coll == nil || (coll.ODataID == "" && coll.Members == nil) {
		return nil, nil
	}
	members := coll.Members
	if members == nil || (linksOnly(members) && len(members) > 1) {
		// One expanded collection GET beats a GET per member; a BMC that
		// refuses the query gets the plain collection.
		var full collectionDoc
		err := c.getJSON(coll.ODataID+"?$expand=.", &full)
		var se *StatusError
		if errors.As(err, &se) && (se.Status == http.StatusBadRequest || se.Status == http.StatusNotImplemented) {
			err = c.getJSON(coll.ODataID, &full)
		}
		if err != nil {
			return nil, fmt.Errorf("listing NICs: %w", err)
		}
		members = full.Members
	}
	out := make([]NIC, 0, len(members))
	for _, m := range members {
		var d nicDoc
		if err := json.Unmarshal(m, &d); err != nil {
			return nil, fmt.Errorf("decoding a NIC: %w", err)
		}
		if d.MACAddress == "" && d.PermanentMACAddress == "" && d.ODataID != "" {
			if err := c.getJSON(d.ODataID, &d); err != nil {
				return nil, fmt.Errorf("reading NIC %s: %w", path.Base(d.ODataID), err)
			}
		}
		mac := strings.ToLower(firstNonEmpty(d.MACAddress, d.PermanentMACAddress))
		out = append(out, NIC{
			ID:         firstNonEmpty(d.ID, path.Base(strings.TrimRight(d.ODataID, "/"))),
			MAC:        mac,
			LinkStatus: d.LinkStatus,
			LinkUp:     d.LinkStatus == "LinkUp",
		})
	}
	return out, nil
}

// linksOnly is true when collection members are bare @odata.id references.
func linksOnly(members []json.RawMessage) bool {
	for _, m := range members {
		var fields map[string]json.RawMessage
		if json.Unmarshal(m, &fields) != nil || len(fields) > 1 {
			return false
		}
	}
	return true
}

func (c *Client) getJSON(uri string, v any) error {
	resp, err := c.send(http.MethodGet, uri, nil, nil, sendOpts{})
	if err != nil {
		return err
	}
	defer drain(resp)
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decoding %s: %w", pathOnly(uri), err)
	}
	return nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
