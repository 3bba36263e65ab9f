// Package provider is the Terraform provider: schemas, CRUD and
// diagnostics. It is the only package that imports terraform-plugin-*; all
// BMC work goes through the engine.Engine interface.
package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// Environment variables the provider reads when an attribute is not set.
const (
	envBMCUsername = "METAL_BMC_USERNAME"
	envBMCPassword = "METAL_BMC_PASSWORD"
)

const (
	defaultMaxConcurrentBMCOperations = 16
	defaultPollInterval               = "2s"
)

// Server builds provider instances and owns the engines they create, so the
// plugin can release them when Terraform closes it.
type Server struct {
	// Factory returns a new provider instance, for providerserver.Serve.
	Factory func() provider.Provider

	mu sync.Mutex
	// engines holds one engine per distinct configuration. Terraform (and
	// terraform-plugin-testing, which serves many commands from one
	// process) configures a provider for every command; sharing the engine
	// keeps one boot service on its ports instead of a second one failing
	// to bind them.
	engines map[string]engine.Engine
	closed  bool
}

// New returns the provider server for a build version and commit.
func New(version, commit string) *Server {
	s := &Server{engines: map[string]engine.Engine{}}
	s.Factory = func() provider.Provider {
		return &metalProvider{version: version, commit: commit, server: s}
	}
	return s
}

// Shutdown closes every engine the provider instances created. It is safe to
// call more than once; engines created afterwards are closed at once.
func (s *Server) Shutdown() {
	s.mu.Lock()
	engines := s.engines
	s.engines, s.closed = map[string]engine.Engine{}, true
	s.mu.Unlock()
	for _, e := range engines {
		_ = e.Close()
	}
}

// engineFor returns the engine for cfg, creating it on first use. The key
// is the whole configuration (it never leaves this process's memory).
func (s *Server) engineFor(cfg engine.Config) (engine.Engine, error) {
	key, err := engineKey(cfg)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.engines[key]; ok {
		return e, nil
	}
	e := engine.Engine(engine.NewEmbedded(cfg))
	if s.closed {
		_ = e.Close()
		return e, nil
	}
	s.engines[key] = e
	return e, nil
}

// engineKey identifies an engine configuration: everything but the logger,
// which is the same for every engine.
func engineKey(cfg engine.Config) (string, error) {
	b, err := json.Marshal(struct {
		MaxOps int                `json:"max_ops"`
		Poll   time.Duration      `json:"poll"`
		Retry  any                `json:"retry"`
		Boot   *engine.BootConfig `json:"boot"`
	}{cfg.MaxConcurrentBMCOperations, cfg.PollInterval, cfg.Retry, cfg.Boot})
	return string(b), err
}

// metalProvider is one provider instance (one per Terraform provider block).
type metalProvider struct {
	version string
	commit  string
	server  *Server
}

var (
	_ provider.Provider                   = (*metalProvider)(nil)
	_ provider.ProviderWithValidateConfig = (*metalProvider)(nil)
)

// providerModel maps the provider block.
type providerModel struct {
	BMCUsername                types.String      `tfsdk:"bmc_username"`
	BMCPassword                types.String      `tfsdk:"bmc_password"`
	BMCInsecure                types.Bool        `tfsdk:"bmc_insecure"`
	BMCCACertificate           types.String      `tfsdk:"bmc_ca_certificate"`
	MaxConcurrentBMCOperations types.Int64       `tfsdk:"max_concurrent_bmc_operations"`
	PollInterval               types.String      `tfsdk:"poll_interval"`
	BootService                *bootServiceModel `tfsdk:"boot_service"`
}

// bmcDefaults are the connection settings every `bmc` block inherits.
type bmcDefaults struct {
	username      string
	password      string
	insecure      bool
	caCertificate string
}

// providerData is what resources and data sources receive from Configure.
// They see the engine only through its interface.
type providerData struct {
	engine   engine.Engine
	defaults bmcDefaults
	// boot is the boot service configuration; nil when the provider has no
	// boot_service block (provisioning is off).
	boot *engine.BootConfig
}

func (p *metalProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "metal"
	resp.Version = p.version
}

func (p *metalProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = providerSchemaV0()
}

func providerSchemaV0() schema.Schema {
	return schema.Schema{
		MarkdownDescription: "The Metal provider manages bare-metal machines through their BMCs over Redfish and " +
			"installs their operating systems over the network. The settings here are defaults that every `bmc` " +
			"block inherits, limits for the provider as a whole, and the `boot_service` that provisioning uses.",
		Blocks: map[string]schema.Block{
			"boot_service": bootServiceBlock(),
		},
		Attributes: map[string]schema.Attribute{
			"bmc_username": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "Username for BMCs whose `bmc` block sets none. " +
					"When unset, the `" + envBMCUsername + "` environment variable is used.",
			},
			"bmc_password": schema.StringAttribute{
				Optional:  true,
				Sensitive: true,
				MarkdownDescription: "Password for BMCs whose `bmc` block sets none. " +
					"When unset, the `" + envBMCPassword + "` environment variable is used. " +
					"Refresh, import and destroy of a `metal_machine` created with the write-only `bmc.password_wo` " +
					"use this password, because Terraform never sends write-only values to those operations.",
			},
			"bmc_insecure": schema.BoolAttribute{
				Optional: true,
				MarkdownDescription: "Skip verification of every BMC's TLS certificate (default: `false`). " +
					"This is a lab-only opt-in: anyone on the path to the BMC could read its credentials. " +
					"Prefer `bmc_ca_certificate`.",
			},
			"bmc_ca_certificate": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "PEM-encoded CA certificate(s) trusted for BMCs whose `bmc` block sets no " +
					"`ca_certificate`, instead of the system's trust store. Use `file(\"bmc-ca.pem\")` to read one from disk.",
			},
			"max_concurrent_bmc_operations": schema.Int64Attribute{
				Optional: true,
				Validators: []validator.Int64{
					int64validator.AtLeast(1),
				},
				MarkdownDescription: fmt.Sprintf("The most BMC operations this provider runs at once, across all "+
					"resources (default: `%d`; at least `1`). Each BMC additionally runs one power or boot change at a "+
					"time. Lower it to stagger power-ons across a fleet.", defaultMaxConcurrentBMCOperations),
			},
			"poll_interval": schema.StringAttribute{
				Optional:   true,
				Validators: []validator.String{durationValidator{}},
				MarkdownDescription: "How often BMC state is read again while waiting for a change such as power-on, " +
					"as a Go duration string like `500ms` or `5s` (default: `" + defaultPollInterval + "`).",
			},
		},
	}
}

func (p *metalProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var cfg providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	unknown := map[string]bool{
		"bmc_username":                  cfg.BMCUsername.IsUnknown(),
		"bmc_password":                  cfg.BMCPassword.IsUnknown(),
		"bmc_insecure":                  cfg.BMCInsecure.IsUnknown(),
		"bmc_ca_certificate":            cfg.BMCCACertificate.IsUnknown(),
		"max_concurrent_bmc_operations": cfg.MaxConcurrentBMCOperations.IsUnknown(),
		"poll_interval":                 cfg.PollInterval.IsUnknown(),
	}
	for _, name := range []string{"bmc_username", "bmc_password", "bmc_insecure", "bmc_ca_certificate", "max_concurrent_bmc_operations", "poll_interval"} {
		if unknown[name] {
			resp.Diagnostics.AddAttributeError(path.Root(name), "Unknown Provider Setting",
				fmt.Sprintf("`%s` depends on a value that is only known after apply. The provider needs it to plan; "+
					"set it from a variable or a value known before apply.", name))
		}
	}
	if cfg.BootService != nil {
		for _, p := range cfg.BootService.unknownBootSettings() {
			resp.Diagnostics.AddAttributeError(p, "Unknown Provider Setting",
				fmt.Sprintf("`%s` depends on a value that is only known after apply. The provider needs it to plan; "+
					"set it from a variable or a value known before apply.", p))
		}
	}
	if resp.Diagnostics.HasError() {
		return
	}

	var boot *engine.BootConfig
	if cfg.BootService != nil && !cfg.BootService.remote() {
		var diags diag.Diagnostics
		boot, diags = cfg.BootService.bootConfig()
		resp.Diagnostics.Append(diags...)
		if resp.Diagnostics.HasError() {
			return
		}
	}

	defaults := bmcDefaults{
		username:      cfg.BMCUsername.ValueString(),
		password:      cfg.BMCPassword.ValueString(),
		insecure:      cfg.BMCInsecure.ValueBool(),
		caCertificate: cfg.BMCCACertificate.ValueString(),
	}
	if cfg.BMCUsername.IsNull() {
		defaults.username = os.Getenv(envBMCUsername)
	}
	if cfg.BMCPassword.IsNull() {
		defaults.password = os.Getenv(envBMCPassword)
	}
	if cfg.BootService != nil && cfg.BootService.remote() {
		// The daemon runs the engine; its own configuration sets BMC
		// concurrency and polling.
		p.configureRemote(ctx, cfg.BootService, defaults, resp)
		return
	}

	maxOps := int64(defaultMaxConcurrentBMCOperations)
	if !cfg.MaxConcurrentBMCOperations.IsNull() {
		maxOps = cfg.MaxConcurrentBMCOperations.ValueInt64()
	}
	pollRaw := defaultPollInterval
	if !cfg.PollInterval.IsNull() {
		pollRaw = cfg.PollInterval.ValueString()
	}
	poll, err := time.ParseDuration(pollRaw)
	if err != nil || poll <= 0 {
		// The validator has already explained this; be defensive anyway.
		resp.Diagnostics.AddAttributeError(path.Root("poll_interval"), "Invalid Duration",
			fmt.Sprintf("%q is not a positive duration such as \"2s\".", pollRaw))
		return
	}

	eng, err := p.server.engineFor(engine.Config{
		Logger:                     slog.New(newTflogHandler()),
		MaxConcurrentBMCOperations: int(maxOps),
		PollInterval:               poll,
		Boot:                       boot,
	})
	if err != nil {
		resp.Diagnostics.AddError("Unable to Configure the Provider", "Please report this issue to the provider developers.\n\nOriginal Error: "+err.Error())
		return
	}

	tflog.Info(ctx, "Configured the Metal provider", map[string]any{
		"version":                       p.version,
		"commit":                        p.commit,
		"max_concurrent_bmc_operations": maxOps,
		"poll_interval":                 poll.String(),
		"bmc_username_set":              defaults.username != "",
		"bmc_password_set":              defaults.password != "",
		"boot_service":                  boot != nil,
	})

	data := &providerData{engine: eng, defaults: defaults, boot: boot}
	resp.ResourceData = data
	resp.DataSourceData = data
}

func (p *metalProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		NewMachineResource,
		NewOSImageResource,
		NewRoleResource,
		NewRAIDVolumeResource,
		NewBIOSProfileResource,
	}
}

func (p *metalProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		NewMachineInventoryDataSource,
		NewDiscoveredMachinesDataSource,
		NewStorageDataSource,
		NewRoleDataSource,
	}
}
