package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const (
	testToken  = "tok_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	kernelSum  = "1111111111111111111111111111111111111111111111111111111111111111"
	initrdSum  = "2222222222222222222222222222222222222222222222222222222222222222"
	imageSum   = "3333333333333333333333333333333333333333333333333333333333333333"
	testSSHKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbNbLvPpWJbC6hD7yD5n0dkS9eK1tV3k0S3dp3L0pXW admin@example.com"
)

func vars(kind Kind) MachineVars {
	return MachineVars{
		MachineID:         "rack1-node07",
		Hostname:          "node07.example.com",
		MACs:              []string{"52:54:00:AA:BB:01", "52-54-00-aa-bb-02"},
		BootMAC:           "52:54:00:aa:bb:01",
		Network:           Network{Address: "192.0.2.17/24", Gateway: "192.0.2.1", DNS: []string{"192.0.2.53", "2001:db8::53"}, SearchDomains: []string{"example.com"}},
		SSHAuthorizedKeys: []string{testSSHKey},
		RootDevice:        "/dev/disk/by-path/pci-0000:00:1f.2-ata-1",
		KernelArgs:        []string{"console=ttyS0,115200n8", "quiet"},
		BaseURL:           "http://192.0.2.1:8080/",
		Token:             testToken,
		Image:             Image{KernelSHA256: kernelSum, InitrdSHA256: initrdSum, ImageSHA256: imageSum},
		Kind:              kind,
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (go test -update rewrites it)\n--- got ---\n%s\n--- want ---\n%s", name, path, got, want)
	}
}

func must(t *testing.T) func([]byte, error) []byte {
	return func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func TestGoldenScripts(t *testing.T) {
	for _, k := range []Kind{KindCloudInit, KindKickstart, KindIgnition, KindImage} {
		t.Run(string(k), func(t *testing.T) {
			golden(t, "script-"+string(k)+".ipxe", must(t)(IPXEScript(vars(k))))
		})
	}
	t.Run("wipe", func(t *testing.T) {
		golden(t, "wipe.ipxe", must(t)(WipeScript(vars(KindImage))))
	})
	t.Run("local", func(t *testing.T) {
		golden(t, "local.ipxe", LocalBootScript())
	})
	t.Run("ipxe-raw", func(t *testing.T) {
		v := vars(KindIPXE)
		v.UserData = "#!ipxe\nchain http://mirror.example.com/menu.ipxe\n"
		got := must(t)(IPXEScript(v))
		if string(got) != v.UserData {
			t.Errorf("raw script = %q, want user_data verbatim", got)
		}
		v.UserData = "echo not a script"
		if _, err := IPXEScript(v); err == nil || !strings.Contains(err.Error(), "user_data") {
			t.Errorf("non-iPXE user_data: err = %v, want one naming user_data", err)
		}
	})
	t.Run("ipxe-override", func(t *testing.T) {
		v := vars(KindIPXE)
		v.Templates = map[string]string{NameScript: "#!ipxe\necho {{ .hostname }}\nchain {{ .urls.kernel }}\n"}
		golden(t, "script-ipxe-override.ipxe", must(t)(IPXEScript(v)))
	})
}

// withRoles gives the machine a two-role stack, its agent and user data
// that merges on top.
func withRoles(v *MachineVars) {
	port := "6443"
	v.Roles = []roles.Role{
		{Name: "base", Files: []roles.File{{Path: "/etc/motd", Content: "{{ .machine.hostname }} at {{ .machine.ip_address }}\n"}},
			Packages: []string{"chrony"}, CloudConfig: "#cloud-config\ntimezone: UTC\n"},
		{Name: "worker", Requires: []string{"base"},
			Parameters: map[string]roles.Parameter{"endpoint": {Type: roles.TypeString}, "port": {Type: roles.TypeNumber, Default: &port}},
			Files:      []roles.File{{Path: "/etc/worker.env", Content: "JOIN={{ .params.endpoint }}:{{ .params.port }}\n", Mode: "0600", Owner: "worker"}},
			Packages:   []string{"chrony", "containerd"},
			Scripts:    []string{"systemctl restart worker", "#!/usr/bin/env python3\nprint('hi')\n"}},
	}
	v.RoleValues = map[string]map[string]string{"worker": {"endpoint": "cp.example"}}
	v.Agent = &Agent{Credential: "rack1-node07.CREDENTIAL", Generation: 1}
	v.UserData = "#cloud-config\nruncmd:\n  - echo user-runs-last\n"
}

func TestGoldenConfigs(t *testing.T) {
	cases := []struct {
		name   string
		kind   Kind
		config string
		mod    func(*MachineVars)
	}{
		{"user-data", KindCloudInit, ConfigUserData, nil},
		{"user-data-merged", KindCloudInit, ConfigUserData, func(v *MachineVars) {
			v.UserData = "#cloud-config\nssh_authorized_keys:\n  - ssh-rsa AAAAB3Nza user@laptop\npackages: [htop]\nphone_home:\n  tries: 3\nhostname: overridden\n"
		}},
		{"user-data-script", KindCloudInit, ConfigUserData, func(v *MachineVars) {
			v.UserData = "#!/bin/sh\necho hello > /etc/motd\n"
		}},
		{"user-data-mime", KindCloudInit, ConfigUserData, func(v *MachineVars) {
			v.UserData = "Content-Type: multipart/mixed; boundary=\"XYZ\"\nMIME-Version: 1.0\n\n--XYZ\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho one\n--XYZ\nContent-Type: text/cloud-boothook\n\n#cloud-boothook\necho two\n--XYZ--\n"
		}},
		{"meta-data", KindCloudInit, ConfigMetaData, nil},
		{"network-config", KindCloudInit, ConfigNetworkConfig, nil},
		{"network-config-dhcp", KindCloudInit, ConfigNetworkConfig, func(v *MachineVars) { v.Network = Network{} }},
		{"network-config-v6", KindCloudInit, ConfigNetworkConfig, func(v *MachineVars) {
			v.Network = Network{Address: "2001:db8:1::17/64", Gateway: "2001:db8:1::1", DNS: []string{"2001:db8::53"}}
		}},
		{"kickstart", KindKickstart, ConfigKickstart, func(v *MachineVars) {
			v.UserData = "%packages\n@core\n%end"
		}},
		{"ignition", KindIgnition, ConfigIgnition, nil},
		{"ignition-merged", KindIgnition, ConfigIgnition, func(v *MachineVars) {
			v.UserData = `{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,hi"}}]}}`
		}},
		{"image.env", KindImage, ConfigImageEnv, func(v *MachineVars) { v.MachineID = "rack1-node'07" }},
		{"user-data-roles", KindCloudInit, ConfigUserData, withRoles},
		{"image.env-agent", KindImage, ConfigImageEnv, withRoles},
		{"kickstart-roles", KindKickstart, ConfigKickstart, func(v *MachineVars) { withRoles(v); v.UserData = ""; v.Roles[0].CloudConfig = "" }},
		{"ignition-roles", KindIgnition, ConfigIgnition, func(v *MachineVars) {
			withRoles(v)
			v.UserData = ""
			v.Roles[0].CloudConfig = ""
			for i := range v.Roles {
				v.Roles[i].Packages = nil
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := vars(c.kind)
			if c.mod != nil {
				c.mod(&v)
			}
			golden(t, c.name, must(t)(Config(v, c.config)))
		})
	}
}

// TestRenderedSyntax parses what must parse: YAML configs, Ignition JSON.
func TestRenderedSyntax(t *testing.T) {
	for _, k := range Kinds() {
		if k == KindIPXE {
			continue
		}
		files, err := Files(vars(k))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		for name, b := range files {
			switch name {
			case ConfigUserData, ConfigMetaData, ConfigNetworkConfig:
				var x map[string]any
				if err := yaml.Unmarshal(b, &x); err != nil || len(x) == 0 {
					t.Errorf("%s/%s: not a YAML mapping: %v\n%s", k, name, err, b)
				}
			case ConfigIgnition:
				var x struct {
					Ignition struct{ Version string } `json:"ignition"`
				}
				if err := json.Unmarshal(b, &x); err != nil || x.Ignition.Version != IgnitionVersion {
					t.Errorf("%s/%s: bad Ignition: %v %+v", k, name, err, x)
				}
			}
		}
	}
}

// TestStrictTemplates: a reference to a key that does not exist fails and
// the error names the key.
func TestStrictTemplates(t *testing.T) {
	cases := map[string]string{
		"top-level": `#!ipxe
echo {{ .hostnme }}`,
		"nested": `#!ipxe
echo {{ .network.gatway }}`,
		"metadata": `#!ipxe
echo {{ .metadata.rack_unit }}`,
	}
	want := map[string]string{"top-level": "hostnme", "nested": "gatway", "metadata": "rack_unit"}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			v := vars(KindCloudInit)
			v.Metadata = map[string]string{"rack": "r1"}
			v.Templates = map[string]string{NameScript: text}
			_, err := IPXEScript(v)
			if err == nil || !strings.Contains(err.Error(), want[name]) {
				t.Fatalf("err = %v, want an error naming %q", err, want[name])
			}
		})
	}
	t.Run("present metadata renders", func(t *testing.T) {
		v := vars(KindCloudInit)
		v.Metadata = map[string]string{"rack": "r1"}
		v.Templates = map[string]string{NameScript: "#!ipxe\necho {{ .metadata.rack }} {{ index .metadata \"absent\" }}\n"}
		got := must(t)(IPXEScript(v))
		if !strings.Contains(string(got), "echo r1 ") {
			t.Errorf("got %q", got)
		}
	})
	t.Run("required names the value", func(t *testing.T) {
		v := vars(KindCloudInit)
		v.MACs, v.BootMAC = nil, ""
		_, err := Config(v, ConfigNetworkConfig)
		if err == nil || !strings.Contains(err.Error(), "boot_mac") {
			t.Fatalf("err = %v, want one naming boot_mac", err)
		}
	})
	t.Run("no env or file functions", func(t *testing.T) {
		for _, fn := range []string{"env", "readFile", "exec", "now"} {
			v := vars(KindCloudInit)
			v.Templates = map[string]string{NameScript: "#!ipxe\n{{ " + fn + " \"x\" }}\n"}
			if _, err := IPXEScript(v); err == nil {
				t.Errorf("function %s is available", fn)
			}
		}
	})
}

func TestValidationRejectsInjection(t *testing.T) {
	cases := map[string]func(*MachineVars){
		"hostname newline":   func(v *MachineVars) { v.Hostname = "a\nchain http://evil/" },
		"kernel arg space":   func(v *MachineVars) { v.KernelArgs = []string{"a b"} },
		"kernel arg newline": func(v *MachineVars) { v.KernelArgs = []string{"a\nshell"} },
		"root device quote":  func(v *MachineVars) { v.RootDevice = "/dev/sda'; rm -rf /" },
		"ssh key newline":    func(v *MachineVars) { v.SSHAuthorizedKeys = []string{"ssh-ed25519 AAA\nruncmd: x"} },
		"base url newline":   func(v *MachineVars) { v.BaseURL = "http://x/\nshell" },
		"base url query":     func(v *MachineVars) { v.BaseURL = "http://x/?a=b" },
		"token charset":      func(v *MachineVars) { v.Token = "../../../etc/passwd/xxxxxxx" },
		"token short":        func(v *MachineVars) { v.Token = "short" },
		"bad sha":            func(v *MachineVars) { v.Image.KernelSHA256 = "ABC" },
		"unknown kind":       func(v *MachineVars) { v.Kind = "windows" },
		"unknown template":   func(v *MachineVars) { v.Templates = map[string]string{"kickstart": "x"} },
		"boot mac not ours":  func(v *MachineVars) { v.BootMAC = "52:54:00:ff:ff:ff" },
		"network address":    func(v *MachineVars) { v.Network.Address = "192.0.2.0/24" },
		"gateway family":     func(v *MachineVars) { v.Network.Gateway = "2001:db8::1" },
		"metadata key":       func(v *MachineVars) { v.Metadata = map[string]string{"a-b": "x"} },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			v := vars(KindCloudInit)
			mod(&v)
			_, err := IPXEScript(v)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
		})
	}
}

func TestConfigNamesPerKind(t *testing.T) {
	if _, err := Config(vars(KindKickstart), ConfigUserData); !errors.Is(err, ErrUnknownConfig) {
		t.Errorf("kickstart user-data: err = %v, want ErrUnknownConfig", err)
	}
	for _, k := range Kinds() {
		for _, name := range ConfigNames(k) {
			if _, ok := DefaultTemplate(name); !ok {
				t.Errorf("%s: no default template for %s", k, name)
			}
		}
	}
}

func TestMergeUserData(t *testing.T) {
	base := []byte("#cloud-config\nhostname: \"h\"\nruncmd:\n  - base\nwrite_files:\n  - path: /a\nusers:\n  default: {shell: /bin/sh, groups: [a]}\n")
	t.Run("empty", func(t *testing.T) {
		got := must(t)(MergeUserData(base, " \n"))
		if !bytes.Equal(got, base) {
			t.Errorf("got %q", got)
		}
	})
	t.Run("cloud-config deep merge", func(t *testing.T) {
		user := "#cloud-config\nruncmd: [user]\nhostname: mine\nusers:\n  default: {groups: [b], sudo: true}\npackages: [vim]\n"
		got := must(t)(MergeUserData(base, user))
		if !bytes.HasPrefix(got, []byte("#cloud-config\n")) {
			t.Fatalf("merged output lost its header: %q", got)
		}
		var m map[string]any
		if err := yaml.Unmarshal(got, &m); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"hostname":    "mine",
			"runcmd":      []any{"base", "user"},
			"write_files": []any{map[string]any{"path": "/a"}},
			"users":       map[string]any{"default": map[string]any{"shell": "/bin/sh", "groups": []any{"a", "b"}, "sudo": true}},
			"packages":    []any{"vim"},
		}
		gj, _ := json.Marshal(m)
		wj, _ := json.Marshal(want)
		if !bytes.Equal(gj, wj) {
			t.Errorf("merged = %s\nwant     %s", gj, wj)
		}
	})
	t.Run("cloud-config only header", func(t *testing.T) {
		got := must(t)(MergeUserData(base, "#cloud-config\n"))
		if !bytes.Equal(got, base) {
			t.Errorf("got %q", got)
		}
	})
	t.Run("cloud-config not a mapping", func(t *testing.T) {
		if _, err := MergeUserData(base, "#cloud-config\n- a\n"); err == nil {
			t.Error("list accepted")
		}
	})
	t.Run("cloud-config bad yaml", func(t *testing.T) {
		if _, err := MergeUserData(base, "#cloud-config\na: [\n"); err == nil {
			t.Error("bad YAML accepted")
		}
	})
	types := map[string]string{
		"#!/bin/bash\necho":             "text/x-shellscript",
		"#include\nhttp://x/y":          "text/x-include-url",
		"#cloud-boothook\necho":         "text/cloud-boothook",
		"#cloud-config-archive\n- a":    "text/cloud-config-archive",
		"## template: jinja\n#!/bin/sh": "text/jinja2",
	}
	for user, typ := range types {
		t.Run("multipart "+typ, func(t *testing.T) {
			got := string(must(t)(MergeUserData(base, user)))
			if !strings.HasPrefix(got, "Content-Type: multipart/mixed; boundary=") {
				t.Fatalf("not multipart: %q", got)
			}
			if !strings.Contains(got, "Content-Type: text/cloud-config") || !strings.Contains(got, "Content-Type: "+typ+";") {
				t.Errorf("missing part types in %q", got)
			}
			if !strings.Contains(got, user) || !strings.Contains(got, string(base)) {
				t.Errorf("a part's body is missing in %q", got)
			}
		})
	}
	t.Run("unrecognised", func(t *testing.T) {
		_, err := MergeUserData(base, "just some text")
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "user_data" {
			t.Errorf("err = %v, want a user_data ValidationError", err)
		}
	})
	t.Run("deterministic", func(t *testing.T) {
		a := must(t)(MergeUserData(base, "#!/bin/sh\n"))
		b := must(t)(MergeUserData(base, "#!/bin/sh\n"))
		if !bytes.Equal(a, b) {
			t.Error("two renders differ")
		}
	})
}

// Roles go where the kind can carry them, and what a kind cannot do is
// an error naming it.
func TestRolesKinds(t *testing.T) {
	v := vars(KindIgnition)
	withRoles(&v)
	v.UserData = ""
	v.Roles[0].CloudConfig = ""
	var ve *ValidationError
	if _, err := Config(v, ConfigIgnition); !errors.As(err, &ve) || ve.Field != "roles" || !strings.Contains(err.Error(), "chrony") {
		t.Errorf("ignition with packages: %v, want a roles error naming them", err)
	}
	v = vars(KindKickstart)
	withRoles(&v)
	if _, err := Config(v, ConfigKickstart); !errors.As(err, &ve) || ve.Field != "roles" || !strings.Contains(err.Error(), `"base" has a cloud_config`) {
		t.Errorf("kickstart with a cloud_config: %v, want a roles error naming the role", err)
	}
	v = vars(KindIPXE)
	withRoles(&v)
	v.UserData = "#!ipxe\nexit\n"
	if _, err := IPXEScript(v); !errors.As(err, &ve) || ve.Field != "roles" {
		t.Errorf("ipxe with roles: %v, want a roles error", err)
	}
	// Every kind that carries roles also renders the same desired state
	// the agent is served, so the agent has nothing to redo.
	for _, k := range KindsWithRoles() {
		v := vars(k)
		withRoles(&v)
		v.UserData = ""
		if k == KindKickstart || k == KindIgnition {
			v.Roles[0].CloudConfig = ""
		}
		if k == KindIgnition {
			for i := range v.Roles {
				v.Roles[i].Packages = nil
			}
		}
		d, err := v.DesiredRoles()
		if err != nil {
			t.Fatal(err)
		}
		files, err := Files(v)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		var all strings.Builder
		for _, b := range files {
			all.Write(b)
		}
		state, _ := json.Marshal(roles.SeedState(d))
		if !strings.Contains(all.String(), string(state)) && !strings.Contains(all.String(), b64(string(state))) &&
			!strings.Contains(all.String(), b64(string(state)+"\n")) {
			t.Errorf("%s: no config carries the seeded agent state for revision %s", k, d.Revision)
		}
	}
}
