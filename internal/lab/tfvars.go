package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// TFVarsFile is the file in Dir with what a Terraform configuration needs
// to use the running lab (examples/quickstart reads it). It is a valid
// -var-file too: its one top-level key is the variable "lab".
const TFVarsFile = "terraform.tfvars.json"

// TFLab is the "lab" value in TFVarsFile, shaped like the provider's and
// resources' arguments.
type TFLab struct {
	Namespace   string               `json:"namespace"`
	BMCUsername string               `json:"bmc_username"`
	BMCPassword string               `json:"bmc_password"`
	BMCCAFile   string               `json:"bmc_ca_file"`
	BootService TFBootService        `json:"boot_service"`
	OSImage     TFOSImage            `json:"os_image"`
	Machines    map[string]TFMachine `json:"machines"`
}

// TFBootService is the provider's boot_service block for the lab.
type TFBootService struct {
	Address    string `json:"address"`
	Interface  string `json:"interface"`
	HTTPListen string `json:"http_listen"`
	StateDir   string `json:"state_dir"`
	DHCP       TFDHCP `json:"dhcp"`
}

// TFDHCP is boot_service.dhcp.
type TFDHCP struct {
	Mode       string `json:"mode"`
	Listen     string `json:"listen"`
	Subnet     string `json:"subnet"`
	RangeStart string `json:"range_start"`
	RangeEnd   string `json:"range_end"`
}

// TFOSImage is a metal_os_image of kind image, plus the root_device its
// machines install to.
type TFOSImage struct {
	Install    string     `json:"install"`
	Kernel     TFArtifact `json:"kernel"`
	Initrd     TFArtifact `json:"initrd"`
	Image      TFArtifact `json:"image"`
	KernelArgs []string   `json:"kernel_args"`
	RootDevice string     `json:"root_device"`
}

// TFArtifact is a metal_os_image file.
type TFArtifact struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
}

// TFMachine is one lab VM's BMC and identity.
type TFMachine struct {
	Firmware  Firmware `json:"firmware"`
	Endpoint  string   `json:"endpoint"`
	SystemID  string   `json:"system_id"`
	MAC       string   `json:"mac"`
	SerialLog string   `json:"serial_log"`
}

// TFVars turns the manifest into TFVarsFile's "lab" value, hashing the
// installer's files.
func (m Manifest) TFVars() (TFLab, error) {
	b := m.Boot
	out := TFLab{
		Namespace: m.Namespace, BMCUsername: "admin", BMCPassword: "password", BMCCAFile: m.CAFile,
		BootService: TFBootService{
			Address: b.Address.String(), Interface: b.Interface, HTTPListen: b.HTTPListen, StateDir: b.StateDir,
			DHCP: TFDHCP{
				Mode: b.DHCP.Mode, Listen: b.DHCP.Listen, Subnet: b.DHCP.Subnet.String(),
				RangeStart: b.DHCP.RangeStart.String(), RangeEnd: b.DHCP.RangeEnd.String(),
			},
		},
		OSImage:  TFOSImage{Install: m.Image.Kind, KernelArgs: m.Image.KernelArgs, RootDevice: "/dev/vda"},
		Machines: map[string]TFMachine{},
	}
	if m.Image.Image == nil {
		return out, fmt.Errorf("the lab's OS image has no disk image")
	}
	for _, a := range []struct {
		url string
		dst *TFArtifact
	}{{m.Image.Kernel.URL, &out.OSImage.Kernel}, {m.Image.Initrd.URL, &out.OSImage.Initrd}, {m.Image.Image.URL, &out.OSImage.Image}} {
		sum, err := fileSHA256(strings.TrimPrefix(a.url, "file://"))
		if err != nil {
			return out, err
		}
		*a.dst = TFArtifact{URL: a.url, SHA256: sum}
	}
	for _, x := range m.Machines {
		out.Machines[x.Name] = TFMachine{Firmware: x.Firmware, Endpoint: x.Endpoint, SystemID: x.SystemID, MAC: x.MAC, SerialLog: x.SerialLog}
	}
	return out, nil
}

// WriteTFVars writes TFVarsFile into dir.
func (m Manifest) WriteTFVars(dir string) error {
	v, err := m.TFVars()
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(map[string]TFLab{"lab": v}, "", "  ")
	tmp := filepath.Join(dir, TFVarsFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, TFVarsFile))
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
