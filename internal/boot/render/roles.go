package render

import (
	"encoding/base64"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
	"github.com/composable-metal/terraform-provider-metal/internal/tmplfuncs"
)

// Agent installs the role agent on the machine (cloud-init and image kinds).
type Agent struct {
	// Credential authenticates the agent to the boot service. The boot
	// service derives it per request; it is never persisted with the vars.
	Credential string `json:"-"`
	// Generation is the desired role set's generation at install.
	Generation uint64
}

// KindsWithRoles lists the kinds whose install config can carry roles.
func KindsWithRoles() []Kind { return []Kind{KindCloudInit, KindImage} }

// RoleFacts are the machine facts role templates see as .machine.
func (v MachineVars) RoleFacts() roles.Facts {
	f := roles.Facts{MachineID: v.MachineID, Hostname: v.Hostname, MACs: v.MACs, BootMAC: v.BootMAC, Inventory: v.Inventory}
	if n, err := v.normalize(); err == nil {
		f.MACs, f.BootMAC = n.macs, n.bootMAC
		if n.prefix.IsValid() {
			f.IPAddress = n.prefix.Addr().String()
		}
	}
	return f
}

// DesiredRoles renders the machine's roles: what its agent must apply.
func (v MachineVars) DesiredRoles() (roles.Desired, error) {
	d := roles.Desired{MachineID: v.MachineID, Roles: []roles.Rendered{}}
	if v.Agent != nil {
		d.Generation = v.Agent.Generation
	}
	r, err := roles.Render(v.Roles, v.RoleFacts(), v.RoleValues)
	if err != nil {
		return d, err
	}
	d.Roles, d.Revision = r, roles.Revision(r)
	return d, nil
}

const agentUnit = `[Unit]
Description=terraform-provider-metal role agent
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=` + roles.DefaultBinaryPath + ` agent -config ` + roles.DefaultConfigPath + `
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
`

// agentUnitPath is where the install config puts the agent's service.
const agentUnitPath = "/etc/systemd/system/metal-agent.service"

// rolesCloudConfig is the #cloud-config that applies the roles at install
// (files, packages, scripts in order, each role's cloud_config fragment)
// and installs the agent with its state seeded, so it does not redo them.
func (n *normalized) rolesCloudConfig() ([]byte, error) {
	d, err := n.DesiredRoles()
	if err != nil {
		return nil, err
	}
	var files []any
	var packages []string
	var runcmd []any
	for _, r := range d.Roles {
		for _, f := range r.Files {
			wf := map[string]any{"path": f.Path, "content": f.Content, "permissions": f.Mode}
			if f.Owner != "" {
				wf["owner"] = f.Owner
			}
			files = append(files, wf)
		}
		for _, p := range r.Packages {
			if !slices.Contains(packages, p) {
				packages = append(packages, p)
			}
		}
		for i, s := range r.Scripts {
			// Scripts are files so their own #! lines work; cloud-init
			// runs runcmd in order, after packages.
			p := path.Join("/var/lib/metal-agent/install", r.Name, fmt.Sprintf("%02d", i))
			if !strings.HasPrefix(s, "#!") {
				s = "#!/bin/sh\n" + s
			}
			files = append(files, map[string]any{"path": p, "content": s, "permissions": "0700", "owner": "root:root"})
			runcmd = append(runcmd, []any{"env", "METAL_ROLE=" + r.Name, "METAL_MACHINE_ID=" + d.MachineID, p})
		}
	}
	cfg := map[string]any{}
	if n.Agent != nil {
		conf, err := tmplfuncs.JSONMarshal(roles.AgentConfig{Server: n.base, MachineID: n.MachineID, Credential: n.Agent.Credential})
		if err != nil {
			return nil, err
		}
		state, err := tmplfuncs.JSONMarshal(roles.SeedState(d))
		if err != nil {
			return nil, err
		}
		files = append(files,
			map[string]any{"path": roles.DefaultConfigPath, "content": string(conf) + "\n", "permissions": "0600", "owner": "root:root"},
			map[string]any{"path": roles.DefaultStatePath, "content": string(state) + "\n", "permissions": "0600", "owner": "root:root"},
			map[string]any{"path": agentUnitPath, "content": agentUnit, "permissions": "0644", "owner": "root:root"})
		bin, url := roles.DefaultBinaryPath, n.base+roles.PathBinary
		runcmd = append(runcmd, []any{"sh", "-c", "set -e; " +
			"curl -fsS --retry 10 -o " + bin + ".tmp " + shq(url) + " || wget -q -O " + bin + ".tmp " + shq(url) + "; " +
			"chmod 0755 " + bin + ".tmp; mv " + bin + ".tmp " + bin + "; " +
			"if command -v systemctl >/dev/null; then systemctl daemon-reload; systemctl enable --now metal-agent.service; fi"})
	}
	if len(files) > 0 {
		cfg["write_files"] = files
	}
	if len(packages) > 0 {
		cfg["packages"] = packages
	}
	if len(runcmd) > 0 {
		cfg["runcmd"] = runcmd
	}
	out, err := tmplfuncs.ToYAML(cfg)
	if err != nil {
		return nil, err
	}
	doc := []byte("#cloud-config\n" + out + "\n")
	for _, r := range d.Roles {
		if r.CloudConfig == "" {
			continue
		}
		if doc, err = mergeCloudConfigAs(doc, r.CloudConfig, "cloud_config"); err != nil {
			return nil, fmt.Errorf("role %q: cloud_config: %w", r.Name, err)
		}
	}
	return doc, nil
}

// agentData is what an image writer needs to set the agent up on the
// written system (image.env's METAL_AGENT_*): the binary's URL and the
// agent's config and seeded state, base64 JSON. Empty without an agent.
func (n *normalized) agentData() (map[string]any, error) {
	a := map[string]any{"binary_url": "", "config_b64": "", "state_b64": ""}
	if n.Agent == nil {
		return a, nil
	}
	d, err := n.DesiredRoles()
	if err != nil {
		return nil, err
	}
	conf, err := tmplfuncs.JSONMarshal(roles.AgentConfig{Server: n.base, MachineID: n.MachineID, Credential: n.Agent.Credential})
	if err != nil {
		return nil, err
	}
	state, err := tmplfuncs.JSONMarshal(roles.SeedState(d))
	if err != nil {
		return nil, err
	}
	a["binary_url"] = n.base + roles.PathBinary
	a["config_b64"] = base64.StdEncoding.EncodeToString(conf)
	a["state_b64"] = base64.StdEncoding.EncodeToString(state)
	return a, nil
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// checkRoles validates the role inputs of v.
func (n *normalized) checkRoles() error {
	if len(n.Roles) == 0 && n.Agent == nil {
		return nil
	}
	if !slices.Contains(KindsWithRoles(), n.Kind) {
		return invalid("roles", "an image of kind %s cannot carry roles: use kind cloud-init or image", n.Kind)
	}
	for _, r := range n.Roles {
		if err := roles.Validate(r); err != nil {
			return err
		}
	}
	return nil
}
