package redfish

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/stmcginnis/gofish/schemas"
)

// Sentinel errors callers match with errors.Is to choose a precise diagnostic.
var (
	ErrNotFound        = errors.New("not found on the BMC")
	ErrUnauthorized    = errors.New("the BMC rejected the credentials")
	ErrUnsupported     = errors.New("not supported by this BMC")
	ErrTaskFailed      = errors.New("BMC task failed")
	ErrTimeout         = errors.New("timed out waiting for the BMC")
	ErrUnreachable     = errors.New("BMC unreachable")
	ErrTLS             = errors.New("BMC TLS certificate not trusted")
	ErrAmbiguousSystem = errors.New("BMC manages several systems")
	ErrInvalidEndpoint = errors.New("invalid BMC endpoint")
	// ErrInvalidSpec: the request does not fit what the BMC offers (an
	// unknown BIOS attribute, a RAID level it cannot build, a drive in use).
	ErrInvalidSpec = errors.New("invalid request for this BMC")
	// ErrBIOSNotApplied: the BMC took the settings but the BIOS did not
	// apply some of them.
	ErrBIOSNotApplied = errors.New("BIOS settings did not stick")
)

// StatusError is a non-success HTTP answer from the BMC. It unwraps to the
// gofish error so gofish's own helpers (412 handling) keep working.
type StatusError struct {
	Method string
	Path   string
	Status int
	Body   *schemas.Error
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s %s: HTTP %d", e.Method, e.Path, e.Status)
	if detail := e.Detail(); detail != "" {
		msg += ": " + detail
	}
	return msg
}

// Detail joins the Redfish error message and its extended messages.
func (e *StatusError) Detail() string {
	if e.Body == nil {
		return ""
	}
	var parts []string
	if m := strings.TrimSpace(e.Body.Message); m != "" && !strings.HasPrefix(m, "{") && !strings.HasPrefix(m, "<") {
		parts = append(parts, m)
	}
	for _, info := range e.Body.ExtendedInfos {
		if m := strings.TrimSpace(info.Message); m != "" && (len(parts) == 0 || parts[0] != m) {
			parts = append(parts, m)
		}
	}
	return strings.Join(parts, "; ")
}

func (e *StatusError) Unwrap() error { return e.Body }

// Is maps HTTP statuses onto the package's sentinel errors.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrUnsupported:
		return e.Status == http.StatusMethodNotAllowed || e.Status == http.StatusNotImplemented
	}
	return false
}

// AmbiguousSystemError lists the systems found when no system_id was given.
type AmbiguousSystemError struct {
	IDs []string
}

func (e *AmbiguousSystemError) Error() string {
	return fmt.Sprintf("the BMC manages %d systems (%s): set system_id to one of them", len(e.IDs), strings.Join(e.IDs, ", "))
}

func (e *AmbiguousSystemError) Is(target error) bool { return target == ErrAmbiguousSystem }

// opError attaches what we were doing to a sentinel, keeping errors.Is working.
type opError struct {
	kind error
	msg  string
	err  error
}

func (e *opError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *opError) Unwrap() []error {
	if e.err == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.err}
}
