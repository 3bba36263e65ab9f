package render

import (
	"encoding/base64"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
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
func KindsWithRoles() []Kind { return []Kind{KindCloudInit, KindImage, KindKickstart, KindIgnition} }

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

// installFile is a file the install config writes.
type installFile struct {
	path, content, mode, owner string
}

// installScript is a role script to run once at install, in order.
type installScript struct {
	role, path string
}

// Where install-time scripts and their results live (see roles.InstallDir).
var (
	installDir    = roles.DefaultInstallDir
	installRunner = path.Join(installDir, roles.InstallRunner)
)

// argv is the command that runs the script through the install runner.
func (sc installScript) argv(machineID string) []string {
	return []string{"env", "METAL_ROLE=" + sc.role, "METAL_MACHINE_ID=" + machineID, installRunner, sc.role, sc.path}
}

// rolesInstall is what an install config must do for the machine's roles,
// whatever its syntax: write files, install packages, run scripts in
// order, and set the agent up with its state seeded (so it does not redo
// what the install did).
type rolesInstall struct {
	desired  roles.Desired
	files    []installFile
	packages []string
	scripts  []installScript
	// agentFiles are the agent's config, seeded state and unit; binaryURL
	// where the agent binary comes from ("" without an agent).
	agentFiles []installFile
	binaryURL  string
}

func (n *normalized) rolesInstall() (*rolesInstall, error) {
	d, err := n.DesiredRoles()
	if err != nil {
		return nil, err
	}
	in := &rolesInstall{desired: d}
	for _, r := range d.Roles {
		if r.CloudConfig != "" && n.Kind != KindCloudInit && n.Kind != KindImage {
			return nil, invalid("roles", "role %q has a cloud_config, which an install of kind %s does not read: use files and scripts", r.Name, n.Kind)
		}
		for _, f := range r.Files {
			in.files = append(in.files, installFile{f.Path, f.Content, f.Mode, f.Owner})
		}
		for _, p := range r.Packages {
			if !slices.Contains(in.packages, p) {
				in.packages = append(in.packages, p)
			}
		}
		for i, script := range r.Scripts {
			// Scripts are files so their own #! lines work.
			p := path.Join(installDir, r.Name, fmt.Sprintf("%02d", i))
			if !strings.HasPrefix(script, "#!") {
				script = "#!/bin/sh\n" + script
			}
			in.files = append(in.files, installFile{p, script, "0700", "root:root"})
			in.scripts = append(in.scripts, installScript{r.Name, p})
		}
	}
	if len(in.scripts) > 0 {
		in.files = append(in.files, installFile{installRunner, roles.InstallRunnerScript, "0700", "root:root"})
	}
	if n.Agent != nil {
		conf, err := tmplfuncs.JSONMarshal(roles.AgentConfig{Server: n.base, MachineID: n.MachineID, Credential: n.Agent.Credential})
		if err != nil {
			return nil, err
		}
		state, err := tmplfuncs.JSONMarshal(roles.SeedState(d))
		if err != nil {
			return nil, err
		}
		in.agentFiles = []installFile{
			{roles.DefaultConfigPath, string(conf) + "\n", "0600", "root:root"},
			{roles.DefaultStatePath, string(state) + "\n", "0600", "root:root"},
			{agentUnitPath, agentUnit, "0644", "root:root"},
		}
		in.binaryURL = n.base + roles.PathBinary
	}
	return in, nil
}

// fetchAgent is the shell that downloads the agent binary.
func (in *rolesInstall) fetchAgent() string {
	bin := roles.DefaultBinaryPath
	return "curl -fsS --retry 10 -o " + bin + ".tmp " + shq(in.binaryURL) + " || wget -q -O " + bin + ".tmp " + shq(in.binaryURL) + "; " +
		"chmod 0755 " + bin + ".tmp && mv " + bin + ".tmp " + bin
}

// rolesCloudConfig is the #cloud-config that applies the roles at install
// (write_files, packages, runcmd in order, each role's cloud_config
// fragment) and installs the agent.
func (n *normalized) rolesCloudConfig() ([]byte, error) {
	in, err := n.rolesInstall()
	if err != nil {
		return nil, err
	}
	var files, runcmd []any
	for _, f := range append(slices.Clone(in.files), in.agentFiles...) {
		wf := map[string]any{"path": f.path, "content": f.content, "permissions": f.mode}
		if f.owner != "" {
			wf["owner"] = f.owner
		}
		files = append(files, wf)
	}
	for _, sc := range in.scripts {
		// cloud-init runs runcmd in order, after packages.
		var argv []any
		for _, a := range sc.argv(n.MachineID) {
			argv = append(argv, a)
		}
		runcmd = append(runcmd, argv)
	}
	if in.binaryURL != "" {
		runcmd = append(runcmd, []any{"sh", "-c", "set -e; " + in.fetchAgent() + "; " +
			"if command -v systemctl >/dev/null; then systemctl daemon-reload; systemctl enable --now metal-agent.service; fi"})
	}
	cfg := map[string]any{}
	if len(files) > 0 {
		cfg["write_files"] = files
	}
	if len(in.packages) > 0 {
		cfg["packages"] = in.packages
	}
	if len(runcmd) > 0 {
		cfg["runcmd"] = runcmd
	}
	out, err := tmplfuncs.ToYAML(cfg)
	if err != nil {
		return nil, err
	}
	doc := []byte("#cloud-config\n" + out + "\n")
	for _, r := range in.desired.Roles {
		if r.CloudConfig == "" {
			continue
		}
		if doc, err = mergeCloudConfigAs(doc, r.CloudConfig, "cloud_config"); err != nil {
			return nil, fmt.Errorf("role %q: cloud_config: %w", r.Name, err)
		}
	}
	return doc, nil
}

// rolesKickstart is the shell of a kickstart %post section (run in the
// installed system) that applies the roles and installs the agent. File
// contents travel base64-encoded, so no content can break the script.
func (n *normalized) rolesKickstart() (string, error) {
	in, err := n.rolesInstall()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(`# composable-metal roles: files, packages, scripts in order, the agent.
metal_file() { # path mode owner base64
	mkdir -p "$(dirname "$1")" &&
	echo "$4" | base64 -d > "$1.metal-tmp" &&
	chmod "$2" "$1.metal-tmp" &&
	{ [ -z "$3" ] || chown "$3" "$1.metal-tmp"; } &&
	mv -f "$1.metal-tmp" "$1"
}
`)
	for _, f := range append(slices.Clone(in.files), in.agentFiles...) {
		fmt.Fprintf(&b, "metal_file %s %s %s %s\n", shq(f.path), f.mode, shq(f.owner), b64(f.content))
	}
	if len(in.packages) > 0 {
		q := make([]string, len(in.packages))
		for i, p := range in.packages {
			q[i] = shq(p)
		}
		pkgs := strings.Join(q, " ")
		fmt.Fprintf(&b, "dnf -y install %s || yum -y install %s\n", pkgs, pkgs)
	}
	for _, sc := range in.scripts {
		q := sc.argv(n.MachineID)
		for i := range q {
			q[i] = shWord(q[i])
		}
		b.WriteString(strings.Join(q, " ") + "\n")
	}
	if in.binaryURL != "" {
		b.WriteString(in.fetchAgent() + "\n")
		b.WriteString("systemctl enable metal-agent.service\n")
	}
	return b.String(), nil
}

// rolesIgnition adds the roles and the agent to an Ignition config: files
// (with their owners), the role scripts run once by a oneshot unit before
// the provisioned report, the agent binary fetched by Ignition itself.
// Ignition cannot install packages (CoreOS layers them with rpm-ostree).
func (n *normalized) rolesIgnition(cfg map[string]any) error {
	in, err := n.rolesInstall()
	if err != nil {
		return err
	}
	if len(in.packages) > 0 {
		return invalid("roles", "install kind ignition cannot install packages (%s): CoreOS layers them with rpm-ostree; do that in a role script instead", strings.Join(in.packages, ", "))
	}
	storage, ok1 := cfg["storage"].(map[string]any)
	systemd, ok2 := cfg["systemd"].(map[string]any)
	if !ok1 || !ok2 {
		return errors.New("the built-in Ignition config has no storage or systemd section")
	}
	files, _ := storage["files"].([]any)
	var chowns []string
	for _, f := range append(slices.Clone(in.files), in.agentFiles...) {
		mode, err := strconv.ParseUint(f.mode, 8, 32)
		if err != nil {
			return invalid("roles", "file %s: mode %q is not octal", f.path, f.mode)
		}
		files = append(files, ignFile(f.path, f.content, int(mode)))
		// Ignition fails the boot on an owner it cannot resolve (a user a
		// role's package or script creates later), so files are written as
		// root and handed over at first boot.
		if f.owner != "" && f.owner != "root" && f.owner != "root:root" {
			chowns = append(chowns, fmt.Sprintf("ExecStart=/usr/bin/chown %s %s\n", systemdEscape(f.owner), systemdEscape(f.path)))
		}
	}
	units, _ := systemd["units"].([]any)
	if len(in.scripts) > 0 || len(chowns) > 0 {
		var exec strings.Builder
		for _, c := range chowns {
			exec.WriteString(c)
		}
		for _, sc := range in.scripts {
			q := sc.argv(n.MachineID)
			q[0] = "/usr/bin/env"
			for i := range q {
				q[i] = systemdEscape(q[i])
			}
			// "-": a failure is recorded by the runner (and reported by the
			// agent); the unit goes on so it is marked done and a reboot
			// does not run the scripts again.
			exec.WriteString("ExecStart=-" + strings.Join(q, " ") + "\n")
		}
		units = append(units, map[string]any{"name": "metal-roles-install.service", "enabled": true, "contents": `[Unit]
Description=Apply composable-metal roles once, at install
Wants=network-online.target
After=network-online.target
Before=metal-provisioned.service
ConditionPathExists=!/var/lib/metal-agent/installed

[Service]
Type=oneshot
RemainAfterExit=yes
` + exec.String() + `ExecStartPost=/usr/bin/touch /var/lib/metal-agent/installed

[Install]
WantedBy=multi-user.target
`})
	}
	if in.binaryURL != "" {
		files = append(files, map[string]any{
			"path": roles.DefaultBinaryPath, "mode": 0o755, "overwrite": true,
			"contents": map[string]any{"source": in.binaryURL},
		})
		units = append(units, map[string]any{"name": "metal-agent.service", "enabled": true, "contents": agentUnit})
	}
	storage["files"] = files
	systemd["units"] = units
	return nil
}

// agentData is what an image writer needs to set the agent up on the
// written system (image.env's METAL_AGENT_*): the binary's URL and the
// agent's config and seeded state, base64 JSON. Empty without an agent.
func (n *normalized) agentData() (map[string]any, error) {
	a := map[string]any{"binary_url": "", "config_b64": "", "state_b64": ""}
	if n.Agent == nil {
		return a, nil
	}
	in, err := n.rolesInstall()
	if err != nil {
		return nil, err
	}
	a["binary_url"] = in.binaryURL
	a["config_b64"] = base64.StdEncoding.EncodeToString([]byte(strings.TrimSuffix(in.agentFiles[0].content, "\n")))
	a["state_b64"] = base64.StdEncoding.EncodeToString([]byte(strings.TrimSuffix(in.agentFiles[1].content, "\n")))
	return a, nil
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// shWord is s as one shell word: as is when nothing in it is special.
func shWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:@+,") == "" {
		return s
	}
	return shq(s)
}

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
