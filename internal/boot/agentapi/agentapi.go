// Package agentapi serves the role agent's routes on the boot service:
// a long-poll for the machine's desired roles, the agent's reports and
// the agent binary itself (see internal/roles for the wire types).
package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// ErrUnauthorized is returned (possibly wrapped) by Backend.AgentMachine
// for a credential that belongs to no machine.
var ErrUnauthorized = errors.New("agentapi: credential not accepted")

// Backend is implemented by the engine.
type Backend interface {
	// AgentMachine returns the machine a credential belongs to, or an
	// error matching ErrUnauthorized. Compare secrets in constant time.
	AgentMachine(ctx context.Context, credential string) (string, error)
	// Desired returns the machine's desired roles and a channel that is
	// closed when they may have changed; an error matching ErrUnauthorized
	// when the machine is gone.
	Desired(ctx context.Context, machineID string) (roles.Desired, <-chan struct{}, error)
	// Report stores what the machine's agent did.
	Report(ctx context.Context, machineID string, r roles.Report) error
}

// Config configures a Handler.
type Config struct {
	Backend Backend
	// BinaryPath is the agent binary served at roles.PathBinary ("": 404).
	BinaryPath string
	Logger     *slog.Logger
	// MaxWait bounds a long poll (default roles.MaxWait seconds).
	MaxWait time.Duration
}

// Handler serves the agent routes.
type Handler struct {
	cfg Config
	mux *http.ServeMux
	log *slog.Logger
}

// maxReport bounds a report body: every role's output tail plus slack.
const maxReport = 8 << 20

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = roles.MaxWait * time.Second
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.mux.HandleFunc("GET "+roles.PathDesired, h.authed(h.desired))
	h.mux.HandleFunc("POST "+roles.PathReport, h.authed(h.report))
	h.mux.HandleFunc("GET "+roles.PathBinary, h.binary)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) authed(next func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || cred == "" || len(cred) > 512 {
			h.unauthorized(w, r, "no bearer credential")
			return
		}
		id, err := h.cfg.Backend.AgentMachine(r.Context(), cred)
		if errors.Is(err, ErrUnauthorized) {
			h.unauthorized(w, r, "unknown credential")
			return
		}
		if err != nil {
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
		next(w, r, id)
	}
}

func (h *Handler) unauthorized(w http.ResponseWriter, r *http.Request, why string) {
	h.log.Warn("agent request refused", "remote", r.RemoteAddr, "path", r.URL.Path, "reason", why)
	w.Header().Set("WWW-Authenticate", `Bearer realm="metal-agent"`)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}

// desired answers at once when the machine's desired state differs from
// what the agent has, else when it changes or the wait ends (204).
func (h *Handler) desired(w http.ResponseWriter, r *http.Request, id string) {
	q := r.URL.Query()
	haveRev := q.Get("revision")
	haveGen, _ := strconv.ParseUint(q.Get("generation"), 10, 64)
	wait := h.cfg.MaxWait
	if s := q.Get("wait"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			http.Error(w, "wait must be a number of seconds", http.StatusBadRequest)
			return
		}
		wait = min(time.Duration(n)*time.Second, wait)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		d, changed, err := h.cfg.Backend.Desired(r.Context(), id)
		if errors.Is(err, ErrUnauthorized) {
			h.unauthorized(w, r, "machine no longer registered")
			return
		}
		if err != nil {
			h.log.Warn("desired roles cannot be rendered", "machine_id", id, "error", err.Error())
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		if d.Revision != haveRev || d.Generation != haveGen {
			writeJSON(w, http.StatusOK, d)
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			w.WriteHeader(http.StatusNoContent)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (h *Handler) report(w http.ResponseWriter, r *http.Request, id string) {
	var rep roles.Report
	dec := json.NewDecoder(io.LimitReader(r.Body, maxReport))
	if err := dec.Decode(&rep); err != nil {
		http.Error(w, "report is not JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	for i := range rep.Results {
		if o := rep.Results[i].Output; len(o) > roles.MaxOutput {
			rep.Results[i].Output = o[len(o)-roles.MaxOutput:]
		}
	}
	if err := h.cfg.Backend.Report(r.Context(), id, rep); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) binary(w http.ResponseWriter, r *http.Request) {
	if h.cfg.BinaryPath == "" {
		http.Error(w, "this boot service has no agent binary (boot_service.agent_binary)", http.StatusNotFound)
		return
	}
	f, err := os.Open(h.cfg.BinaryPath)
	if err != nil {
		h.log.Error("agent binary cannot be opened", "path", h.cfg.BinaryPath, "error", err.Error())
		http.Error(w, "agent binary unavailable", http.StatusNotFound)
		return
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, "agent binary unavailable", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "metal-agent", st.ModTime(), f)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
