package main

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/machinesim"
)

// machinesPath serves the simulated machines' state (with -netboot-dhcp).
const machinesPath = "/simulator/machines"

// machinesReport is the JSON of GET /simulator/machines.
type machinesReport struct {
	Machines []machineReport `json:"machines"`
}

type machineReport struct {
	SystemID   string `json:"system_id"`
	PowerState string `json:"power_state"`
	// BootMAC is the NIC the machine network-boots from (empty before its
	// first boot).
	BootMAC string       `json:"boot_mac,omitempty"`
	Boots   []bootReport `json:"boots"`
	// Installed is what its disk holds; null when empty.
	Installed *installReport `json:"installed"`
	Disk      diskReport     `json:"disk"`
}

type bootReport struct {
	Seq         uint64    `json:"seq"`
	Target      string    `json:"target"`
	Mode        string    `json:"mode"`
	LeaseIP     string    `json:"lease_ip,omitempty"`
	BootedFrom  string    `json:"booted_from,omitempty"`
	Installer   string    `json:"installer,omitempty"`
	Provisioned bool      `json:"provisioned"`
	Stages      []string  `json:"stages"`
	Error       string    `json:"error,omitempty"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
}

type installReport struct {
	Kind        string            `json:"kind"`
	Hostname    string            `json:"hostname"`
	InstanceID  string            `json:"instance_id,omitempty"`
	MachineID   string            `json:"machine_id,omitempty"`
	Kernel      string            `json:"kernel_sha256"`
	Initrd      string            `json:"initrd_sha256"`
	Addresses   []string          `json:"addresses"`
	Gateway     string            `json:"gateway,omitempty"`
	SSHKeys     []string          `json:"ssh_authorized_keys"`
	Configs     map[string]string `json:"configs"`
	Files       map[string]string `json:"files"`
	InstalledAt time.Time         `json:"installed_at"`
}

type diskReport struct {
	Installs int `json:"installs"`
	Wipes    int `json:"wipes"`
	Boots    int `json:"boots"`
}

// machinesHandler reports every system's simulated machine, behind the BMC
// credentials (basic auth).
func machinesHandler(sim *bmcsim.Simulator, fleet *machinesim.Fleet, user, password string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="metal-bmcsim"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(report(sim, fleet))
	})
}

func report(sim *bmcsim.Simulator, fleet *machinesim.Fleet) machinesReport {
	rep := machinesReport{Machines: []machineReport{}}
	for _, id := range sim.SystemIDs() {
		mr := machineReport{SystemID: id, Boots: []bootReport{}}
		if st, ok := sim.System(id); ok {
			mr.PowerState = st.PowerState
		}
		for _, rec := range fleet.Records(id) {
			b := bootReport{
				Seq: rec.Event.Seq, Target: rec.Event.Target, Mode: rec.Event.Mode,
				BootedFrom: rec.Result.BootedFrom, Installer: rec.Result.Installer,
				Provisioned: rec.Result.Provisioned, Stages: rec.Result.Stages,
				Start: rec.Start, End: rec.End,
			}
			if b.Stages == nil {
				b.Stages = []string{}
			}
			if rec.Result.LeaseIP.IsValid() {
				b.LeaseIP = rec.Result.LeaseIP.String()
			}
			if rec.Err != nil {
				b.Error = rec.Err.Error()
			}
			mr.Boots = append(mr.Boots, b)
			if len(rec.Event.MACs) > 0 {
				// A machine without a MAC of its own boots the first NIC.
				mr.BootMAC = strings.ToLower(rec.Event.MACs[0])
			}
		}
		if m := fleet.Machine(id); m != nil {
			if m.MAC != nil {
				mr.BootMAC = m.MAC.String()
			}
			if m.Disk != nil {
				mr.Disk.Installs, mr.Disk.Wipes, mr.Disk.Boots = m.Disk.Stats()
				if inst, ok := m.Disk.Installed(); ok {
					mr.Installed = &installReport{
						Kind: inst.Kind, Hostname: inst.Hostname, InstanceID: inst.InstanceID, MachineID: inst.MachineID,
						Kernel: inst.KernelSHA256, Initrd: inst.InitrdSHA256,
						Addresses: nonNil(inst.Network.Addresses), Gateway: inst.Network.Gateway,
						SSHKeys: nonNil(inst.SSHAuthorizedKeys), Configs: inst.Configs, Files: inst.Files,
						InstalledAt: inst.InstalledAt,
					}
				}
			}
		}
		rep.Machines = append(rep.Machines, mr)
	}
	return rep
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
