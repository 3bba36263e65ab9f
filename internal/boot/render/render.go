package render

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"

	"github.com/composable-metal/terraform-provider-metal/internal/tmplfuncs"
)

//go:embed templates/*.tmpl
var builtin embed.FS

// Template names besides the config names.
const (
	NameScript = "script.ipxe"
	NameWipe   = "wipe.ipxe"
)

// Config names.
const (
	ConfigUserData      = "user-data"
	ConfigMetaData      = "meta-data"
	ConfigNetworkConfig = "network-config"
	ConfigKickstart     = "kickstart"
	ConfigIgnition      = "ignition"
	ConfigImageEnv      = "image.env"
)

// ErrUnknownConfig is returned by Config for a name the kind does not have.
var ErrUnknownConfig = errors.New("render: no such config for this kind")

var builtinFile = map[string]string{
	NameScript:          "boot.ipxe.tmpl",
	NameWipe:            "boot.ipxe.tmpl",
	ConfigUserData:      "user-data.tmpl",
	ConfigMetaData:      "meta-data.tmpl",
	ConfigNetworkConfig: "network-config.tmpl",
	ConfigKickstart:     "kickstart.tmpl",
	ConfigIgnition:      "ignition.tmpl",
	ConfigImageEnv:      "image.env.tmpl",
}

// ConfigNames lists the config files a kind serves (under
// <base>/boot/<token>/config/<name>).
func ConfigNames(k Kind) []string {
	switch k {
	case KindCloudInit:
		return []string{ConfigUserData, ConfigMetaData, ConfigNetworkConfig}
	case KindKickstart:
		return []string{ConfigKickstart}
	case KindIgnition:
		return []string{ConfigIgnition}
	case KindImage:
		return []string{ConfigImageEnv, ConfigUserData, ConfigMetaData, ConfigNetworkConfig}
	}
	return nil
}

func templateNames(k Kind) []string {
	return append([]string{NameScript, NameWipe}, ConfigNames(k)...)
}

// DefaultTemplate returns the built-in template text for a name (a starting
// point for an override).
func DefaultTemplate(name string) (string, bool) {
	f, ok := builtinFile[name]
	if !ok {
		return "", false
	}
	b, err := builtin.ReadFile("templates/" + f)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// ContentType is the media type a config or script is served with.
func ContentType(name string) string {
	if name == ConfigIgnition {
		return "application/json"
	}
	// user-data may be multipart MIME; cloud-init does not look at the type.
	return "text/plain; charset=utf-8"
}

// localBoot: see the package documentation for the reasoning.
const localBoot = `#!ipxe
# composable-metal: boot from the local disk.
# BIOS: boot the first hard disk (INT 13h drive 0x80).
# UEFI: exit with an error status; the firmware continues with the next
# BootOrder entry, the installed disk.
iseq ${platform} efi && goto metal_efi ||
sanboot --no-describe --drive 0x80 ||
echo metal: booting drive 0x80 failed, returning to the firmware
:metal_efi
exit 1
`

// LocalBootScript is the script for a machine that must boot its installed
// system. It is the same for every machine and carries no data.
func LocalBootScript() []byte { return []byte(localBoot) }

// IPXEScript renders the machine's install script: fetch the kernel (with
// initrd=initrd on its command line, which the EFI stub of kernels without
// LoadFile2 initrd support needs) and initrd with retries, report the
// "booting" stage, boot. Kind ipxe renders the "script.ipxe" override or,
// without one, returns UserData verbatim.
func IPXEScript(v MachineVars) ([]byte, error) {
	n, err := v.normalize()
	if err != nil {
		return nil, err
	}
	if n.Kind == KindIPXE {
		if _, ok := n.Templates[NameScript]; !ok {
			if !strings.HasPrefix(n.UserData, "#!ipxe") {
				return nil, &ValidationError{Field: "user_data", Reason: `kind ipxe needs a "script.ipxe" template or user_data starting with #!ipxe`}
			}
			return []byte(n.UserData), nil
		}
	}
	d := n.data()
	d["action"] = "install"
	return n.script(NameScript, d)
}

// WipeScript renders the deprovisioning script: it boots the same kernel
// and initrd with metal.action=wipe, metal.device, metal.events and
// metal.provisioned on the command line; the installer erases the device
// and reports completion on the provisioned URL.
func WipeScript(v MachineVars) ([]byte, error) {
	n, err := v.normalize()
	if err != nil {
		return nil, err
	}
	if n.Image.KernelSHA256 == "" || n.Image.InitrdSHA256 == "" {
		return nil, &ValidationError{Field: "image", Reason: "wiping needs a kernel and an initrd"}
	}
	d := n.data()
	d["action"] = "wipe"
	args := []string{"metal.action=wipe"}
	if n.RootDevice != "" {
		args = append(args, "metal.device="+n.RootDevice)
	}
	args = append(args,
		"metal.events="+TokenURL(n.base, n.Token, PathEvents),
		"metal.provisioned="+TokenURL(n.base, n.Token, PathProvisioned))
	d["install_args"] = args
	return n.script(NameWipe, d)
}

func (n *normalized) script(name string, d map[string]any) ([]byte, error) {
	out, err := n.execute(name, d)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(out, []byte("#!ipxe")) {
		return nil, fmt.Errorf("render %s: output does not start with #!ipxe", name)
	}
	return out, nil
}

// Config renders one install config of the machine's kind. user_data is
// merged into the rendered base (built-in or override) as described on
// MachineVars.UserData.
func Config(v MachineVars, name string) ([]byte, error) {
	n, err := v.normalize()
	if err != nil {
		return nil, err
	}
	if !slices.Contains(ConfigNames(n.Kind), name) {
		return nil, fmt.Errorf("%w: %q (kind %s has %v)", ErrUnknownConfig, name, n.Kind, ConfigNames(n.Kind))
	}
	d := n.data()
	d["action"] = "install"
	if name == ConfigImageEnv {
		a, err := n.agentData()
		if err != nil {
			return nil, err
		}
		d["agent"] = a
	}
	hasRoles := len(n.Roles) > 0 || n.Agent != nil
	if n.Kind == KindIgnition {
		ign := ignitionBase(n)
		if hasRoles {
			if err := n.rolesIgnition(ign); err != nil {
				return nil, err
			}
		}
		d["ignition"] = ign
	}
	d["roles_post"] = ""
	if hasRoles && name == ConfigKickstart {
		post, err := n.rolesKickstart()
		if err != nil {
			return nil, err
		}
		d["roles_post"] = post
	}
	out, err := n.execute(name, d)
	if err != nil {
		return nil, err
	}
	switch name {
	case ConfigUserData:
		if hasRoles {
			r, rerr := n.rolesCloudConfig()
			if rerr != nil {
				return nil, rerr
			}
			if out, err = MergeUserData(out, string(r)); err != nil {
				return nil, fmt.Errorf("render %s: roles: %w", name, err)
			}
		}
		out, err = MergeUserData(out, n.UserData)
	case ConfigKickstart:
		if n.UserData != "" {
			out = append(out, "\n# user_data\n"...)
			out = append(out, n.UserData...)
			if !bytes.HasSuffix(out, []byte("\n")) {
				out = append(out, '\n')
			}
		}
	case ConfigIgnition:
		out, err = finishIgnition(out, n.UserData)
	}
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return out, nil
}

// Files renders the script and every config of the machine's kind, keyed by
// name: what the machine will fetch, for plan-time display and diffs.
func Files(v MachineVars) (map[string][]byte, error) {
	s, err := IPXEScript(v)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{NameScript: s}
	for _, name := range ConfigNames(v.Kind) {
		b, err := Config(v, name)
		if err != nil {
			return nil, err
		}
		files[name] = b
	}
	return files, nil
}

func (n *normalized) execute(name string, data map[string]any) ([]byte, error) {
	text, ok := n.Templates[name]
	if !ok {
		if text, ok = DefaultTemplate(name); !ok {
			return nil, fmt.Errorf("render: no template %q", name)
		}
	}
	t, err := template.New(name).Option("missingkey=error").Funcs(tmplfuncs.Funcs()).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	out := buf.Bytes()
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\n")) {
		out = append(out, '\n')
	}
	return out, nil
}

// finishIgnition validates the rendered JSON, merges user_data (which must
// be an Ignition config) as a child config through ignition.config.merge,
// and indents the result.
func finishIgnition(out []byte, userData string) ([]byte, error) {
	if userData != "" {
		if !json.Valid([]byte(userData)) {
			return nil, &ValidationError{Field: "user_data", Reason: "kind ignition needs user_data to be an Ignition JSON config"}
		}
		var cfg map[string]any
		if err := json.Unmarshal(out, &cfg); err != nil {
			return nil, fmt.Errorf("rendered Ignition is not a JSON object: %w", err)
		}
		ign, _ := cfg["ignition"].(map[string]any)
		if ign == nil {
			return nil, errors.New(`rendered Ignition has no "ignition" object`)
		}
		c, _ := ign["config"].(map[string]any)
		if c == nil {
			c = map[string]any{}
			ign["config"] = c
		}
		merge, _ := c["merge"].([]any)
		c["merge"] = append(merge, map[string]any{"source": "data:;base64," + b64(userData)})
		b, err := tmplfuncs.JSONMarshal(cfg)
		if err != nil {
			return nil, err
		}
		out = b
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(out), "", "  "); err != nil {
		return nil, fmt.Errorf("rendered Ignition is not valid JSON: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}
