package bmcsim

import (
	"fmt"
	"net/http"
	"strings"
)

// msg is one entry of @Message.ExtendedInfo.
type msg struct {
	id         string // registry-relative id, e.g. "PropertyUnknown"; oem ids are prefixed with "oem:"
	args       []string
	severity   string
	resolution string
	related    []string
}

// Message texts of the DMTF Base registry (and a few OEM ones) that the
// simulator uses. %1.. are replaced by MessageArgs.
var messageText = map[string]string{
	"GeneralError":                     "A general error has occurred. See Resolution for information on how to resolve the error, or @Message.ExtendedInfo if Resolution is not provided.",
	"Success":                          "The request completed successfully.",
	"AccessDenied":                     "While attempting to establish a connection to %1, the service denied access.",
	"NoValidSession":                   "There is no valid session established with the implementation.",
	"ResourceMissingAtURI":             "The resource at the URI %1 was not found.",
	"OperationNotAllowed":              "The HTTP method is not allowed on this resource.",
	"MalformedJSON":                    "The request body submitted was malformed JSON and could not be parsed by the receiving service.",
	"PropertyUnknown":                  "The property %1 is not in the list of valid properties for the resource.",
	"PropertyNotWritable":              "The property %1 is a read only property and cannot be assigned a value.",
	"PropertyValueNotInList":           "The value %1 for the property %2 is not in the list of acceptable values.",
	"PropertyValueTypeError":           "The value %1 for the property %2 is of a different type than the property can accept.",
	"PropertyMissing":                  "The property %1 is a required property and must be included in the request.",
	"PreconditionFailed":               "The ETag supplied did not match the ETag required to change this resource.",
	"PreconditionRequired":             "A precondition header or annotation is required to change the resource %1.",
	"ActionParameterMissing":           "The action %1 requires the parameter %2 to be present in the request body.",
	"ActionParameterNotSupported":      "The parameter %1 for the action %2 is not supported on the target resource.",
	"ActionParameterUnknown":           "The action %1 was submitted with the invalid parameter %2.",
	"QueryParameterValueFormatError":   "The value %1 for the parameter %2 is of a different format than the parameter can accept.",
	"QueryParameterOutOfRange":         "The value %1 for the query parameter %2 is out of range %3.",
	"QueryParameterUnsupported":        "Query parameter %1 is not supported.",
	"QueryCombinationInvalid":          "Two or more query parameters in the request cannot be used together.",
	"ServiceTemporarilyUnavailable":    "The service is temporarily unavailable.  Retry in %1 seconds.",
	"InternalError":                    "The request failed due to an internal service error.  The service is still operational.",
	"ResourceInStandby":                "The request could not be performed because the resource is in standby.",
	"CreateFailedMissingReqProperties": "The create operation failed because the required property %1 was missing from the request.",
	"ServiceShuttingDown":              "The operation failed because the service is shutting down and can no longer take incoming requests.",
	"PropertyValueOutOfRange":          "The value %1 for the property %2 is not in the supported range of acceptable values.",
	"ResourceInUse":                    "The change to the requested resource failed because the resource is in use or in transition.",
	"TaskFailed":                       "%1",
	// iDRAC OEM.
	"PSU501": "Server is already powered ON.",
	"PSU502": "Server is already powered OFF.",
	// iLO OEM.
	"InvalidOperationForSystemState": "The operation cannot be performed in the current system state: %1.",
	"UnableToModifyDuringSystemPOST": "The value for property %1 cannot be changed while the computer system BIOS is in POST.",
	"PropertyNotWritableOrUnknown":   "The property %1 is a read-only property and cannot be assigned a value, or not valid for this resource.",
}

func render(text string, args []string) string {
	for i := len(args); i >= 1; i-- {
		text = strings.ReplaceAll(text, fmt.Sprintf("%%%d", i), args[i-1])
	}
	return text
}

func (p *profile) messageID(id string) string {
	if oem, ok := strings.CutPrefix(id, "oem:"); ok {
		return p.oem + "." + oem
	}
	return p.registry(id)
}

func (p *profile) extendedInfo(msgs []msg) []any {
	out := make([]any, 0, len(msgs))
	for _, m := range msgs {
		id := p.messageID(m.id)
		args := m.args
		if args == nil {
			args = []string{}
		}
		if p.vendor == HPE {
			// iLO ExtendedInfo entries carry only MessageId and MessageArgs;
			// the text lives in the registry.
			e := map[string]any{"MessageId": id}
			if len(args) > 0 {
				e["MessageArgs"] = args
			}
			out = append(out, e)
			continue
		}
		sev := m.severity
		if sev == "" {
			sev = "Warning"
		}
		res := m.resolution
		if res == "" {
			res = "None."
		}
		e := map[string]any{
			"@odata.type": "#Message.v1_1_1.Message",
			"MessageId":   id,
			"Message":     render(messageText[strings.TrimPrefix(m.id, "oem:")], args),
			"MessageArgs": args,
			"Severity":    sev,
			"Resolution":  res,
		}
		if len(m.related) > 0 {
			e["RelatedProperties"] = m.related
		}
		if p.countAnnot {
			e["MessageArgs@odata.count"] = len(args)
			if len(m.related) > 0 {
				e["RelatedProperties@odata.count"] = len(m.related)
			}
		}
		out = append(out, e)
	}
	return out
}

// errorBody builds the DSP0266 error response payload.
func (p *profile) errorBody(msgs ...msg) map[string]any {
	inner := map[string]any{"@Message.ExtendedInfo": p.extendedInfo(msgs)}
	if p.vendor == HPE {
		// iLO: {"error":{"code":"iLO.0.10.ExtendedInfo","message":"See @Message.ExtendedInfo for more information.",...}}
		inner["code"] = "iLO.0.10.ExtendedInfo"
		inner["message"] = "See @Message.ExtendedInfo for more information."
	} else {
		inner["code"] = p.registry("GeneralError")
		inner["message"] = "A general error has occurred. See ExtendedInfo for more information."
	}
	return map[string]any{"error": inner}
}

// response is a fully formed reply; handlers build one and ServeHTTP writes it.
type response struct {
	status int
	header http.Header
	body   any // JSON-encoded when non-nil
}

func newResponse(status int, body any) *response {
	return &response{status: status, header: http.Header{}, body: body}
}

func (s *Simulator) errResp(status int, msgs ...msg) *response {
	return newResponse(status, s.prof.errorBody(msgs...))
}

func (s *Simulator) notFound(path string) *response {
	return s.errResp(http.StatusNotFound, msg{id: "ResourceMissingAtURI", args: []string{path}, severity: "Critical",
		resolution: "Place a valid resource at the URI or correct the URI and resubmit the request."})
}

func (s *Simulator) methodNotAllowed(allow ...string) *response {
	r := s.errResp(http.StatusMethodNotAllowed, msg{id: "OperationNotAllowed", severity: "Critical",
		resolution: "None."})
	r.header.Set("Allow", strings.Join(allow, ", "))
	return r
}

func (s *Simulator) unauthorized(tokenGiven bool) *response {
	m := msg{id: "AccessDenied", args: []string{"/redfish/v1"}, severity: "Critical",
		resolution: "Attempt to ensure that the URI is correct and that the service has the appropriate credentials."}
	if tokenGiven {
		m = msg{id: "NoValidSession", severity: "Critical",
			resolution: "Establish a session before attempting any operations."}
	}
	r := s.errResp(http.StatusUnauthorized, m)
	r.header.Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", s.prof.realm))
	return r
}

func (s *Simulator) malformed() *response {
	return s.errResp(http.StatusBadRequest, msg{id: "MalformedJSON", severity: "Critical",
		resolution: "Ensure that the request body is valid JSON and resubmit the request."})
}

// success builds the vendor's answer to a successful write or action.
func (s *Simulator) success(style successStyle) *response {
	switch style {
	case successExtendedInfo:
		return newResponse(http.StatusOK, map[string]any{
			"@Message.ExtendedInfo": s.prof.extendedInfo([]msg{{id: "Success", severity: "OK"}}),
		})
	case successHPEError:
		return newResponse(http.StatusOK, s.prof.errorBody(msg{id: "Success"}))
	case successSMC:
		return newResponse(http.StatusOK, map[string]any{
			"Success": map[string]any{
				"code":    s.prof.registry("Success"),
				"Message": "Successfully Completed Request.",
			},
		})
	default:
		return newResponse(http.StatusNoContent, nil)
	}
}
