package api

import (
	"encoding/json"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// Duration is a time.Duration as a Go duration string on the wire.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

type versionInfo struct {
	APIVersion int    `json:"api_version"`
	Server     string `json:"server"`
}

type bmcRequest struct {
	BMC engine.BMC `json:"bmc"`
}

type bootOnceRequest struct {
	BMC      engine.BMC          `json:"bmc"`
	Override engine.BootOverride `json:"override"`
}

type renderRequest struct {
	BMC  engine.BMC           `json:"bmc"`
	MACs []string             `json:"macs"`
	Spec engine.ProvisionSpec `json:"spec"`
}

type powerRequest struct {
	BMC     engine.BMC          `json:"bmc"`
	Want    engine.PowerState   `json:"want"`
	Options engine.PowerOptions `json:"options"`
	Timeout Duration            `json:"timeout,omitempty"`
}

type provisionRequest struct {
	BMC     engine.BMC           `json:"bmc"`
	Spec    engine.ProvisionSpec `json:"spec"`
	Timeout Duration             `json:"timeout,omitempty"`
}

type deprovisionRequest struct {
	BMC     engine.BMC `json:"bmc"`
	Image   string     `json:"image"`
	Wipe    bool       `json:"wipe"`
	Timeout Duration   `json:"timeout,omitempty"`
}

type biosApplyRequest struct {
	BMC     engine.BMC         `json:"bmc"`
	Profile engine.BIOSProfile `json:"profile"`
	Timeout Duration           `json:"timeout,omitempty"`
}

type volumeRequest struct {
	BMC     engine.BMC        `json:"bmc"`
	Spec    engine.VolumeSpec `json:"spec"`
	Timeout Duration          `json:"timeout,omitempty"`
}

type volumeDeleteRequest struct {
	BMC       engine.BMC `json:"bmc"`
	StorageID string     `json:"storage_id"`
	VolumeID  string     `json:"volume_id"`
	Timeout   Duration   `json:"timeout,omitempty"`
}

type rolesApplyRequest struct {
	BMC       engine.BMC           `json:"bmc"`
	Selection engine.RoleSelection `json:"selection"`
	Timeout   Duration             `json:"timeout,omitempty"`
}

type rolesCheckRequest struct {
	Selection engine.RoleSelection `json:"selection"`
	Facts     engine.RoleFacts     `json:"facts"`
}

type acceptedResponse struct {
	Operation string `json:"operation"`
}

type operationResponse struct {
	ID         string          `json:"id"`
	Kind       string          `json:"kind"`
	State      string          `json:"state"`
	MachineID  string          `json:"machine_id,omitempty"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      *wireError      `json:"error,omitempty"`
}
