package provider

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// defaultImageCreateTimeout bounds downloading and hashing an image's files.
const defaultImageCreateTimeout = 30 * time.Minute

// The files of an image, in the order they are fetched. They name the
// nested attributes and the engine's roles alike.
const (
	roleKernel = "kernel"
	roleInitrd = "initrd"
	roleImage  = "image"
)

var (
	artifactRoles     = []string{roleKernel, roleInitrd, roleImage}
	artifactSchemes   = []string{"http", "https", "file"}
	osImageNameRegexp = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	sha256Regexp      = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

var (
	_ resource.Resource                   = (*osImageResource)(nil)
	_ resource.ResourceWithConfigure      = (*osImageResource)(nil)
	_ resource.ResourceWithImportState    = (*osImageResource)(nil)
	_ resource.ResourceWithValidateConfig = (*osImageResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*osImageResource)(nil)
)

// NewOSImageResource returns the metal_os_image resource.
func NewOSImageResource() resource.Resource { return &osImageResource{} }

// osImageResource is an OS image in the boot service's cache.
type osImageResource struct {
	engine engine.Engine
	boot   *engine.BootConfig
}

type osImageResourceModel struct {
	ID         types.String   `tfsdk:"id"`
	Name       types.String   `tfsdk:"name"`
	Kernel     *artifactModel `tfsdk:"kernel"`
	Initrd     *artifactModel `tfsdk:"initrd"`
	Image      *artifactModel `tfsdk:"image"`
	KernelArgs types.List     `tfsdk:"kernel_args"`
	Install    types.String   `tfsdk:"install"`
	Templates  types.Map      `tfsdk:"templates"`
	KernelSize types.Int64    `tfsdk:"kernel_size"`
	InitrdSize types.Int64    `tfsdk:"initrd_size"`
	ImageSize  types.Int64    `tfsdk:"image_size"`
	Timeouts   timeouts.Value `tfsdk:"timeouts"`
}

// artifactModel is one file of an image: where it comes from and its sum.
type artifactModel struct {
	URL    types.String `tfsdk:"url"`
	SHA256 types.String `tfsdk:"sha256"`
}

func (r *osImageResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_os_image"
}

func (r *osImageResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = osImageResourceSchemaV0(ctx)
}

func osImageResourceSchemaV0(ctx context.Context) schema.Schema {
	return schema.Schema{
		Version: 0,
		MarkdownDescription: "An operating system image that machines network-install: a kernel, an initrd, optionally " +
			"a disk image or root file system, and how to install it. Creating it downloads (or reads) every file into " +
			"the boot service's content-addressed cache, checking each sha256; a `metal_machine` then refers to it by " +
			"`name` in `os_image`. Every argument is fixed once created: changing one replaces the image. " +
			"Needs the provider's `boot_service` block.",
		Attributes: map[string]schema.Attribute{
			"name": schema.StringAttribute{
				Required: true,
				PlanModifiers: []planmodifier.String{
					stringplanmodifier.RequiresReplace(),
				},
				Validators: []validator.String{
					stringvalidator.RegexMatches(osImageNameRegexp, "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"),
				},
				MarkdownDescription: "Name of the image in the boot service, and the resource's id: 1 to 128 letters, " +
					"digits, `.`, `_` or `-`, starting with a letter or digit. Machines refer to it in `os_image`; use " +
					"`metal_os_image.<name>.name` so Terraform creates the image first. Changing it replaces the image.",
			},
			"kernel": artifactAttribute(roleKernel, "The kernel the machine boots.", true),
			"initrd": artifactAttribute(roleInitrd, "The initial RAM disk booted with the kernel.", true),
			"image": artifactAttribute(roleImage, "An optional third file the installer downloads: the disk image "+
				"written by `install = \"image\"`, or the live root file system of `install = \"ignition\"`.", false),
			"kernel_args": schema.ListAttribute{
				Optional:    true,
				ElementType: types.StringType,
				PlanModifiers: []planmodifier.List{
					listplanmodifier.RequiresReplaceIf(unlessImportedList, requiresReplaceDescription, requiresReplaceDescription),
				},
				MarkdownDescription: "Extra kernel command-line arguments, such as `console=ttyS0,115200n8`, added after " +
					"the ones the install kind needs. Changing them replaces the image.",
			},
			"install": schema.StringAttribute{
				Required: true,
				PlanModifiers: []planmodifier.String{
					stringplanmodifier.RequiresReplace(),
				},
				Validators: []validator.String{stringvalidator.OneOf(engine.InstallKinds()...)},
				MarkdownDescription: "How the booted kernel installs the machine, which decides the kernel arguments and " +
					"the configuration files the boot service renders for it: `cloud-init` (a NoCloud seed), `kickstart`, " +
					"`ignition` (CoreOS), `ipxe` (a raw iPXE script from `templates` or the machine's `user_data`), or " +
					"`image` (an image writer that copies `image` to the disk). Allowed values: " +
					backtickList(engine.InstallKinds()) + ". Changing it replaces the image.",
			},
			"templates": schema.MapAttribute{
				Optional:    true,
				ElementType: types.StringType,
				PlanModifiers: []planmodifier.Map{
					mapplanmodifier.RequiresReplaceIf(unlessImportedMap, requiresReplaceDescription, requiresReplaceDescription),
				},
				MarkdownDescription: "Templates that replace the built-in ones, by file name (such as `user-data`, " +
					"`kickstart` or `script.ipxe`), in Go `text/template` syntax. Rendering is strict: a missing value is " +
					"an error, never an empty string. Changing them replaces the image.",
			},
			"id": schema.StringAttribute{
				Computed: true,
				PlanModifiers: []planmodifier.String{
					stringplanmodifier.UseStateForUnknown(),
				},
				MarkdownDescription: "The image's `name`. `terraform import` takes the name as well.",
			},
			"kernel_size": computedInt64("Size of the kernel in bytes."),
			"initrd_size": computedInt64("Size of the initrd in bytes."),
			"image_size":  computedInt64("Size of `image` in bytes; null without one."),
		},
		Blocks: map[string]schema.Block{
			"timeouts": osImageTimeoutsBlock(ctx),
		},
	}
}

const requiresReplaceDescription = "Changing this replaces the resource."

func artifactAttribute(role, description string, required bool) schema.SingleNestedAttribute {
	a := schema.SingleNestedAttribute{
		Required: required,
		Optional: !required,
		MarkdownDescription: description + " Files are cached by content, so images that share a file store it once. " +
			"Changing the file replaces the image.",
		Attributes: map[string]schema.Attribute{
			"url": schema.StringAttribute{
				Required: true,
				PlanModifiers: []planmodifier.String{
					stringplanmodifier.RequiresReplaceIf(unlessImportedString, requiresReplaceDescription, requiresReplaceDescription),
				},
				MarkdownDescription: "Where the " + role + " comes from: `https://`, `http://` or `file:///absolute/path` " +
					"on the host running Terraform. Allowed schemes: " + backtickList(artifactSchemes) + ".",
			},
			"sha256": schema.StringAttribute{
				Optional: true,
				Computed: true,
				PlanModifiers: []planmodifier.String{
					stringplanmodifier.UseStateForUnknown(),
					stringplanmodifier.RequiresReplace(),
				},
				MarkdownDescription: "SHA-256 of the " + role + " as 64 lower-case hex digits (the first field of " +
					"`sha256sum`). Required for `http(s)` URLs, so what machines boot is pinned in the configuration; " +
					"for a `file://` URL it is computed from the file when unset. A download that does not match is an " +
					"error and nothing is cached.",
			},
		},
	}
	if !required {
		a.PlanModifiers = []planmodifier.Object{
			objectplanmodifier.RequiresReplaceIf(presenceChanged, "Adding or removing it replaces the resource.", "Adding or removing it replaces the resource."),
		}
	}
	return a
}

func computedInt64(description string) schema.Int64Attribute {
	return schema.Int64Attribute{
		Computed:            true,
		PlanModifiers:       []planmodifier.Int64{int64planmodifier.UseStateForUnknown()},
		MarkdownDescription: description,
	}
}

// presenceChanged replaces the image when an optional file is added or
// removed; changes inside it are judged by its own attributes.
func presenceChanged(_ context.Context, req planmodifier.ObjectRequest, resp *objectplanmodifier.RequiresReplaceIfFuncResponse) {
	resp.RequiresReplace = req.StateValue.IsNull() != req.PlanValue.IsNull()
}

// unlessImported* require replacement on a change, except right after
// import: the boot service does not record where an image's files came
// from, its kernel arguments or its templates, so an imported image has no
// kernel.url in state and takes these from the configuration in place
// (Update checks the files against the recorded sums).
func unlessImportedString(ctx context.Context, req planmodifier.StringRequest, resp *stringplanmodifier.RequiresReplaceIfFuncResponse) {
	resp.RequiresReplace = !imported(ctx, req.State)
}

func unlessImportedList(ctx context.Context, req planmodifier.ListRequest, resp *listplanmodifier.RequiresReplaceIfFuncResponse) {
	resp.RequiresReplace = !imported(ctx, req.State)
}

func unlessImportedMap(ctx context.Context, req planmodifier.MapRequest, resp *mapplanmodifier.RequiresReplaceIfFuncResponse) {
	resp.RequiresReplace = !imported(ctx, req.State)
}

// imported reports state that came from import and has not been applied
// since: kernel.url, required in configuration, is null.
func imported(ctx context.Context, state tfsdk.State) bool {
	var u types.String
	if diags := state.GetAttribute(ctx, path.Root(roleKernel).AtName("url"), &u); diags.HasError() {
		return false
	}
	return u.IsNull()
}

func osImageTimeoutsBlock(ctx context.Context) schema.Block {
	return describedTimeoutsBlock(ctx, "Limits on how long each operation may take.", map[string]string{
		"create": fmt.Sprintf("How long creating may take, including downloading and hashing every file (default: `%s`).", shortDuration(defaultImageCreateTimeout)),
		"read":   fmt.Sprintf("How long a refresh or import may take (default: `%s`).", shortDuration(defaultReadTimeout)),
		"update": fmt.Sprintf("How long adopting an imported image may take, including hashing its files (default: `%s`).", shortDuration(defaultImageCreateTimeout)),
		"delete": fmt.Sprintf("How long destroying may take (default: `%s`).", shortDuration(defaultReadTimeout)),
	})
}

func (r *osImageResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	if req.ProviderData == nil {
		return
	}
	data, ok := req.ProviderData.(*providerData)
	if !ok {
		resp.Diagnostics.AddError("Unexpected Resource Configure Type",
			fmt.Sprintf("Expected *providerData, got: %T. Please report this issue to the provider developers.", req.ProviderData))
		return
	}
	r.engine = data.engine
	r.boot = data.boot
}

// ValidateConfig checks every file's URL and sum when planning.
func (r *osImageResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	for _, role := range artifactRoles {
		var u, sum types.String
		resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root(role).AtName("url"), &u)...)
		resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root(role).AtName("sha256"), &sum)...)
		if resp.Diagnostics.HasError() {
			return
		}
		resp.Diagnostics.Append(validateArtifact(role, u, sum)...)
	}
}

// validateArtifact checks one file's url and sha256 without fetching it.
func validateArtifact(role string, u, sum types.String) diag.Diagnostics {
	var diags diag.Diagnostics
	urlPath, sumPath := path.Root(role).AtName("url"), path.Root(role).AtName("sha256")
	if !sum.IsNull() && !sum.IsUnknown() && !sha256Regexp.MatchString(sum.ValueString()) {
		diags.AddAttributeError(sumPath, "Invalid Checksum",
			fmt.Sprintf("`%s.sha256` %q is not a SHA-256: write it as 64 lower-case hex digits, as the first field "+
				"`sha256sum` prints.", role, sum.ValueString()))
	}
	if u.IsNull() || u.IsUnknown() {
		return diags
	}
	raw := u.ValueString()
	parsed, err := url.Parse(raw)
	scheme := ""
	if err == nil {
		scheme = strings.ToLower(parsed.Scheme)
	}
	switch {
	case err != nil || (scheme != "http" && scheme != "https" && scheme != "file"):
		diags.AddAttributeError(urlPath, "Invalid Image URL",
			fmt.Sprintf("`%s.url` %q must be an http://, https:// or file:/// URL.", role, raw))
	case scheme == "file":
		if (parsed.Host != "" && parsed.Host != "localhost") || !strings.HasPrefix(parsed.Path, "/") {
			diags.AddAttributeError(urlPath, "Invalid Image URL",
				fmt.Sprintf("`%s.url` %q must name an absolute path on the host running Terraform, such as "+
					"\"file:///srv/images/vmlinuz\" (three slashes).", role, raw))
		}
	default:
		if parsed.Host == "" {
			diags.AddAttributeError(urlPath, "Invalid Image URL", fmt.Sprintf("`%s.url` %q has no host.", role, raw))
		}
		if parsed.User != nil {
			diags.AddAttributeError(urlPath, "Invalid Image URL",
				fmt.Sprintf("`%s.url` carries credentials. They would be stored in state and logs: serve the file "+
					"without them, or copy it to this host and use a file:/// URL.", role))
		}
		if sum.IsNull() {
			diags.AddAttributeError(sumPath, "Missing Checksum",
				fmt.Sprintf("`%s.url` is downloaded over %s, so its content must be pinned: add `sha256 = \"<64 hex>\"` "+
					"to `%s` (the first field `sha256sum` prints for the file). The boot service refuses a download "+
					"that does not match, so machines only ever boot the file you reviewed.", role, scheme, role))
		}
	}
	return diags
}

// ModifyPlan reports a missing boot_service when planning, before anything
// is fetched.
func (r *osImageResource) ModifyPlan(_ context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.engine == nil {
		return
	}
	resp.Diagnostics.Append(requireBootService(r.boot, opImageCreate, path.Empty())...)
}

// spec is the engine's view of the image. pinned fills sums the
// configuration leaves unset from state, so re-reading a file:// source
// checks it has not changed.
func (m *osImageResourceModel) spec(ctx context.Context, pinned *osImageResourceModel) (engine.ImageSpec, diag.Diagnostics) {
	var diags diag.Diagnostics
	src := func(a, p *artifactModel) engine.ArtifactSource {
		s := engine.ArtifactSource{URL: a.URL.ValueString()}
		switch {
		case !a.SHA256.IsNull() && !a.SHA256.IsUnknown():
			s.SHA256 = a.SHA256.ValueString()
		case p != nil && !p.SHA256.IsNull() && !p.SHA256.IsUnknown():
			s.SHA256 = p.SHA256.ValueString()
		}
		return s
	}
	var pk, pi, pm *artifactModel
	if pinned != nil {
		pk, pi, pm = pinned.Kernel, pinned.Initrd, pinned.Image
	}
	spec := engine.ImageSpec{
		Name:   m.Name.ValueString(),
		Kernel: src(m.Kernel, pk),
		Initrd: src(m.Initrd, pi),
		Kind:   m.Install.ValueString(),
	}
	if m.Image != nil {
		s := src(m.Image, pm)
		spec.Image = &s
	}
	if !m.KernelArgs.IsNull() && !m.KernelArgs.IsUnknown() {
		diags.Append(m.KernelArgs.ElementsAs(ctx, &spec.KernelArgs, false)...)
	}
	if !m.Templates.IsNull() && !m.Templates.IsUnknown() {
		diags.Append(m.Templates.ElementsAs(ctx, &spec.Templates, false)...)
	}
	return spec, diags
}

// applyInfo records what the boot service cached. Sums the configuration
// set are equal to the cached ones (the cache verified them); unset ones
// are filled.
func (m *osImageResourceModel) applyInfo(info *engine.ImageInfo) {
	m.ID = types.StringValue(info.Name)
	m.Name = types.StringValue(info.Name)
	m.Install = types.StringValue(info.Kind)
	setFile := func(a **artifactModel, sum string) {
		if *a == nil {
			// Only after import: where the file came from is not recorded.
			*a = &artifactModel{URL: types.StringNull()}
		}
		(*a).SHA256 = types.StringValue(sum)
	}
	setFile(&m.Kernel, info.KernelSHA256)
	setFile(&m.Initrd, info.InitrdSHA256)
	m.KernelSize = types.Int64Value(info.KernelSize)
	m.InitrdSize = types.Int64Value(info.InitrdSize)
	if info.ImageSHA256 != "" {
		setFile(&m.Image, info.ImageSHA256)
		m.ImageSize = types.Int64Value(info.ImageSize)
	} else {
		m.Image = nil
		m.ImageSize = types.Int64Null()
	}
	if m.KernelArgs.IsUnknown() {
		m.KernelArgs = types.ListNull(types.StringType)
	}
	if m.Templates.IsUnknown() {
		m.Templates = types.MapNull(types.StringType)
	}
}

// requireBootService reports a provider without boot_service.
func requireBootService(boot *engine.BootConfig, op operation, at path.Path) diag.Diagnostics {
	var diags diag.Diagnostics
	if boot == nil {
		diags.Append(bootErrorDiagnostic(op, engine.ErrBootServiceNotConfigured, at))
	}
	return diags
}

func (r *osImageResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan osImageResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Create(ctx, defaultImageCreateTimeout)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(requireBootService(r.boot, opImageCreate, path.Empty())...)
	spec, diags := plan.spec(ctx, nil)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx)
	tflog.Debug(ctx, "Caching OS image", map[string]any{"name": spec.Name, "kind": spec.Kind})

	info, err := r.engine.EnsureImage(ctx, spec)
	if err != nil {
		resp.Diagnostics.Append(imageErrorDiagnostic(opImageCreate, err))
		return
	}
	plan.applyInfo(info)
	tflog.Info(ctx, "Cached OS image", map[string]any{"name": info.Name, "kernel_sha256": info.KernelSHA256, "initrd_sha256": info.InitrdSHA256})
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// imageErrorDiagnostic explains a failed EnsureImage, on the attribute of
// the file at fault where it can tell.
func imageErrorDiagnostic(op operation, err error) diag.Diagnostic {
	if errors.Is(err, context.DeadlineExceeded) {
		return diag.NewErrorDiagnostic("OS Image Download Timed Out",
			fmt.Sprintf("Unable to %s %s: fetching its files did not finish in time. For large images or slow "+
				"mirrors raise `timeouts.%s` (default: `%s`).\n\nOriginal Error: %s", op.verb, op.object, op.timeoutKey, op.timeout, err))
	}
	return bootErrorDiagnostic(op, err, path.Empty())
}

func (r *osImageResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state osImageResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Read(ctx, defaultReadTimeout)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(requireBootService(r.boot, opImageRead, path.Empty())...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx)

	info, err := r.engine.Image(ctx, state.Name.ValueString())
	if errors.Is(err, engine.ErrImageNotFound) {
		tflog.Warn(ctx, "OS image is gone from the boot service; removing it from state", map[string]any{"name": state.Name.ValueString()})
		resp.Diagnostics.AddWarning("OS Image Gone From Boot Service",
			fmt.Sprintf("The boot service no longer has OS image %q or one of its files (its cache in `boot_service.state_dir` "+
				"may have been cleared), so the image was removed from Terraform state. If it is still in the "+
				"configuration, the next apply fetches it again.\n\nDetail: %s", state.Name.ValueString(), err))
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.Append(bootErrorDiagnostic(opImageRead, err, path.Empty()))
		return
	}
	state.applyInfo(info)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// Update only ever runs for a change of timeouts, or to adopt an imported
// image: then the files named in the configuration are checked against the
// sums the boot service recorded and the image is saved with the
// configuration's kernel arguments and templates.
func (r *osImageResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state osImageResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if !imported(ctx, req.State) {
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}
	timeout, diags := plan.Timeouts.Update(ctx, defaultImageCreateTimeout)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(requireBootService(r.boot, opImageUpdate, path.Empty())...)
	spec, diags := plan.spec(ctx, &state)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx)
	info, err := r.engine.EnsureImage(ctx, spec)
	if err != nil {
		resp.Diagnostics.Append(imageErrorDiagnostic(opImageUpdate, err))
		return
	}
	plan.applyInfo(info)
	tflog.Info(ctx, "Adopted imported OS image", map[string]any{"name": info.Name})
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *osImageResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state osImageResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultReadTimeout)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(requireBootService(r.boot, opImageDelete, path.Empty())...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = withLogging(ctx)
	if err := r.engine.DeleteImage(ctx, state.Name.ValueString()); err != nil {
		resp.Diagnostics.Append(bootErrorDiagnostic(opImageDelete, err, path.Empty()))
		return
	}
	tflog.Info(ctx, "Deleted OS image", map[string]any{"name": state.Name.ValueString()})
}

func (r *osImageResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	name := strings.TrimSpace(req.ID)
	if !osImageNameRegexp.MatchString(name) {
		resp.Diagnostics.AddError("Invalid Import ID",
			fmt.Sprintf("Unable to import metal_os_image from %q: the ID is the image's name, 1 to 128 letters, "+
				"digits, '.', '_' or '-', starting with a letter or digit.", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), name)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), name)...)
}
