package render

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// Kind is how a machine installs its operating system.
type Kind string

// Install kinds.
const (
	// KindCloudInit boots an installer or live system that reads a NoCloud
	// seed (user-data, meta-data, network-config) from the boot service.
	KindCloudInit Kind = "cloud-init"
	// KindKickstart boots Anaconda with inst.ks pointing at the kickstart.
	KindKickstart Kind = "kickstart"
	// KindIgnition boots a CoreOS live system that runs coreos-installer with
	// the rendered Ignition (spec v3) config.
	KindIgnition Kind = "ignition"
	// KindIPXE serves a raw iPXE script: the "script.ipxe" template
	// override, or else UserData (which must start with #!ipxe).
	KindIPXE Kind = "ipxe"
	// KindImage boots an image-writer installer that reads image.env (shell
	// variables), writes the image to the target device and can seed the
	// written system's cloud-init from the NoCloud files.
	KindImage Kind = "image"
)

// Kinds lists every install kind.
func Kinds() []Kind {
	return []Kind{KindCloudInit, KindKickstart, KindIgnition, KindIPXE, KindImage}
}

// Network is a static network configuration. A zero Address means DHCP.
type Network struct {
	// Address is the machine's address with its prefix length in CIDR
	// notation, e.g. "192.0.2.10/24".
	Address string
	// Gateway is the default gateway; optional.
	Gateway string
	// DNS lists name servers.
	DNS []string
	// SearchDomains lists DNS search domains.
	SearchDomains []string
}

// Image names the boot artifacts by content address (lower-case sha256 hex).
// The boot service serves them at fixed per-token URLs.
type Image struct {
	KernelSHA256 string
	InitrdSHA256 string
	// ImageSHA256 is the optional third artifact: a disk image (KindImage),
	// a live rootfs (KindIgnition) or anything the installer downloads.
	ImageSHA256 string
}

// MachineVars is everything rendering knows about one provisioning of one
// machine. Templates see it as a map with snake_case keys; see [MachineVars.Data].
type MachineVars struct {
	MachineID string
	Hostname  string
	// MACs are the machine's interfaces; BootMAC the one it netboots from
	// (defaults to the first MAC). Any format net.ParseMAC accepts.
	MACs    []string
	BootMAC string
	Network Network
	// SSHAuthorizedKeys are single-line OpenSSH public keys.
	SSHAuthorizedKeys []string
	// UserData is the user's own install data, merged per kind: cloud-config
	// is deep-merged, other cloud-init formats become a multipart MIME part;
	// kickstart appends it; Ignition merges it as a child config; KindIPXE
	// uses it as the script.
	UserData string
	// RootDevice is the install target hint, e.g. /dev/sda or
	// /dev/disk/by-path/pci-0000:00:1f.2-ata-1. Required for KindIgnition
	// and KindImage.
	RootDevice string
	// KernelArgs are appended to the kernel command line. iPXE expands
	// ${setting} references in them.
	KernelArgs []string
	// BaseURL is how the machine reaches the boot service, e.g.
	// http://192.0.2.1:8080 (no trailing slash needed).
	BaseURL string
	// Token is the per-provisioning secret that authorises the machine's
	// URLs. It appears in rendered output only inside URLs.
	Token string
	Image Image
	Kind  Kind
	// Metadata is free-form data for user templates (.metadata.key).
	Metadata map[string]string
	// Roles are the machine's roles in application order (the closure of
	// what it uses, templates not rendered yet); RoleValues maps a role
	// name to the machine's parameter values for it. Rendered into
	// user-data (KindsWithRoles only).
	Roles      []roles.Role
	RoleValues map[string]map[string]string
	// Inventory is what role templates see as .machine.inventory.
	Inventory map[string]any
	// Agent, when set, makes the install config install the role agent.
	Agent *Agent
	// Templates overrides built-in templates by file name: "script.ipxe",
	// "wipe.ipxe" or a config name (see ConfigNames). It is not visible to
	// templates.
	Templates map[string]string
}

// ValidationError says which input is wrong.
type ValidationError struct {
	Field  string // snake_case name, as templates see it
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("render: invalid %s: %s", e.Field, e.Reason)
}

var (
	tokenRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	deviceRE  = regexp.MustCompile(`^/dev/[A-Za-z0-9/_.:+@-]+$`)
	labelRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	metaKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func invalid(field, format string, a ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// Validate checks every input that reaches a script or config. Render
// functions call it; it is exported for plan-time validation.
func (v *MachineVars) Validate() error {
	_, err := v.normalize()
	return err
}

// normalized is MachineVars after validation, with derived values.
type normalized struct {
	MachineVars
	macs    []string
	bootMAC string
	prefix  netip.Prefix
	gateway netip.Addr
	dns     []string
	base    string
}

func (v *MachineVars) normalize() (*normalized, error) {
	n := &normalized{MachineVars: *v}
	if v.MachineID == "" {
		return nil, invalid("machine_id", "must not be empty")
	}
	if err := singleToken("machine_id", v.MachineID); err != nil {
		return nil, err
	}
	if v.Hostname != "" {
		if err := checkHostname(v.Hostname); err != nil {
			return nil, err
		}
	}
	for _, m := range v.MACs {
		hw, err := net.ParseMAC(m)
		if err != nil || len(hw) != 6 {
			return nil, invalid("macs", "%q is not an Ethernet MAC address", m)
		}
		n.macs = append(n.macs, hw.String())
	}
	if v.BootMAC != "" {
		hw, err := net.ParseMAC(v.BootMAC)
		if err != nil || len(hw) != 6 {
			return nil, invalid("boot_mac", "%q is not an Ethernet MAC address", v.BootMAC)
		}
		n.bootMAC = hw.String()
		if len(n.macs) > 0 && !slices.Contains(n.macs, n.bootMAC) {
			return nil, invalid("boot_mac", "%s is not one of macs", n.bootMAC)
		}
	} else if len(n.macs) > 0 {
		n.bootMAC = n.macs[0]
	}
	if err := n.normalizeNetwork(); err != nil {
		return nil, err
	}
	for _, k := range v.SSHAuthorizedKeys {
		if k == "" || strings.ContainsFunc(k, isControl) {
			return nil, invalid("ssh_authorized_keys", "each key must be one non-empty line")
		}
	}
	if v.RootDevice != "" && !deviceRE.MatchString(v.RootDevice) {
		return nil, invalid("root_device", "%q must be a /dev/ path without spaces or quotes", v.RootDevice)
	}
	for _, a := range v.KernelArgs {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return unicode.IsSpace(r) || isControl(r) }) {
			return nil, invalid("kernel_args", "%q: each argument must be non-empty without spaces or control characters", a)
		}
	}
	u, err := url.Parse(v.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || strings.ContainsFunc(v.BaseURL, func(r rune) bool { return unicode.IsSpace(r) || isControl(r) }) {
		return nil, invalid("base_url", "%q must be an http(s) URL without credentials, query or fragment", v.BaseURL)
	}
	n.base = strings.TrimRight(v.BaseURL, "/")
	if !tokenRE.MatchString(v.Token) {
		return nil, invalid("token", "must be 16-128 characters of [A-Za-z0-9_-]")
	}
	if !slices.Contains(Kinds(), v.Kind) {
		return nil, invalid("kind", "%q is not one of %v", v.Kind, Kinds())
	}
	if err := n.checkRoles(); err != nil {
		return nil, err
	}
	for field, sum := range map[string]string{
		"image.kernel_sha256": v.Image.KernelSHA256,
		"image.initrd_sha256": v.Image.InitrdSHA256,
		"image.image_sha256":  v.Image.ImageSHA256,
	} {
		if sum != "" && !sha256RE.MatchString(sum) {
			return nil, invalid(field, "must be 64 lower-case hex digits")
		}
	}
	if v.Kind != KindIPXE {
		if v.Image.KernelSHA256 == "" {
			return nil, invalid("image.kernel_sha256", "required for kind %s", v.Kind)
		}
		if v.Image.InitrdSHA256 == "" {
			return nil, invalid("image.initrd_sha256", "required for kind %s", v.Kind)
		}
	}
	if v.Kind == KindImage && v.Image.ImageSHA256 == "" {
		return nil, invalid("image.image_sha256", "required for kind %s", v.Kind)
	}
	if (v.Kind == KindIgnition || v.Kind == KindImage) && v.RootDevice == "" {
		return nil, invalid("root_device", "required for kind %s", v.Kind)
	}
	for k := range v.Metadata {
		if !metaKeyRE.MatchString(k) {
			return nil, invalid("metadata", "key %q must be an identifier", k)
		}
	}
	for name := range v.Templates {
		if !slices.Contains(templateNames(v.Kind), name) {
			return nil, invalid("templates", "%q is not a template of kind %s (have %v)", name, v.Kind, templateNames(v.Kind))
		}
	}
	return n, nil
}

func (n *normalized) normalizeNetwork() error {
	nw := n.Network
	if nw.Address == "" {
		if nw.Gateway != "" {
			return invalid("network.gateway", "set without network.address")
		}
	} else {
		p, err := netip.ParsePrefix(nw.Address)
		if err != nil {
			return invalid("network.address", "%q is not an address/prefix (CIDR)", nw.Address)
		}
		n.prefix = p
		if p.Addr() == p.Masked().Addr() && p.Bits() < p.Addr().BitLen()-1 {
			return invalid("network.address", "%q is a network address, not a host address", nw.Address)
		}
	}
	if nw.Gateway != "" {
		g, err := netip.ParseAddr(nw.Gateway)
		if err != nil || g.Is4() != n.prefix.Addr().Is4() {
			return invalid("network.gateway", "%q is not an address of the same family as network.address", nw.Gateway)
		}
		n.gateway = g
	}
	for _, d := range nw.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return invalid("network.dns", "%q is not an IP address", d)
		}
		n.dns = append(n.dns, a.String())
	}
	for _, s := range nw.SearchDomains {
		if err := checkDomain("network.search_domains", s); err != nil {
			return err
		}
	}
	return nil
}

func checkHostname(h string) error {
	return checkDomain("hostname", h)
}

func checkDomain(field, h string) error {
	if len(h) > 253 {
		return invalid(field, "%q is longer than 253 characters", h)
	}
	for l := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if !labelRE.MatchString(l) {
			return invalid(field, "%q is not a valid DNS name", h)
		}
	}
	return nil
}

func singleToken(field, s string) error {
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || isControl(r) }) {
		return invalid(field, "%q must not contain spaces or control characters", s)
	}
	return nil
}

func isControl(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }

// Paths of the per-token routes, relative to BaseURL/boot/<token>/. The
// boot service's HTTP handler serves exactly these.
const (
	PathScript      = "script.ipxe"
	PathKernel      = "kernel"
	PathInitrd      = "initrd"
	PathImage       = "image"
	PathConfig      = "config/"   // + config name
	PathProgress    = "progress/" // + stage, GET (for iPXE, which cannot POST)
	PathEvents      = "events"    // POST JSON {"stage","message"}
	PathProvisioned = "provisioned"
)

// TokenURL is base + "/boot/" + token + "/" + path.
func TokenURL(base, token, path string) string {
	return strings.TrimRight(base, "/") + "/boot/" + token + "/" + path
}

// Data is the template data: a map (so missing keys are errors) with these
// keys: machine_id, hostname, macs, boot_mac, kind, root_device,
// kernel_args, install_args, user_data, ssh_authorized_keys, base_url,
// token, action ("install" or "wipe"), metadata, network {static, address,
// ip, prefix_length, netmask, gateway, default_route, dns, search_domains}, image {kernel_sha256, initrd_sha256,
// image_sha256}, urls {script, kernel, initrd, image, config, progress,
// events, provisioned}. urls.config and urls.progress end in "/".
func (v *MachineVars) Data() (map[string]any, error) {
	n, err := v.normalize()
	if err != nil {
		return nil, err
	}
	return n.data(), nil
}

func (n *normalized) data() map[string]any {
	u := func(p string) string { return TokenURL(n.base, n.Token, p) }
	imageURL := ""
	if n.Image.ImageSHA256 != "" {
		imageURL = u(PathImage)
	}
	urls := map[string]any{
		"script":      u(PathScript),
		"kernel":      u(PathKernel),
		"initrd":      u(PathInitrd),
		"image":       imageURL,
		"config":      u(PathConfig),
		"progress":    u(PathProgress),
		"events":      u(PathEvents),
		"provisioned": u(PathProvisioned),
	}
	netw := map[string]any{
		"static":         n.prefix.IsValid(),
		"address":        "",
		"ip":             "",
		"prefix_length":  0,
		"netmask":        "",
		"gateway":        "",
		"default_route":  "",
		"dns":            nonNil(n.dns),
		"search_domains": nonNil(n.Network.SearchDomains),
	}
	if n.prefix.IsValid() {
		netw["address"] = n.prefix.String()
		netw["ip"] = n.prefix.Addr().String()
		netw["prefix_length"] = n.prefix.Bits()
		netw["default_route"] = "::/0"
		if n.prefix.Addr().Is4() {
			m := net.CIDRMask(n.prefix.Bits(), 32)
			netw["netmask"] = net.IP(m).String()
			netw["default_route"] = "0.0.0.0/0"
		}
	}
	if n.gateway.IsValid() {
		netw["gateway"] = n.gateway.String()
	}
	meta := make(map[string]any, len(n.Metadata))
	for k, val := range n.Metadata {
		meta[k] = val
	}
	d := map[string]any{
		"machine_id":          n.MachineID,
		"hostname":            n.Hostname,
		"macs":                nonNil(n.macs),
		"boot_mac":            n.bootMAC,
		"kind":                string(n.Kind),
		"root_device":         n.RootDevice,
		"kernel_args":         nonNil(n.KernelArgs),
		"user_data":           n.UserData,
		"ssh_authorized_keys": nonNil(n.SSHAuthorizedKeys),
		"base_url":            n.base,
		"token":               n.Token,
		"action":              "install",
		"metadata":            meta,
		"network":             netw,
		"image": map[string]any{
			"kernel_sha256": n.Image.KernelSHA256,
			"initrd_sha256": n.Image.InitrdSHA256,
			"image_sha256":  n.Image.ImageSHA256,
		},
		"urls": urls,
	}
	d["install_args"] = installArgs(n, u(PathConfig), imageURL)
	return d
}

// installArgs are the kernel arguments the kind's installer needs to find
// its configuration; templates put them before the user's kernel_args.
func installArgs(n *normalized, cfg, img string) []string {
	var a []string
	switch n.Kind {
	case KindCloudInit:
		// iPXE only treats a lone ";" token as a separator, so the NoCloud
		// seed argument needs no quoting. The trailing "/" matters:
		// cloud-init appends the file names.
		a = append(a, "ds=nocloud-net;s="+cfg)
	case KindKickstart:
		a = append(a, "inst.ks="+cfg+"kickstart")
	case KindIgnition:
		if img != "" {
			a = append(a, "coreos.live.rootfs_url="+img)
		}
		a = append(a,
			"coreos.inst.install_dev="+n.RootDevice,
			"coreos.inst.ignition_url="+cfg+"ignition",
			"ignition.firstboot", "ignition.platform.id=metal")
	case KindImage:
		a = append(a, "metal.config="+cfg+"image.env")
	}
	return nonNil(a)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
