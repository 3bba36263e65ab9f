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
