package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// Client-side errors about the daemon itself (match with errors.Is).
var (
	// ErrDaemonUnreachable: no connection to the boot service daemon.
	ErrDaemonUnreachable = errors.New("the metal boot service daemon is unreachable")
	// ErrInvalidToken: the daemon rejected the API token (401).
	ErrInvalidToken = errors.New("the metal boot service daemon rejected the API token")
	// ErrFingerprintMismatch: the daemon's certificate is not the pinned one.
	ErrFingerprintMismatch = errors.New("the metal boot service daemon's TLS certificate fingerprint does not match")
	// ErrDaemonTLS: the daemon's certificate is not trusted.
	ErrDaemonTLS = errors.New("the metal boot service daemon's TLS certificate is not trusted")
	// ErrVersionSkew: the daemon and the provider speak different API versions.
	ErrVersionSkew = errors.New("the metal boot service daemon and the provider speak different API versions")
	// ErrInterrupted: an operation the daemon cannot resume after a restart.
	ErrInterrupted = errors.New("the operation was interrupted by a restart of the boot service daemon")
)

// FingerprintError names the pinned and the presented fingerprints.
type FingerprintError struct{ Expected, Got string }

func (e *FingerprintError) Error() string {
	return fmt.Sprintf("%v: expected sha256 %s, got %s (the daemon prints its fingerprint at start; "+
		"if its certificate was replaced on purpose, update tls_fingerprint)", ErrFingerprintMismatch, e.Expected, e.Got)
}
func (e *FingerprintError) Is(target error) bool { return target == ErrFingerprintMismatch }

// VersionError is an API version skew between provider and daemon.
type VersionError struct {
	ClientAPI, ServerAPI int
	ServerVersion        string
}

func (e *VersionError) Error() string {
	upgrade := "upgrade the provider (terraform init -upgrade with a newer version constraint)"
	if e.ServerAPI < e.ClientAPI {
		upgrade = "upgrade the daemon (terraform-provider-metal serve) to a release that speaks API v" + fmt.Sprint(e.ClientAPI)
	}
	return fmt.Sprintf("%v: the daemon (version %s) speaks API v%d, this provider speaks API v%d: %s",
		ErrVersionSkew, e.ServerVersion, e.ServerAPI, e.ClientAPI, upgrade)
}
func (e *VersionError) Is(target error) bool { return target == ErrVersionSkew }

// RemoteError is an error the daemon reported. It unwraps to the engine
// sentinel of its code, so errors.Is works as with the embedded engine.
type RemoteError struct {
	Code    string
	Message string
	kind    error
}

func (e *RemoteError) Error() string { return e.Message }
func (e *RemoteError) Unwrap() error { return e.kind }

// wireError is an error as it crosses the wire.
type wireError struct {
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Details *errorDetails `json:"details,omitempty"`
}

type errorDetails struct {
	// ambiguous_system
	SystemIDs []string `json:"system_ids,omitempty"`
	// provision_failed
	MachineID string                 `json:"machine_id,omitempty"`
	Want      string                 `json:"want,omitempty"`
	Timeline  []engine.TimelineEvent `json:"timeline,omitempty"`
	// image_file
	Role string `json:"role,omitempty"`
	// checksum_mismatch
	URL        string `json:"url,omitempty"`
	WantSHA256 string `json:"want_sha256,omitempty"`
	GotSHA256  string `json:"got_sha256,omitempty"`
	// bios_not_applied
	Mismatches []engine.BIOSMismatch `json:"mismatches,omitempty"`
	Detail     string                `json:"detail,omitempty"`
	// task_failed
	What         string               `json:"what,omitempty"`
	TaskState    string               `json:"task_state,omitempty"`
	TaskMessages []engine.TaskMessage `json:"task_messages,omitempty"`
	// role_error
	RoleError *roleDetails `json:"role_error,omitempty"`
	// provision_failed and image_file: the underlying error.
	Cause *wireError `json:"cause,omitempty"`
}

// roleDetails carries the typed role errors.
type roleDetails struct {
	Kind       string              `json:"kind"`
	MachineID  string              `json:"machine_id,omitempty"`
	Failed     []engine.RoleResult `json:"failed,omitempty"`
	Path       []string            `json:"path,omitempty"`
	Role       string              `json:"role,omitempty"`
	RequiredBy string              `json:"required_by,omitempty"`
	Field      string              `json:"field,omitempty"`
	Expr       string              `json:"expr,omitempty"`
	Key        string              `json:"key,omitempty"`
	Reason     string              `json:"reason,omitempty"`
	Parameter  string              `json:"parameter,omitempty"`
	FilePath   string              `json:"file_path,omitempty"`
	Roles      [2]string           `json:"roles,omitzero"`
}

// encodeRoleError is the wire form of a typed role error, or nil.
func encodeRoleError(err error) *roleDetails {
	var (
		fe *engine.RoleFailedError
		ce *engine.CycleError
		me *engine.MissingRoleError
		te *engine.TemplateError
		xe *engine.ConflictError
		pe *engine.ParameterError
		ve *engine.RoleFieldError
	)
	switch {
	case errors.As(err, &fe):
		return &roleDetails{Kind: "failed", MachineID: fe.MachineID, Failed: fe.Failed}
	case errors.As(err, &ce):
		return &roleDetails{Kind: "cycle", Path: ce.Path}
	case errors.As(err, &me):
		return &roleDetails{Kind: "missing", Role: me.Role, RequiredBy: me.RequiredBy}
	case errors.As(err, &te):
		return &roleDetails{Kind: "template", Role: te.Role, Field: te.Field, Expr: te.Expr, Key: te.Key, Reason: errString(te.Err)}
	case errors.As(err, &xe):
		return &roleDetails{Kind: "conflict", FilePath: xe.Path, Roles: xe.Roles}
	case errors.As(err, &pe):
		return &roleDetails{Kind: "parameter", Role: pe.Role, Parameter: pe.Parameter, Reason: pe.Reason}
	case errors.As(err, &ve):
		return &roleDetails{Kind: "field", Role: ve.Role, Field: ve.Field, Reason: ve.Reason}
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func decodeRoleError(d *roleDetails) error {
	switch d.Kind {
	case "failed":
		return &engine.RoleFailedError{MachineID: d.MachineID, Failed: d.Failed}
	case "cycle":
		return &engine.CycleError{Path: d.Path}
	case "missing":
		return &engine.MissingRoleError{Role: d.Role, RequiredBy: d.RequiredBy}
	case "template":
		return &engine.TemplateError{Role: d.Role, Field: d.Field, Expr: d.Expr, Key: d.Key, Err: errors.New(d.Reason)}
	case "conflict":
		return &engine.ConflictError{Path: d.FilePath, Roles: d.Roles}
	case "parameter":
		return &engine.ParameterError{Role: d.Role, Parameter: d.Parameter, Reason: d.Reason}
	case "field":
		return &engine.RoleFieldError{Role: d.Role, Field: d.Field, Reason: d.Reason}
	}
	return nil
}

type errorBody struct {
	Error *wireError `json:"error"`
}

// sentinels maps engine sentinels to wire codes and HTTP statuses. Order
// matters: the first match wins.
var sentinels = []struct {
	code   string
	err    error
	status int
}{
	{"provision_timeout", engine.ErrProvisionTimeout, http.StatusGatewayTimeout},
	{"agent_timeout", engine.ErrAgentTimeout, http.StatusGatewayTimeout},
	{"role_not_found", engine.ErrRoleNotFound, http.StatusNotFound},
	{"roles_pending", engine.ErrRolesPending, http.StatusConflict},
	{"role_in_use", engine.ErrRoleInUse, http.StatusConflict},
	{"no_agent", engine.ErrNoAgent, http.StatusConflict},
	{"image_not_found", engine.ErrImageNotFound, http.StatusNotFound},
	{"not_found", engine.ErrNotFound, http.StatusNotFound},
	{"unauthorized", engine.ErrUnauthorized, http.StatusBadGateway},
	{"unsupported", engine.ErrUnsupported, http.StatusBadGateway},
	{"task_failed", engine.ErrTaskFailed, http.StatusBadGateway},
	{"bmc_timeout", engine.ErrTimeout, http.StatusGatewayTimeout},
	{"bmc_unreachable", engine.ErrUnreachable, http.StatusBadGateway},
	{"bmc_tls", engine.ErrTLS, http.StatusBadGateway},
	{"invalid_spec", engine.ErrInvalidSpec, http.StatusUnprocessableEntity},
	{"bios_not_applied", engine.ErrBIOSNotApplied, http.StatusBadGateway},
	{"invalid_endpoint", engine.ErrInvalidEndpoint, http.StatusBadRequest},
	{"bind", engine.ErrBind, http.StatusServiceUnavailable},
	{"state_in_use", engine.ErrStateInUse, http.StatusServiceUnavailable},
	{"boot_service_not_configured", engine.ErrBootServiceNotConfigured, http.StatusConflict},
	{"interrupted", ErrInterrupted, http.StatusConflict},
	{"deadline_exceeded", context.DeadlineExceeded, http.StatusGatewayTimeout},
	{"canceled", context.Canceled, http.StatusConflict},
}

// encodeError turns an engine error into its wire form and HTTP status.
func encodeError(err error) (*wireError, int) {
	if err == nil {
		return nil, http.StatusOK
	}
	var perr *engine.ProvisionError
	if errors.As(err, &perr) {
		cause, status := encodeError(perr.Err)
		if cause == nil {
			status = http.StatusInternalServerError
		}
		return &wireError{Code: "provision_failed", Message: err.Error(), Details: &errorDetails{
			MachineID: perr.MachineID, Want: perr.Want, Timeline: perr.Timeline, Cause: cause,
		}}, status
	}
	var ferr *engine.ImageFileError
	if errors.As(err, &ferr) {
		cause, status := encodeError(ferr.Err)
		return &wireError{Code: "image_file", Message: err.Error(), Details: &errorDetails{Role: ferr.Role, Cause: cause}}, status
	}
	var cerr *engine.ChecksumMismatchError
	if errors.As(err, &cerr) {
		return &wireError{Code: "checksum_mismatch", Message: err.Error(), Details: &errorDetails{
			URL: cerr.URL, WantSHA256: cerr.Want, GotSHA256: cerr.Got,
		}}, http.StatusUnprocessableEntity
	}
	var merr *engine.BIOSMismatchError
	if errors.As(err, &merr) {
		return &wireError{Code: "bios_not_applied", Message: err.Error(), Details: &errorDetails{Mismatches: merr.Mismatches, Detail: merr.Detail}}, http.StatusBadGateway
	}
	var terr *engine.TaskError
	if errors.As(err, &terr) {
		return &wireError{Code: "task_failed", Message: err.Error(), Details: &errorDetails{What: terr.What, TaskState: terr.State, TaskMessages: terr.Messages}}, http.StatusBadGateway
	}
	if rd := encodeRoleError(err); rd != nil {
		status := http.StatusUnprocessableEntity
		if rd.Kind == "failed" {
			status = http.StatusConflict
		}
		return &wireError{Code: "role_error", Message: err.Error(), Details: &errorDetails{RoleError: rd}}, status
	}
	var aerr *engine.AmbiguousSystemError
	if errors.As(err, &aerr) {
		return &wireError{Code: "ambiguous_system", Message: err.Error(), Details: &errorDetails{SystemIDs: aerr.IDs}}, http.StatusConflict
	}
	if errors.Is(err, engine.ErrAmbiguousSystem) {
		return &wireError{Code: "ambiguous_system", Message: err.Error()}, http.StatusConflict
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return &wireError{Code: s.code, Message: err.Error()}, s.status
		}
	}
	var berr *badRequestError
	if errors.As(err, &berr) {
		return &wireError{Code: "bad_request", Message: err.Error()}, http.StatusBadRequest
	}
	return &wireError{Code: "internal", Message: err.Error()}, http.StatusInternalServerError
}

// decodeError turns a wire error back into the engine's typed error.
func decodeError(w *wireError) error {
	if w == nil {
		return nil
	}
	d := w.Details
	if d == nil {
		d = &errorDetails{}
	}
	switch w.Code {
	case "provision_failed":
		inner := decodeError(d.Cause)
		if inner == nil {
			inner = errors.New(w.Message)
		}
		return &engine.ProvisionError{MachineID: d.MachineID, Want: d.Want, Timeline: d.Timeline, Err: inner}
	case "image_file":
		inner := decodeError(d.Cause)
		if inner == nil {
			inner = errors.New(w.Message)
		}
		return &engine.ImageFileError{Role: d.Role, Err: inner}
	case "checksum_mismatch":
		return &engine.ChecksumMismatchError{URL: d.URL, Want: d.WantSHA256, Got: d.GotSHA256}
	case "ambiguous_system":
		if len(d.SystemIDs) > 0 {
			return &engine.AmbiguousSystemError{IDs: d.SystemIDs}
		}
		return &RemoteError{Code: w.Code, Message: w.Message, kind: engine.ErrAmbiguousSystem}
	case "bios_not_applied":
		if len(d.Mismatches) > 0 {
			return &engine.BIOSMismatchError{Mismatches: d.Mismatches, Detail: d.Detail}
		}
	case "task_failed":
		if d.TaskState != "" {
			return &engine.TaskError{What: d.What, State: d.TaskState, Messages: d.TaskMessages}
		}
	case "role_error":
		if d.RoleError != nil {
			if err := decodeRoleError(d.RoleError); err != nil {
				return err
			}
		}
	case "invalid_token":
		return &RemoteError{Code: w.Code, Message: w.Message, kind: ErrInvalidToken}
	}
	for _, s := range sentinels {
		if s.code == w.Code {
			return &RemoteError{Code: w.Code, Message: w.Message, kind: s.err}
		}
	}
	return &RemoteError{Code: w.Code, Message: w.Message}
}

// badRequestError is a malformed API request.
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

func badRequest(format string, a ...any) error { return &badRequestError{fmt.Sprintf(format, a...)} }

// marshalError is encodeError as JSON, for the operations store.
func marshalError(err error) string {
	w, _ := encodeError(err)
	b, _ := json.Marshal(w)
	return string(b)
}
