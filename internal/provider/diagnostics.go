package provider

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// operation names what the provider was doing when the engine failed; it
// picks the verb of the detail and the `timeouts` value to suggest.
type operation struct {
	verb       string // "create", "read", ...
	object     string // "machine", "machine inventory"
	timeoutKey string // "create", "read", ...; empty when there is no timeouts value
	timeout    string // the default, for the detail
}

var (
	opCreate    = operation{verb: "create", object: "machine", timeoutKey: "create", timeout: shortDuration(defaultCreateTimeout)}
	opRead      = operation{verb: "read", object: "machine", timeoutKey: "read", timeout: shortDuration(defaultReadTimeout)}
	opUpdate    = operation{verb: "update", object: "machine", timeoutKey: "update", timeout: shortDuration(defaultUpdateTimeout)}
	opDelete    = operation{verb: "delete", object: "machine", timeoutKey: "delete", timeout: shortDuration(defaultDeleteTimeout)}
	opInventory = operation{verb: "read", object: "machine inventory", timeoutKey: "read", timeout: shortDuration(defaultReadTimeout)}
)

// Attribute paths diagnostics point at. The resource and the data source
// both nest connection settings under `bmc`.
var (
	pathBMC              = path.Root("bmc")
	pathBMCEndpoint      = pathBMC.AtName("endpoint")
	pathBMCUsername      = pathBMC.AtName("username")
	pathBMCPassword      = pathBMC.AtName("password")
	pathBMCSystemID      = pathBMC.AtName("system_id")
	pathBMCCACertificate = pathBMC.AtName("ca_certificate")
	pathBootMAC          = path.Root("boot_mac")
)

const credentialHint = "Check `bmc.username`/`bmc.password` (or `bmc.password_wo`), the provider's `bmc_username`/`bmc_password`, " +
	"or the METAL_BMC_USERNAME/METAL_BMC_PASSWORD environment variables."

// engineErrorDiagnostic turns an engine error into one diagnostic that names
// the attribute to fix and says how. It matches with errors.Is/As only, so
// wrapping in the engine never changes the outcome. Engine errors never
// carry credentials; nothing here adds any.
func engineErrorDiagnostic(op operation, err error) diag.Diagnostic {
	unable := fmt.Sprintf("Unable to %s %s.", op.verb, op.object)
	if isRemoteError(err) {
		return remoteErrorDiagnostic(err)
	}
	var ambiguous *engine.AmbiguousSystemError
	switch {
	case errors.Is(err, engine.ErrInvalidEndpoint):
		return diag.NewAttributeErrorDiagnostic(pathBMCEndpoint, "Invalid BMC Endpoint",
			unable+" Set `bmc.endpoint` to https://host[:port] or https://host[:port]/redfish/v1/Systems/<id>.\n\n"+
				"Original Error: "+err.Error())
	case errors.Is(err, engine.ErrTLS):
		return diag.NewAttributeErrorDiagnostic(pathBMCCACertificate, "Untrusted BMC Certificate",
			unable+" The BMC's TLS certificate is not signed by a trusted authority. Set `bmc.ca_certificate` "+
				"(or the provider's `bmc_ca_certificate`) to the PEM of the CA that signed it. Only in a lab, where the "+
				"network is trusted, you may opt in to `insecure = true` to skip verification.\n\n"+
				"Original Error: "+err.Error())
	case errors.As(err, &ambiguous):
		return diag.NewAttributeErrorDiagnostic(pathBMCSystemID, "Ambiguous BMC System",
			fmt.Sprintf("%s The BMC manages %d systems: %s. Set `bmc.system_id` to one of them, or put the system in "+
				"the endpoint as https://host/redfish/v1/Systems/<id>.", unable, len(ambiguous.IDs), quoteList(ambiguous.IDs)))
	case errors.Is(err, engine.ErrAmbiguousSystem):
		return diag.NewAttributeErrorDiagnostic(pathBMCSystemID, "Ambiguous BMC System",
			unable+" The BMC manages several systems; set `bmc.system_id` to one of them.\n\nOriginal Error: "+err.Error())
	case errors.Is(err, engine.ErrUnauthorized):
		return diag.NewAttributeErrorDiagnostic(pathBMCPassword, "BMC Authentication Failed",
			unable+" The BMC rejected the credentials. "+credentialHint+"\n\nOriginal Error: "+err.Error())
	case errors.Is(err, engine.ErrTimeout):
		detail := unable + " The operation did not finish in time."
		if op.timeoutKey != "" {
			detail += fmt.Sprintf(" If the BMC is just slow, raise `timeouts.%s` (default: `%s`).", op.timeoutKey, op.timeout)
		}
		return diag.NewErrorDiagnostic("BMC Operation Timed Out", detail+"\n\nOriginal Error: "+err.Error())
	case errors.Is(err, engine.ErrUnreachable):
		return diag.NewAttributeErrorDiagnostic(pathBMCEndpoint, "BMC Unreachable",
			unable+" Nothing answered at `bmc.endpoint`. Check the host and port, and that this machine can route to "+
				"the BMC's management network.\n\nOriginal Error: "+err.Error())
	case errors.Is(err, engine.ErrNotFound):
		return diag.NewAttributeErrorDiagnostic(pathBMCSystemID, "BMC System Not Found",
			unable+" The BMC does not have the requested system. Check `bmc.system_id` and `bmc.endpoint`.\n\n"+
				"Original Error: "+err.Error())
	case errors.Is(err, engine.ErrUnsupported):
		return diag.NewErrorDiagnostic("BMC Operation Not Supported",
			unable+" The BMC does not support an operation this requires.\n\nOriginal Error: "+err.Error())
	case errors.Is(err, engine.ErrTaskFailed):
		return diag.NewErrorDiagnostic("BMC Task Failed",
			unable+" The BMC accepted the request but its task failed; check the BMC's logs.\n\nOriginal Error: "+err.Error())
	}
	return diag.NewErrorDiagnostic("BMC Operation Failed", unable+"\n\nOriginal Error: "+err.Error())
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// missingUsernameDiagnostic is reported before any BMC is contacted.
func missingUsernameDiagnostic() diag.Diagnostic {
	return diag.NewAttributeErrorDiagnostic(pathBMCUsername, "Missing BMC Username",
		"No BMC username is configured. Set `bmc.username`, the provider's `bmc_username`, "+
			"or the METAL_BMC_USERNAME environment variable.")
}

// missingPasswordDiagnostic is reported before any BMC is contacted, when a
// password is configured nowhere.
func missingPasswordDiagnostic() diag.Diagnostic {
	return diag.NewAttributeErrorDiagnostic(pathBMCPassword, "Missing BMC Password",
		"No BMC password is configured. Set `bmc.password` or `bmc.password_wo`, the provider's `bmc_password`, "+
			"or the METAL_BMC_PASSWORD environment variable.")
}

// missingStatePasswordDiagnostic explains why refresh, import and destroy
// have no password: write-only values never reach them.
func missingStatePasswordDiagnostic(op operation) diag.Diagnostic {
	return diag.NewAttributeErrorDiagnostic(pathBMCPassword, "Missing BMC Password",
		fmt.Sprintf("Unable to %s %s: no BMC password is available. Terraform never sends write-only attributes "+
			"such as `bmc.password_wo` to refresh, import or destroy, so these use the provider's `bmc_password` "+
			"or the METAL_BMC_PASSWORD environment variable; set one of them.", op.verb, op.object))
}

// Operations of metal_os_image.
var (
	opImageCreate = operation{verb: "create", object: "OS image", timeoutKey: "create", timeout: shortDuration(defaultImageCreateTimeout)}
	opImageRead   = operation{verb: "read", object: "OS image", timeoutKey: "read", timeout: shortDuration(defaultReadTimeout)}
	opImageUpdate = operation{verb: "update", object: "OS image", timeoutKey: "update", timeout: shortDuration(defaultImageCreateTimeout)}
	opImageDelete = operation{verb: "delete", object: "OS image", timeoutKey: "delete", timeout: shortDuration(defaultReadTimeout)}
	opDiscovered  = operation{verb: "read", object: "discovered machines"}
)

var pathOSImage = path.Root("os_image")

const addBootServiceHint = "Provisioning needs the provider's `boot_service` block, which runs the DHCP, TFTP and HTTP " +
	"services machines install from. Add one to the `provider \"metal\"` block with at least `address` (this host's " +
	"IPv4 address on the provisioning network) and, for the default authoritative DHCP, `dhcp { subnet = \"...\" }`."

// bootErrorDiagnostic turns an error of the boot service side of the engine
// (images, provisioning) into a diagnostic. at is the attribute the user
// fixes when the boot service is missing or the image is unknown (os_image
// on a machine; empty for errors without one). Errors that come from the
// BMC fall through to engineErrorDiagnostic.
func bootErrorDiagnostic(op operation, err error, at path.Path) diag.Diagnostic {
	unable := fmt.Sprintf("Unable to %s %s.", op.verb, op.object)
	attr := func(summary, detail string) diag.Diagnostic {
		if at.Equal(path.Empty()) {
			return diag.NewErrorDiagnostic(summary, detail)
		}
		return diag.NewAttributeErrorDiagnostic(at, summary, detail)
	}
	if isRemoteError(err) {
		return remoteErrorDiagnostic(err)
	}
	switch {
	case errors.Is(err, engine.ErrBootServiceNotConfigured):
		return attr("Boot Service Not Configured", unable+" "+addBootServiceHint+"\n\nOriginal Error: "+err.Error())
	case errors.Is(err, engine.ErrImageNotFound):
		return attr("OS Image Not Found", unable+" The boot service has no OS image of that name. Create it with a "+
			"`metal_os_image` resource and refer to it as `metal_os_image.<name>.name`, so Terraform creates the image "+
			"before the machine.\n\nOriginal Error: "+err.Error())
	case errors.Is(err, engine.ErrStateInUse):
		return attr("Boot Service State In Use", unable+" Another process (a concurrent terraform run in the same "+
			"directory, or a metal daemon) holds `boot_service.state_dir`. Wait for it to finish, or give this "+
			"configuration its own `state_dir`.\n\nOriginal Error: "+err.Error())
	case isBindError(err):
		return diag.NewErrorDiagnostic("Boot Service Could Not Start", unable+" The provider could not open the boot "+
			"service's ports (`boot_service.http_listen`, `boot_service.dhcp.listen`, `boot_service.tftp.listen`). "+
			"Ports 67 and 69 need root or CAP_NET_BIND_SERVICE.\n\nOriginal Error: "+err.Error())
	}
	if d, ok := checksumMismatchDiagnostic(op, err); ok {
		return d
	}
	if isBMCError(err) {
		return engineErrorDiagnostic(op, err)
	}
	return diag.NewErrorDiagnostic("Boot Service Operation Failed", unable+"\n\nOriginal Error: "+err.Error())
}

// checksumMismatchDiagnostic explains an image file whose content does not
// hash to its sha256, on the file's sha256 attribute when the engine named
// its role (kernel, initrd, image).
func checksumMismatchDiagnostic(op operation, err error) (diag.Diagnostic, bool) {
	var mismatch *engine.ChecksumMismatchError
	if !errors.As(err, &mismatch) {
		return nil, false
	}
	what := mismatch.URL
	var file *engine.ImageFileError
	role := ""
	if errors.As(err, &file) {
		role = file.Role
	}
	known := role == "kernel" || role == "initrd" || role == "image"
	if known {
		what = fmt.Sprintf("the %s (`%s.url` = %s)", role, role, mismatch.URL)
	}
	detail := fmt.Sprintf("Unable to %s %s. The content of %s does not match its sha256: the configuration says %s, "+
		"the file hashes to %s. Nothing was cached. If the file changed on purpose, update `sha256`; otherwise the "+
		"download is corrupt or was tampered with.\n\nOriginal Error: %s",
		op.verb, op.object, what, mismatch.Want, mismatch.Got, err.Error())
	if known {
		return diag.NewAttributeErrorDiagnostic(path.Root(role).AtName("sha256"), "OS Image Checksum Mismatch", detail), true
	}
	return diag.NewErrorDiagnostic("OS Image Checksum Mismatch", detail), true
}

// isBindError reports a boot service that could not open a port.
func isBindError(err error) bool { return errors.Is(err, engine.ErrBind) }

// isBMCError reports an error engineErrorDiagnostic explains precisely.
func isBMCError(err error) bool {
	var ambiguous *engine.AmbiguousSystemError
	if errors.As(err, &ambiguous) {
		return true
	}
	for _, e := range []error{engine.ErrInvalidEndpoint, engine.ErrTLS, engine.ErrAmbiguousSystem, engine.ErrUnauthorized,
		engine.ErrTimeout, engine.ErrUnreachable, engine.ErrNotFound, engine.ErrUnsupported, engine.ErrTaskFailed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// provisionErrorDiagnostic explains a machine that did not reach its goal:
// the timeline the boot service saw, the last step, and what to raise.
func provisionErrorDiagnostic(summary string, op operation, perr *engine.ProvisionError, outcome string) diag.Diagnostic {
	last := "nothing: the machine never asked the boot service for anything (check that it network-boots from " +
		"`boot_mac` and that DHCP reaches the boot service)"
	if n := len(perr.Timeline); n > 0 {
		ev := perr.Timeline[n-1]
		last = ev.Source + " " + ev.Stage
		if ev.Message != "" {
			last += ": " + ev.Message
		}
	}
	detail := fmt.Sprintf("Machine %s did not reach %q. Last step reached: %s.\n\nTimeline:\n%s\n\n",
		perr.MachineID, perr.Want, last, engine.FormatTimeline(perr.Timeline))
	if errors.Is(perr, engine.ErrProvisionTimeout) {
		detail += fmt.Sprintf("The wait ran out of time. If the machine is just slow (firmware, downloads, "+
			"installer), raise `timeouts.%s` (default: `%s`); otherwise look at its console for where it stopped. ", op.timeoutKey, op.timeout)
	} else {
		detail += fmt.Sprintf("If the machine only needs longer, raise `timeouts.%s` (default: `%s`). ", op.timeoutKey, op.timeout)
	}
	detail += outcome + "\n\nOriginal Error: " + perr.Error()
	return diag.NewErrorDiagnostic(summary, detail)
}
