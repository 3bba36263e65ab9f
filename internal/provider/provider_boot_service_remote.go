package provider

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/composable-metal/terraform-provider-metal/internal/api"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// envBootServiceToken is read when boot_service.token is not set.
const envBootServiceToken = "METAL_BOOT_SERVICE_TOKEN"

var (
	pathBootEndpoint    = pathBootService.AtName("endpoint")
	pathBootToken       = pathBootService.AtName("token")
	pathBootCACert      = pathBootService.AtName("ca_certificate")
	pathBootFingerprint = pathBootService.AtName("tls_fingerprint")
)

func remoteAttributes() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"endpoint": schema.StringAttribute{
			Optional: true,
			MarkdownDescription: "`https://host:port` of a `terraform-provider-metal serve` daemon. When set, the daemon " +
				"runs the boot service and talks to the BMCs, and the provider only calls its API (remote mode); the " +
				"embedded settings (`address`, `interface`, `http_listen`, `state_dir`, `ipxe_dir`, `dhcp`, `tftp`) " +
				"must then be left out: they belong in the daemon's `metal.yaml`.",
		},
		"token": schema.StringAttribute{
			Optional:  true,
			Sensitive: true,
			MarkdownDescription: "API token of the daemon (remote mode), as printed by `terraform-provider-metal token create`. " +
				"When unset, the `" + envBootServiceToken + "` environment variable is used.",
		},
		"ca_certificate": schema.StringAttribute{
			Optional: true,
			MarkdownDescription: "PEM CA certificate that signed the daemon's certificate (remote mode). Conflicts with " +
				"`tls_fingerprint`. Without either, the system's trust store is used.",
		},
		"tls_fingerprint": schema.StringAttribute{
			Optional: true,
			MarkdownDescription: "SHA-256 fingerprint (hex, colons allowed) of the daemon's certificate, as the daemon " +
				"prints at start (remote mode). Pins that certificate instead of verifying a CA chain, for the daemon's " +
				"self-signed certificate. Conflicts with `ca_certificate`.",
		},
	}
}

// remote reports whether the block selects remote mode.
func (m *bootServiceModel) remote() bool { return !m.Endpoint.IsNull() }

// embeddedSettings lists the embedded-mode settings that are set.
func (m *bootServiceModel) embeddedSettings() []path.Path {
	var out []path.Path
	for _, a := range []struct {
		p   path.Path
		set bool
	}{
		{pathBootAddress, !m.Address.IsNull()},
		{pathBootService.AtName("interface"), !m.Interface.IsNull()},
		{pathBootService.AtName("http_listen"), !m.HTTPListen.IsNull()},
		{pathBootStateDir, !m.StateDir.IsNull()},
		{pathBootService.AtName("ipxe_dir"), !m.IPXEDir.IsNull()},
		{pathBootService.AtName("agent_binary"), !m.AgentBinary.IsNull()},
		{pathBootDHCP, m.DHCP != nil},
		{pathBootService.AtName("tftp"), m.TFTP != nil},
	} {
		if a.set {
			out = append(out, a.p)
		}
	}
	return out
}

// validateRemote checks a remote-mode block at plan time.
func (m *bootServiceModel) validateRemote() diag.Diagnostics {
	var diags diag.Diagnostics
	for _, p := range m.embeddedSettings() {
		diags.AddAttributeError(p, "Conflicting Boot Service Settings",
			"`boot_service.endpoint` (a remote metal daemon) and `"+p.String()+"` (the boot service embedded in the "+
				"provider) cannot both be set. In remote mode the daemon's metal.yaml holds the network settings: "+
				"remove `"+p.String()+"`, or remove `endpoint` to run the boot service inside the provider.")
	}
	if !m.CACertificate.IsNull() && !m.TLSFingerprint.IsNull() {
		diags.AddAttributeError(pathBootFingerprint, "Conflicting Boot Service Settings",
			"Set either `boot_service.ca_certificate` or `boot_service.tls_fingerprint`, not both.")
	}
	if v := m.Endpoint; !v.IsUnknown() {
		if _, err := api.NewClient(api.Config{Endpoint: v.ValueString(), Token: "x"}); err != nil {
			diags.AddAttributeError(pathBootEndpoint, "Invalid Boot Service Endpoint", err.Error())
		}
	}
	if v := m.TLSFingerprint; !v.IsNull() && !v.IsUnknown() {
		if _, err := api.ParseFingerprint(v.ValueString()); err != nil {
			diags.AddAttributeError(pathBootFingerprint, "Invalid TLS Fingerprint", err.Error())
		}
	}
	return diags
}

// remoteSettingsWithoutEndpoint reports remote settings in an embedded block.
func (m *bootServiceModel) remoteSettingsWithoutEndpoint() diag.Diagnostics {
	var diags diag.Diagnostics
	for _, a := range []struct {
		p   path.Path
		set bool
	}{{pathBootToken, !m.Token.IsNull()}, {pathBootCACert, !m.CACertificate.IsNull()}, {pathBootFingerprint, !m.TLSFingerprint.IsNull()}} {
		if a.set {
			diags.AddAttributeError(a.p, "Boot Service Setting Needs an Endpoint",
				"`"+a.p.String()+"` is for a remote metal daemon: set `boot_service.endpoint` too, or remove it.")
		}
	}
	return diags
}

// configureRemote connects to the daemon and hands resources a client.
func (p *metalProvider) configureRemote(ctx context.Context, m *bootServiceModel, defaults bmcDefaults, resp *provider.ConfigureResponse) {
	token := m.Token.ValueString()
	if m.Token.IsNull() {
		token = os.Getenv(envBootServiceToken)
	}
	if token == "" {
		resp.Diagnostics.AddAttributeError(pathBootToken, "Missing Boot Service Token",
			"`boot_service.endpoint` is set but no API token is: set `boot_service.token` or the "+envBootServiceToken+
				" environment variable to a token made on the daemon's host with `terraform-provider-metal token create`.")
		return
	}
	cfg := api.Config{
		Endpoint: m.Endpoint.ValueString(), Token: token,
		CACertificate: m.CACertificate.ValueString(), TLSFingerprint: m.TLSFingerprint.ValueString(),
		Logger: slog.New(newTflogHandler()),
	}
	c, err := p.server.remoteFor(cfg)
	if err != nil {
		resp.Diagnostics.AddAttributeError(pathBootEndpoint, "Invalid Boot Service Settings", err.Error())
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	boot, err := c.BootConfig(cctx)
	if err != nil {
		resp.Diagnostics.Append(remoteErrorDiagnostic(err))
		return
	}
	tflog.Info(ctx, "Configured the Metal provider against a boot service daemon", map[string]any{
		"version": p.version, "endpoint": cfg.Endpoint, "pinned": cfg.TLSFingerprint != "",
	})
	data := &providerData{engine: c, defaults: defaults, boot: boot}
	resp.ResourceData = data
	resp.DataSourceData = data
}

// remoteFor returns the client for cfg, shared like embedded engines.
func (s *Server) remoteFor(cfg api.Config) (*api.Client, error) {
	b, err := json.Marshal([]string{"remote", cfg.Endpoint, cfg.Token, cfg.CACertificate, strings.ToLower(cfg.TLSFingerprint)})
	if err != nil {
		return nil, err
	}
	key := string(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.engines[key]; ok {
		if c, ok := e.(*api.Client); ok {
			return c, nil
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	if !s.closed {
		s.engines[key] = c
	}
	return c, nil
}

// remoteErrorDiagnostic explains a failure to talk to the daemon itself.
func remoteErrorDiagnostic(err error) diag.Diagnostic {
	var verr *api.VersionError
	switch {
	case errors.Is(err, api.ErrFingerprintMismatch):
		return diag.NewAttributeErrorDiagnostic(pathBootFingerprint, "Boot Service Certificate Fingerprint Mismatch",
			"The daemon at `boot_service.endpoint` presented a certificate whose SHA-256 is not `tls_fingerprint`. "+
				"If its certificate was replaced on purpose, copy the fingerprint the daemon prints at start; otherwise "+
				"something else answers at that address.\n\nOriginal Error: "+err.Error())
	case errors.Is(err, api.ErrDaemonTLS):
		return diag.NewAttributeErrorDiagnostic(pathBootCACert, "Untrusted Boot Service Certificate",
			"The daemon's TLS certificate is not trusted. Set `boot_service.ca_certificate` to the CA that signed it, "+
				"or pin the daemon's own certificate with `boot_service.tls_fingerprint` (printed at its start).\n\n"+
				"Original Error: "+err.Error())
	case errors.Is(err, api.ErrInvalidToken):
		return diag.NewAttributeErrorDiagnostic(pathBootToken, "Boot Service Token Rejected",
			"The daemon rejected the API token: it is wrong, was rotated or was revoked. Make one on the daemon's host "+
				"with `terraform-provider-metal token create --state-dir <dir> <name>` and set `boot_service.token` or "+
				envBootServiceToken+".\n\nOriginal Error: "+err.Error())
	case errors.As(err, &verr):
		return diag.NewAttributeErrorDiagnostic(pathBootEndpoint, "Boot Service Version Mismatch", err.Error())
	case errors.Is(err, api.ErrDaemonUnreachable):
		return diag.NewAttributeErrorDiagnostic(pathBootEndpoint, "Boot Service Daemon Unreachable",
			"Nothing answered at `boot_service.endpoint`. Check that `terraform-provider-metal serve` runs there and that "+
				"this runner can reach its API port (from Terraform Cloud, through a Cloud Agent or a public address).\n\n"+
				"Original Error: "+err.Error())
	case errors.Is(err, engine.ErrBootServiceNotConfigured):
		return diag.NewAttributeErrorDiagnostic(pathBootEndpoint, "Boot Service Not Configured", err.Error())
	}
	return diag.NewAttributeErrorDiagnostic(pathBootEndpoint, "Unable to Reach the Boot Service", err.Error())
}

// isRemoteError reports errors about the daemon rather than the engine.
func isRemoteError(err error) bool {
	for _, e := range []error{api.ErrFingerprintMismatch, api.ErrDaemonTLS, api.ErrInvalidToken, api.ErrVersionSkew, api.ErrDaemonUnreachable} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
