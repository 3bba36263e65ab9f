package render

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
)

// IgnitionVersion is the Ignition spec version of the built-in config
// (accepted by every Fedora CoreOS and RHCOS release since 2022).
const IgnitionVersion = "3.3.0"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func ignFile(path, contents string, mode int) map[string]any {
	return map[string]any{
		"path":      path,
		"mode":      mode,
		"overwrite": true,
		"contents":  map[string]any{"source": "data:;base64," + b64(contents)},
	}
}

// systemdEscape protects a value inside a unit file: "%" starts a
// specifier and "$" an environment expansion.
func systemdEscape(s string) string {
	return strings.NewReplacer("%", "%%", "$", "$$").Replace(s)
}

// ignitionBase is the built-in Ignition config (the "ignition" template
// data key): the machine id marker, hostname, a NetworkManager keyfile for
// the static address, the ssh keys of user "core", and a oneshot unit that
// reports "provisioned" once the installed system is online.
func ignitionBase(n *normalized) map[string]any {
	files := []any{ignFile("/etc/composable-metal/machine-id", n.MachineID+"\n", 0o644)}
	if n.Hostname != "" {
		files = append(files, ignFile("/etc/hostname", n.Hostname+"\n", 0o644))
	}
	if n.prefix.IsValid() {
		files = append(files, ignFile("/etc/NetworkManager/system-connections/metal-boot.nmconnection", n.nmKeyfile(), 0o600))
	}
	unit := fmt.Sprintf(`[Unit]
Description=Report completed provisioning to composable-metal
Wants=network-online.target
After=network-online.target
ConditionPathExists=!/var/lib/composable-metal/provisioned

[Service]
Type=oneshot
ExecStart=/usr/bin/curl -fsS --retry 10 --retry-delay 5 --retry-connrefused -X POST %s
ExecStartPost=/usr/bin/mkdir -p /var/lib/composable-metal
ExecStartPost=/usr/bin/touch /var/lib/composable-metal/provisioned

[Install]
WantedBy=multi-user.target
`, systemdEscape(TokenURL(n.base, n.Token, PathProvisioned)))
	cfg := map[string]any{
		"ignition": map[string]any{"version": IgnitionVersion},
		"storage":  map[string]any{"files": files},
		"systemd": map[string]any{"units": []any{map[string]any{
			"name": "metal-provisioned.service", "enabled": true, "contents": unit,
		}}},
	}
	if len(n.SSHAuthorizedKeys) > 0 {
		cfg["passwd"] = map[string]any{"users": []any{map[string]any{
			"name": "core", "sshAuthorizedKeys": n.SSHAuthorizedKeys,
		}}}
	}
	return cfg
}

// nmKeyfile is a NetworkManager connection profile for the static address,
// bound to the boot MAC when known.
func (n *normalized) nmKeyfile() string {
	var b strings.Builder
	b.WriteString("[connection]\nid=metal-boot\ntype=ethernet\nautoconnect=true\n")
	if n.bootMAC != "" {
		fmt.Fprintf(&b, "\n[ethernet]\nmac-address=%s\n", strings.ToUpper(n.bootMAC))
	}
	section := func(v6 bool) {
		var dns []string
		for _, d := range n.dns {
			if netip.MustParseAddr(d).Is6() == v6 {
				dns = append(dns, d)
			}
		}
		addr := n.prefix.String()
		if n.gateway.IsValid() {
			addr += "," + n.gateway.String()
		}
		fmt.Fprintf(&b, "method=manual\naddress1=%s\n", addr)
		if len(dns) > 0 {
			fmt.Fprintf(&b, "dns=%s;\n", strings.Join(dns, ";"))
		}
		if len(n.Network.SearchDomains) > 0 {
			fmt.Fprintf(&b, "dns-search=%s;\n", strings.Join(n.Network.SearchDomains, ";"))
		}
	}
	if n.prefix.Addr().Is4() {
		b.WriteString("\n[ipv4]\n")
		section(false)
		b.WriteString("\n[ipv6]\nmethod=auto\n")
	} else {
		b.WriteString("\n[ipv4]\nmethod=disabled\n\n[ipv6]\n")
		section(true)
	}
	return b.String()
}
