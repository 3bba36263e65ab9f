package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// Defaults of the boot_service block. The provider schema cannot carry
// defaults, so Configure applies these and the descriptions state them.
const (
	defaultHTTPListen = "0.0.0.0:8080"
	defaultIPXEDir    = "/usr/lib/ipxe"
	defaultDHCPListen = "0.0.0.0:67"
	defaultTFTPListen = "0.0.0.0:69"
	defaultDHCPMode   = engine.DHCPAuthoritative
	stateDirName      = "terraform-provider-metal"
)

// Attribute paths of the boot_service block.
var (
	pathBootService     = path.Root("boot_service")
	pathBootAddress     = pathBootService.AtName("address")
	pathBootStateDir    = pathBootService.AtName("state_dir")
	pathBootDHCP        = pathBootService.AtName("dhcp")
	pathBootDHCPMode    = pathBootDHCP.AtName("mode")
	pathBootDHCPSubnet  = pathBootDHCP.AtName("subnet")
	pathBootRangeStart  = pathBootDHCP.AtName("range_start")
	pathBootRangeEnd    = pathBootDHCP.AtName("range_end")
	pathBootDHCPRouter  = pathBootDHCP.AtName("router")
	pathBootDHCPLease   = pathBootDHCP.AtName("lease_time")
	pathBootTFTPEnabled = pathBootService.AtName("tftp").AtName("enabled")
)

// bootServiceModel maps the provider's boot_service block.
type bootServiceModel struct {
	Address     types.String `tfsdk:"address"`
	Interface   types.String `tfsdk:"interface"`
	HTTPListen  types.String `tfsdk:"http_listen"`
	StateDir    types.String `tfsdk:"state_dir"`
	IPXEDir     types.String `tfsdk:"ipxe_dir"`
	AgentBinary types.String `tfsdk:"agent_binary"`
	DHCP        *dhcpModel   `tfsdk:"dhcp"`
	TFTP        *tftpModel   `tfsdk:"tftp"`
	// Remote mode (a metal daemon); see provider_boot_service_remote.go.
	Endpoint       types.String `tfsdk:"endpoint"`
	Token          types.String `tfsdk:"token"`
	CACertificate  types.String `tfsdk:"ca_certificate"`
	TLSFingerprint types.String `tfsdk:"tls_fingerprint"`
}

type dhcpModel struct {
	Mode       types.String `tfsdk:"mode"`
	Listen     types.String `tfsdk:"listen"`
	Subnet     types.String `tfsdk:"subnet"`
	RangeStart types.String `tfsdk:"range_start"`
	RangeEnd   types.String `tfsdk:"range_end"`
	Router     types.String `tfsdk:"router"`
	DNS        types.List   `tfsdk:"dns"`
	LeaseTime  types.String `tfsdk:"lease_time"`
	Discovery  types.Bool   `tfsdk:"discovery"`
}

type tftpModel struct {
	Enabled types.Bool   `tfsdk:"enabled"`
	Listen  types.String `tfsdk:"listen"`
}

const privilegedPortsNote = "~> **Note:** Ports 67 (DHCP) and 69 (TFTP) are privileged: binding them needs root or the " +
	"`CAP_NET_BIND_SERVICE` capability (for example `setcap cap_net_bind_service=+ep` on the provider binary)."

func bootServiceBlock() schema.SingleNestedBlock {
	return schema.SingleNestedBlock{
		MarkdownDescription: "The boot service (DHCP, TFTP and HTTP) that network-installs machines with a `metal_os_image`. " +
			"Without this block provisioning is off: `metal_os_image` and a `metal_machine` with `os_image` fail " +
			"with an error saying to add it.\n\n" +
			"**Embedded** (`address` and the settings below): the service runs inside the provider, only while Terraform runs " +
			"(plan, apply, destroy), and starts the first time a resource needs it; a machine that network-boots " +
			"at any other time gets no answer.\n\n" +
			"**Remote** (`endpoint`, `token`, `ca_certificate` or `tls_fingerprint`): the provider talks to a " +
			"`terraform-provider-metal serve` daemon on the machines' network, which answers DHCP and reaches the BMCs; " +
			"use it from Terraform Cloud or any runner that is not on that network. The two modes exclude each other.\n\n" +
			privilegedPortsNote,
		Attributes: map[string]schema.Attribute{
			"endpoint":        remoteAttributes()["endpoint"],
			"token":           remoteAttributes()["token"],
			"ca_certificate":  remoteAttributes()["ca_certificate"],
			"tls_fingerprint": remoteAttributes()["tls_fingerprint"],
			"address": schema.StringAttribute{
				// Required whenever the block is present; the framework would
				// also demand it with the block absent, so ValidateConfig checks.
				Optional:   true,
				Validators: []validator.String{ipv4Validator{}},
				MarkdownDescription: "Required for the embedded boot service (whenever `endpoint` is not set). This host's IPv4 address on the provisioning network: the DHCP server " +
					"identifier, the TFTP server and the host of every HTTP URL machines fetch.",
			},
			"interface": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "Network interface (such as `eno1`) DHCP is bound to, so it answers on that " +
					"network only. Default: every interface.",
			},
			"http_listen": schema.StringAttribute{
				Optional:   true,
				Validators: []validator.String{listenValidator{}},
				MarkdownDescription: "`host:port` the HTTP server (iPXE scripts, kernels, install configs and " +
					"callbacks) listens on (default: `" + defaultHTTPListen + "`). Port `0` picks a free port at every " +
					"start, which changes the URLs in `rendered_ipxe`; use it for tests only.",
			},
			"state_dir": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "Directory of the boot service's database, token key and artifact cache " +
					"(default: `$XDG_STATE_HOME/" + stateDirName + "`, else `~/.local/state/" + stateDirName + "`). " +
					"One Terraform run at a time may use it.",
			},
			"ipxe_dir": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "Directory holding the iPXE binaries (`undionly.kpxe`, `ipxe.efi`, `snponly.efi`) " +
					"served over TFTP and HTTP (default: `" + defaultIPXEDir + "`, where Debian's `ipxe` package installs them).",
			},
			"agent_binary": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "Path of the role agent served to installed machines (the Linux build of this " +
					"provider for the machines' architecture; the agent is `terraform-provider-metal agent`). Default: " +
					"the provider binary itself when it runs on Linux. Set it when Terraform runs on another OS or " +
					"architecture than the machines.",
			},
		},
		Blocks: map[string]schema.Block{
			"dhcp": schema.SingleNestedBlock{
				MarkdownDescription: "The DHCP server. Without this block it runs in `" + defaultDHCPMode + "` mode, " +
					"which needs `subnet`.",
				Attributes: map[string]schema.Attribute{
					"mode": schema.StringAttribute{
						Optional:   true,
						Validators: []validator.String{stringvalidator.OneOf(engine.DHCPModes()...)},
						MarkdownDescription: "`" + engine.DHCPAuthoritative + "` hands out addresses on `subnet` and " +
							"boot options to registered machines; `" + engine.DHCPProxy + "` (proxyDHCP) only adds boot " +
							"options next to an existing DHCP server; `" + engine.DHCPOff + "` runs no DHCP (the network's " +
							"own DHCP must point machines at the boot service). Allowed values: " +
							backtickList(engine.DHCPModes()) + " (default: `" + defaultDHCPMode + "`).",
					},
					"listen": schema.StringAttribute{
						Optional:   true,
						Validators: []validator.String{listenValidator{}},
						MarkdownDescription: "`host:port` DHCP listens on (default: `" + defaultDHCPListen + "`); port 67 " +
							"needs root or `CAP_NET_BIND_SERVICE`. A loopback address is for tests: replies then go back to " +
							"the sender instead of being broadcast.",
					},
					"subnet": schema.StringAttribute{
						Optional:   true,
						Validators: []validator.String{subnetValidator{}},
						MarkdownDescription: "The provisioning network in CIDR notation, such as `192.0.2.0/24`. " +
							"Required in `" + engine.DHCPAuthoritative + "` mode.",
					},
					"range_start": schema.StringAttribute{
						Optional:   true,
						Validators: []validator.String{ipv4Validator{}},
						MarkdownDescription: "First address of the dynamic range machines lease from; inside `subnet`. " +
							"Set together with `range_end`; without a range only machines with a static `ip_address` get an address.",
					},
					"range_end": schema.StringAttribute{
						Optional:            true,
						Validators:          []validator.String{ipv4Validator{}},
						MarkdownDescription: "Last address of the dynamic range (inclusive); inside `subnet`, not before `range_start`.",
					},
					"router": schema.StringAttribute{
						Optional:            true,
						Validators:          []validator.String{ipv4Validator{}},
						MarkdownDescription: "Default gateway handed to machines; inside `subnet`.",
					},
					"dns": schema.ListAttribute{
						Optional:            true,
						ElementType:         types.StringType,
						Validators:          []validator.List{listvalidator.ValueStringsAre(ipv4Validator{})},
						MarkdownDescription: "IPv4 addresses of the DNS servers handed to machines.",
					},
					"lease_time": schema.StringAttribute{
						Optional:   true,
						Validators: []validator.String{durationValidator{}},
						MarkdownDescription: "How long a lease lasts, as a Go duration string such as `1h` " +
							"(default: `1h`).",
					},
					"discovery": schema.BoolAttribute{
						Optional: true,
						MarkdownDescription: "Record machines that are not managed here when they ask to network-boot, " +
							"for the `metal_discovered_machines` data source (default: `false`; unknown machines are ignored).",
					},
				},
			},
			"tftp": schema.SingleNestedBlock{
				MarkdownDescription: "The TFTP server that hands iPXE to firmware that cannot boot over HTTP.",
				Attributes: map[string]schema.Attribute{
					"enabled": schema.BoolAttribute{
						Optional: true,
						MarkdownDescription: "Whether TFTP runs (default: `true`). It needs the iPXE binaries in " +
							"`ipxe_dir`. Turn it off when every machine boots iPXE over HTTP.",
					},
					"listen": schema.StringAttribute{
						Optional:   true,
						Validators: []validator.String{listenValidator{}},
						MarkdownDescription: "`host:port` TFTP listens on (default: `" + defaultTFTPListen + "`); port 69 " +
							"needs root or `CAP_NET_BIND_SERVICE`.",
					},
				},
			},
		},
	}
}

// bootConfig turns the block into the engine's configuration with every
// default applied. Unknown values are skipped (plan-time validation sees
// them; Configure rejects them before calling this), so every check here
// only fires on values that are known to be wrong.
func (m *bootServiceModel) bootConfig() (*engine.BootConfig, diag.Diagnostics) {
	var diags diag.Diagnostics
	cfg := &engine.BootConfig{
		HTTPListen: defaultHTTPListen,
		IPXEDir:    defaultIPXEDir,
		DHCP:       engine.DHCPConfig{Mode: defaultDHCPMode, Listen: defaultDHCPListen},
		TFTP:       engine.TFTPConfig{Enabled: true, Listen: defaultTFTPListen},
	}
	set := func(v types.String) bool { return !v.IsNull() && !v.IsUnknown() }

	switch {
	case m.Address.IsNull():
		diags.AddAttributeError(pathBootAddress, "Missing Boot Service Address",
			"`boot_service` needs `address`: this host's IPv4 address on the provisioning network, which machines "+
				"are told to fetch their boot files from.")
	case set(m.Address):
		a, problem := parseIPv4(m.Address.ValueString())
		if problem != "" {
			diags.AddAttributeError(pathBootAddress, "Invalid IPv4 Address", problem)
		}
		cfg.Address = a
	}
	if set(m.Interface) {
		cfg.Interface = m.Interface.ValueString()
	}
	if set(m.HTTPListen) {
		cfg.HTTPListen = m.HTTPListen.ValueString()
	}
	if set(m.AgentBinary) {
		cfg.AgentBinary = m.AgentBinary.ValueString()
	}
	if set(m.IPXEDir) {
		cfg.IPXEDir = m.IPXEDir.ValueString()
	}
	switch {
	case set(m.StateDir):
		cfg.StateDir = m.StateDir.ValueString()
	case m.StateDir.IsNull():
		dir, err := defaultStateDir()
		if err != nil {
			diags.AddAttributeError(pathBootStateDir, "No Boot Service State Directory",
				"Set `boot_service.state_dir`: the default needs $XDG_STATE_HOME or a home directory.\n\nOriginal Error: "+err.Error())
		}
		cfg.StateDir = dir
	}

	if t := m.TFTP; t != nil {
		if !t.Enabled.IsNull() && !t.Enabled.IsUnknown() {
			cfg.TFTP.Enabled = t.Enabled.ValueBool()
		}
		if set(t.Listen) {
			cfg.TFTP.Listen = t.Listen.ValueString()
		}
	}

	d := m.DHCP
	if d == nil {
		d = &dhcpModel{Mode: types.StringNull(), Subnet: types.StringNull(), RangeStart: types.StringNull(),
			RangeEnd: types.StringNull(), Router: types.StringNull(), DNS: types.ListNull(types.StringType),
			LeaseTime: types.StringNull(), Listen: types.StringNull(), Discovery: types.BoolNull()}
	}
	diags.Append(d.apply(&cfg.DHCP, m.DHCP == nil)...)
	return cfg, diags
}

// apply fills the DHCP part of the engine configuration and checks how its
// settings fit together. blockAbsent says there is no dhcp block at all, so
// an error about a missing subnet points at the block.
func (d *dhcpModel) apply(cfg *engine.DHCPConfig, blockAbsent bool) diag.Diagnostics {
	var diags diag.Diagnostics
	set := func(v types.String) bool { return !v.IsNull() && !v.IsUnknown() }
	modeKnown := !d.Mode.IsUnknown()
	if set(d.Mode) {
		cfg.Mode = d.Mode.ValueString()
	}
	if set(d.Listen) {
		cfg.Listen = d.Listen.ValueString()
	}
	if !d.Discovery.IsNull() && !d.Discovery.IsUnknown() {
		cfg.Discovery = d.Discovery.ValueBool()
	}
	if set(d.LeaseTime) {
		if lt, err := time.ParseDuration(d.LeaseTime.ValueString()); err == nil && lt > 0 {
			cfg.LeaseTime = lt
		}
	}
	if !d.DNS.IsNull() && !d.DNS.IsUnknown() {
		for _, e := range d.DNS.Elements() {
			s, ok := e.(types.String)
			if !ok || !set(s) {
				continue
			}
			if a, problem := parseIPv4(s.ValueString()); problem == "" {
				cfg.DNS = append(cfg.DNS, a)
			}
		}
	}
	subnetKnown := false
	if set(d.Subnet) {
		if p, problem := parseSubnet(d.Subnet.ValueString()); problem == "" {
			cfg.Subnet, subnetKnown = p, true
		}
	}
	addr := func(v types.String) netip.Addr {
		if !set(v) {
			return netip.Addr{}
		}
		a, _ := parseIPv4(v.ValueString())
		return a
	}
	cfg.RangeStart, cfg.RangeEnd, cfg.Router = addr(d.RangeStart), addr(d.RangeEnd), addr(d.Router)

	if modeKnown && cfg.Mode == engine.DHCPAuthoritative && d.Subnet.IsNull() {
		at := pathBootDHCPSubnet
		if blockAbsent {
			at = pathBootDHCP
		}
		diags.AddAttributeError(at, "Missing DHCP Subnet",
			"The boot service's DHCP runs in `"+engine.DHCPAuthoritative+"` mode (the default), which hands out "+
				"addresses and so needs the provisioning network: set `boot_service.dhcp.subnet`, such as "+
				"\"192.0.2.0/24\". If another DHCP server already serves the network, set `mode = \""+engine.DHCPProxy+
				"\"` instead; with `mode = \""+engine.DHCPOff+"\"` no DHCP runs.")
	}
	switch {
	case d.RangeStart.IsNull() && !d.RangeEnd.IsNull():
		diags.AddAttributeError(pathBootRangeStart, "Incomplete DHCP Range",
			"`range_end` is set but `range_start` is not. Set both, or neither to lease to static addresses only.")
	case !d.RangeStart.IsNull() && d.RangeEnd.IsNull():
		diags.AddAttributeError(pathBootRangeEnd, "Incomplete DHCP Range",
			"`range_start` is set but `range_end` is not. Set both, or neither to lease to static addresses only.")
	}
	if subnetKnown {
		for _, a := range []struct {
			at   path.Path
			name string
			addr netip.Addr
		}{{pathBootRangeStart, "range_start", cfg.RangeStart}, {pathBootRangeEnd, "range_end", cfg.RangeEnd}, {pathBootDHCPRouter, "router", cfg.Router}} {
			if !a.addr.IsValid() {
				continue
			}
			if !cfg.Subnet.Contains(a.addr) {
				diags.AddAttributeError(a.at, "Address Outside DHCP Subnet",
					fmt.Sprintf("`%s` %s is not inside `subnet` %s. Use an address of %s.", a.name, a.addr, cfg.Subnet, cfg.Subnet))
				continue
			}
			if a.name != "router" && cfg.Subnet.Bits() < 31 && (a.addr == cfg.Subnet.Addr() || a.addr == lastAddr(cfg.Subnet)) {
				diags.AddAttributeError(a.at, "Invalid DHCP Range",
					fmt.Sprintf("`%s` %s is the network or broadcast address of %s, which cannot be leased.", a.name, a.addr, cfg.Subnet))
			}
		}
	}
	if cfg.RangeStart.IsValid() && cfg.RangeEnd.IsValid() && cfg.RangeEnd.Less(cfg.RangeStart) {
		diags.AddAttributeError(pathBootRangeEnd, "Invalid DHCP Range",
			fmt.Sprintf("`range_end` %s comes before `range_start` %s. Swap them.", cfg.RangeEnd, cfg.RangeStart))
	}
	return diags
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	bits := p.Bits()
	for i := range 4 {
		for j := range 8 {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	return netip.AddrFrom4(b)
}

// defaultStateDir is $XDG_STATE_HOME/terraform-provider-metal, else
// ~/.local/state/terraform-provider-metal.
func defaultStateDir() (string, error) {
	if x := os.Getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, stateDirName), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	if home == "" {
		return "", errors.New("the home directory is unknown")
	}
	return filepath.Join(home, ".local", "state", stateDirName), nil
}

// unknownBootSettings lists the boot_service settings that are unknown, by
// path, for Configure to reject.
func (m *bootServiceModel) unknownBootSettings() []path.Path {
	var out []path.Path
	add := func(p path.Path, unknown bool) {
		if unknown {
			out = append(out, p)
		}
	}
	add(pathBootEndpoint, m.Endpoint.IsUnknown())
	add(pathBootToken, m.Token.IsUnknown())
	add(pathBootCACert, m.CACertificate.IsUnknown())
	add(pathBootFingerprint, m.TLSFingerprint.IsUnknown())
	add(pathBootAddress, m.Address.IsUnknown())
	add(pathBootService.AtName("interface"), m.Interface.IsUnknown())
	add(pathBootService.AtName("http_listen"), m.HTTPListen.IsUnknown())
	add(pathBootStateDir, m.StateDir.IsUnknown())
	add(pathBootService.AtName("ipxe_dir"), m.IPXEDir.IsUnknown())
	add(pathBootService.AtName("agent_binary"), m.AgentBinary.IsUnknown())
	if d := m.DHCP; d != nil {
		add(pathBootDHCPMode, d.Mode.IsUnknown())
		add(pathBootDHCP.AtName("listen"), d.Listen.IsUnknown())
		add(pathBootDHCPSubnet, d.Subnet.IsUnknown())
		add(pathBootRangeStart, d.RangeStart.IsUnknown())
		add(pathBootRangeEnd, d.RangeEnd.IsUnknown())
		add(pathBootDHCPRouter, d.Router.IsUnknown())
		add(pathBootDHCP.AtName("dns"), d.DNS.IsUnknown() || listHasUnknown(d.DNS))
		add(pathBootDHCPLease, d.LeaseTime.IsUnknown())
		add(pathBootDHCP.AtName("discovery"), d.Discovery.IsUnknown())
	}
	if t := m.TFTP; t != nil {
		add(pathBootTFTPEnabled, t.Enabled.IsUnknown())
		add(pathBootService.AtName("tftp").AtName("listen"), t.Listen.IsUnknown())
	}
	return out
}

func listHasUnknown(l types.List) bool {
	for _, e := range l.Elements() {
		if e.IsUnknown() {
			return true
		}
	}
	return false
}

// ValidateConfig checks the boot_service block when planning, so a bad
// network setting is reported before anything is touched.
func (p *metalProvider) ValidateConfig(ctx context.Context, req provider.ValidateConfigRequest, resp *provider.ValidateConfigResponse) {
	var bs *bootServiceModel
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, pathBootService, &bs)...)
	if resp.Diagnostics.HasError() || bs == nil {
		return
	}
	if bs.remote() {
		resp.Diagnostics.Append(bs.validateRemote()...)
		return
	}
	resp.Diagnostics.Append(bs.remoteSettingsWithoutEndpoint()...)
	_, diags := bs.bootConfig()
	resp.Diagnostics.Append(diags...)
}
