// Package api is the boot service daemon's versioned JSON API (/v1) over
// the engine, and a client for it that implements engine.Engine, so the
// provider's resources cannot tell a remote daemon from the embedded engine.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
	"github.com/composable-metal/terraform-provider-metal/internal/store"
)

// APIVersion is the version of the wire protocol both sides speak.
const APIVersion = 1

// Config configures a Server (Tokens, Logger, Metrics, ServerVersion,
// Ready) or a Client (Endpoint, Token, CACertificate, TLSFingerprint,
// Logger).
type Config struct {
	// Server: the API tokens accepted (required: nil accepts none).
	Tokens TokenStore
	// Logger for both sides (default: discard).
	Logger *slog.Logger
	// Server: the registry /metrics serves (default: a new one).
	Metrics *prometheus.Registry
	// Server: the daemon's version, reported by /v1/version.
	ServerVersion string
	// Server: Ready reports readiness for /readyz (default: ready).
	Ready func() error
	// Server: Boot is the boot service's configuration, reported (without
	// state_dir and ipxe_dir) by GET /v1/boot-service.
	Boot *engine.BootConfig
	// Server: DefaultOperationTimeout bounds operations whose request names
	// no timeout (default 60m).
	DefaultOperationTimeout time.Duration

	// Client: https://host:port of the daemon.
	Endpoint string
	// Client: the API token.
	Token string
	// Client: PEM CA certificate(s) that sign the daemon's certificate.
	CACertificate string
	// Client: hex SHA-256 of the daemon's certificate (DER), pinned instead
	// of a CA; colons are allowed.
	TLSFingerprint string
	// Client: APIVersion override, for tests of version skew.
	apiVersion int
}

// opStore is where operations are kept: the engine's store, or memory.
type opStore interface {
	PutOperation(store.Operation) (store.Operation, error)
	UpdateOperation(string, func(*store.Operation) error) (store.Operation, error)
	GetOperation(string) (store.Operation, error)
	ListOperations(string) ([]store.Operation, error)
}

// resumable is what the embedded engine offers for resuming waits.
type resumable interface {
	ResolveMachineID(ctx context.Context, bmc engine.BMC) (string, engine.BMC, error)
	AwaitMachine(ctx context.Context, id, want string) (*engine.ProvisionResult, error)
	ReachedStage(id, source, stage string, since time.Time) bool
}

// Server serves the API over an engine.
type Server struct {
	eng     engine.Engine
	cfg     Config
	log     *slog.Logger
	ops     opStore
	mux     *http.ServeMux
	metrics *metrics

	mu      sync.Mutex
	running map[string]chan struct{}
	wg      sync.WaitGroup
	stop    context.CancelFunc
	base    context.Context
}

// NewServer returns the API handler over eng. Operations are kept in the
// engine's store when it has one (the embedded engine with a boot service),
// and in-flight provisionings found there are resumed.
func NewServer(eng engine.Engine, cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.DefaultOperationTimeout <= 0 {
		cfg.DefaultOperationTimeout = 60 * time.Minute
	}
	s := &Server{eng: eng, cfg: cfg, log: log, running: map[string]chan struct{}{}}
	s.base, s.stop = context.WithCancel(context.Background())
	s.ops = newMemOps()
	if st, ok := eng.(interface{ Store() (*store.Store, error) }); ok {
		if db, err := st.Store(); err == nil {
			s.ops = db
		} else {
			log.Warn("operations are kept in memory only", "error", err.Error())
		}
	}
	s.metrics = newMetrics(cfg.Metrics)
	if e, ok := eng.(bootStatser); ok {
		cfg.Metrics.MustRegister(newBootCollector(e.BootStats))
	}
	if e, ok := eng.(interface{ OnBMCRequests(func(int64)) }); ok {
		e.OnBMCRequests(func(n int64) { s.metrics.bmcRequests.Add(float64(n)) })
	}
	s.routes()
	s.resume()
	return s
}

// Close stops running operations (they stay in the store, to be resumed by
// the next start) and waits for them.
func (s *Server) Close() {
	s.stop()
	s.wg.Wait()
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	m := http.NewServeMux()
	open := func(pattern string, h http.HandlerFunc) { m.Handle(pattern, s.instrument(pattern, h)) }
	auth := func(pattern string, h http.HandlerFunc) { m.Handle(pattern, s.instrument(pattern, s.authenticate(h))) }

	open("GET /v1/version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, versionInfo{APIVersion: APIVersion, Server: s.cfg.ServerVersion})
	})
	open("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	open("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.cfg.Ready != nil {
			if err := s.cfg.Ready(); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	m.Handle("GET /metrics", s.metrics.handler())

	auth("GET /v1/boot-service", func(w http.ResponseWriter, _ *http.Request) {
		if s.cfg.Boot == nil {
			s.reply(w, nil, engine.ErrBootServiceNotConfigured)
			return
		}
		b := *s.cfg.Boot
		b.StateDir, b.IPXEDir = "", ""
		writeJSON(w, http.StatusOK, b)
	})
	auth("POST /v1/systems", func(w http.ResponseWriter, r *http.Request) {
		var req bmcRequest
		if s.decode(w, r, &req) {
			out, err := s.eng.Systems(r.Context(), req.BMC)
			s.bmcResult(err)
			s.reply(w, out, err)
		}
	})
	auth("POST /v1/machine", func(w http.ResponseWriter, r *http.Request) {
		var req bmcRequest
		if s.decode(w, r, &req) {
			out, err := s.eng.Machine(r.Context(), req.BMC)
			s.bmcResult(err)
			s.reply(w, out, err)
		}
	})
	auth("POST /v1/boot-once", func(w http.ResponseWriter, r *http.Request) {
		var req bootOnceRequest
		if s.decode(w, r, &req) {
			err := s.eng.BootOnce(r.Context(), req.BMC, req.Override)
			s.bmcResult(err)
			s.reply(w, struct{}{}, err)
		}
	})
	auth("PUT /v1/images/{name}", func(w http.ResponseWriter, r *http.Request) {
		var spec engine.ImageSpec
		if s.decode(w, r, &spec) {
			spec.Name = r.PathValue("name")
			out, err := s.eng.EnsureImage(r.Context(), spec)
			s.reply(w, out, err)
		}
	})
	auth("GET /v1/images/{name}", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.eng.Image(r.Context(), r.PathValue("name"))
		s.reply(w, out, err)
	})
	auth("DELETE /v1/images/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, struct{}{}, s.eng.DeleteImage(r.Context(), r.PathValue("name")))
	})
	auth("POST /v1/render", func(w http.ResponseWriter, r *http.Request) {
		var req renderRequest
		if s.decode(w, r, &req) {
			out, err := s.eng.Render(r.Context(), req.BMC, req.MACs, req.Spec)
			s.reply(w, out, err)
		}
	})
	auth("POST /v1/timeline", func(w http.ResponseWriter, r *http.Request) {
		var req bmcRequest
		if s.decode(w, r, &req) {
			out, err := s.eng.Timeline(r.Context(), req.BMC)
			if out == nil && err == nil {
				out = []engine.TimelineEvent{}
			}
			s.reply(w, out, err)
		}
	})
	auth("GET /v1/discovered", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.eng.Discovered(r.Context())
		if out == nil && err == nil {
			out = []engine.DiscoveredMachine{}
		}
		s.reply(w, out, err)
	})

	// Long-running operations.
	auth("POST /v1/bios", func(w http.ResponseWriter, r *http.Request) {
		var req bmcRequest
		if s.decode(w, r, &req) {
			out, err := s.eng.BIOS(r.Context(), req.BMC)
			s.bmcResult(err)
			s.reply(w, out, err)
		}
	})
	auth("POST /v1/bios/apply", func(w http.ResponseWriter, r *http.Request) {
		var req biosApplyRequest
		if !s.decode(w, r, &req) {
			return
		}
		id, _ := engine.MachineID(req.BMC.Endpoint, req.BMC.SystemID)
		s.accept(w, "bios", id, req.Timeout, nil, func(ctx context.Context) (any, error) {
			out, err := s.eng.ApplyBIOS(ctx, req.BMC, req.Profile)
			s.bmcResult(err)
			return out, err
		})
	})
	auth("POST /v1/storage", func(w http.ResponseWriter, r *http.Request) {
		var req bmcRequest
		if s.decode(w, r, &req) {
			out, err := s.eng.Storage(r.Context(), req.BMC)
			if out == nil && err == nil {
				out = []engine.StorageController{}
			}
			s.bmcResult(err)
			s.reply(w, out, err)
		}
	})
	auth("POST /v1/volumes", func(w http.ResponseWriter, r *http.Request) {
		var req volumeRequest
		if !s.decode(w, r, &req) {
			return
		}
		id, _ := engine.MachineID(req.BMC.Endpoint, req.BMC.SystemID)
		s.accept(w, "volume_create", id, req.Timeout, nil, func(ctx context.Context) (any, error) {
			out, err := s.eng.CreateVolume(ctx, req.BMC, req.Spec)
			s.bmcResult(err)
			return out, err
		})
	})
	auth("POST /v1/volumes/delete", func(w http.ResponseWriter, r *http.Request) {
		var req volumeDeleteRequest
		if !s.decode(w, r, &req) {
			return
		}
		id, _ := engine.MachineID(req.BMC.Endpoint, req.BMC.SystemID)
		s.accept(w, "volume_delete", id, req.Timeout, nil, func(ctx context.Context) (any, error) {
			err := s.eng.DeleteVolume(ctx, req.BMC, req.StorageID, req.VolumeID)
			s.bmcResult(err)
			return struct{}{}, err
		})
	})
	auth("POST /v1/power", func(w http.ResponseWriter, r *http.Request) {
		var req powerRequest
		if !s.decode(w, r, &req) {
			return
		}
		id, _ := engine.MachineID(req.BMC.Endpoint, req.BMC.SystemID)
		s.accept(w, "power", id, req.Timeout, nil, func(ctx context.Context) (any, error) {
			inv, err := s.eng.SetPower(ctx, req.BMC, req.Want, req.Options)
			s.bmcResult(err)
			return inv, err
		})
	})
	auth("POST /v1/provision", func(w http.ResponseWriter, r *http.Request) {
		var req provisionRequest
		if !s.decode(w, r, &req) {
			return
		}
		id, bmc, err := s.machineID(r.Context(), req.BMC)
		if err != nil {
			s.bmcResult(err)
			s.reply(w, nil, err)
			return
		}
		want := req.Spec.WaitFor
		if want == "" {
			want = engine.WaitProvisioned
		}
		s.accept(w, "provision", id, req.Timeout, map[string]string{"want": want}, func(ctx context.Context) (any, error) {
			return s.eng.Provision(ctx, bmc, req.Spec)
		})
	})
	auth("POST /v1/deprovision", func(w http.ResponseWriter, r *http.Request) {
		var req deprovisionRequest
		if !s.decode(w, r, &req) {
			return
		}
		id, bmc, err := s.machineID(r.Context(), req.BMC)
		if err != nil {
			s.bmcResult(err)
			s.reply(w, nil, err)
			return
		}
		s.accept(w, "deprovision", id, req.Timeout, map[string]string{"wipe": strconv.FormatBool(req.Wipe)}, func(ctx context.Context) (any, error) {
			return struct{}{}, s.eng.Deprovision(ctx, bmc, req.Image, req.Wipe)
		})
	})
	auth("PUT /v1/roles/{name}", func(w http.ResponseWriter, r *http.Request) {
		var role engine.Role
		if s.decode(w, r, &role) {
			if role.Name != r.PathValue("name") {
				s.reply(w, nil, badRequest("role name %q in the body does not match the URL's %q", role.Name, r.PathValue("name")))
				return
			}
			out, err := s.eng.PutRole(r.Context(), role)
			s.reply(w, out, err)
		}
	})
	auth("POST /v1/roles-check/role", func(w http.ResponseWriter, r *http.Request) {
		var role engine.Role
		if s.decode(w, r, &role) {
			s.reply(w, struct{}{}, s.eng.CheckRole(r.Context(), role))
		}
	})
	auth("POST /v1/roles-check/machine", func(w http.ResponseWriter, r *http.Request) {
		var req rolesCheckRequest
		if s.decode(w, r, &req) {
			s.reply(w, struct{}{}, s.eng.CheckRoles(r.Context(), req.Selection, req.Facts))
		}
	})
	auth("GET /v1/roles/{name}", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.eng.Role(r.Context(), r.PathValue("name"))
		s.reply(w, out, err)
	})
	auth("DELETE /v1/roles/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, struct{}{}, s.eng.DeleteRole(r.Context(), r.PathValue("name")))
	})
	auth("POST /v1/roles/status", func(w http.ResponseWriter, r *http.Request) {
		var req bmcRequest
		if s.decode(w, r, &req) {
			out, err := s.eng.RoleStatus(r.Context(), req.BMC)
			s.reply(w, out, err)
		}
	})
	auth("POST /v1/roles/apply", func(w http.ResponseWriter, r *http.Request) {
		var req rolesApplyRequest
		if !s.decode(w, r, &req) {
			return
		}
		id, bmc, err := s.machineID(r.Context(), req.BMC)
		if err != nil {
			s.bmcResult(err)
			s.reply(w, nil, err)
			return
		}
		s.accept(w, "roles", id, req.Timeout, nil, func(ctx context.Context) (any, error) {
			return s.eng.ApplyRoles(ctx, bmc, req.Selection)
		})
	})
	auth("GET /v1/operations/{id}", s.getOperation)

	m.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{&wireError{Code: "no_such_route", Message: "no such API route"}})
	})
	s.mux = m
}

func (s *Server) machineID(ctx context.Context, bmc engine.BMC) (string, engine.BMC, error) {
	if r, ok := s.eng.(resumable); ok {
		return r.ResolveMachineID(ctx, bmc)
	}
	id, _ := engine.MachineID(bmc.Endpoint, bmc.SystemID)
	return id, bmc, nil
}

// authenticate rejects a request without a valid bearer token with a 401
// that says nothing about why.
func (s *Server) authenticate(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || s.cfg.Tokens == nil || !s.cfg.Tokens.Verify(strings.TrimSpace(tok)) {
			s.metrics.authFailures.Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="metal"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{&wireError{Code: "invalid_token", Message: "authentication required"}})
			return
		}
		next(w, r)
	}
}

const maxBody = 8 << 20

func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		s.reply(w, nil, badRequest("malformed request body: %v", err))
		return false
	}
	return true
}

func (s *Server) reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		we, status := encodeError(err)
		writeJSON(w, status, errorBody{we})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) bmcResult(err error) {
	if err == nil {
		return
	}
	for _, k := range []error{engine.ErrUnreachable, engine.ErrUnauthorized, engine.ErrTLS, engine.ErrTimeout, engine.ErrTaskFailed, engine.ErrUnsupported, engine.ErrNotFound} {
		if errors.Is(err, k) {
			we, _ := encodeError(k)
			s.metrics.bmcErrors.WithLabelValues(we.Code).Inc()
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// --- operations ---

func newOperationID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "op-" + hex.EncodeToString(b)
}

// accept records an operation, answers 202 with its id and runs it with
// the server's context, so a client that goes away does not cancel it.
func (s *Server) accept(w http.ResponseWriter, kind, machineID string, timeout Duration, params map[string]string, run func(context.Context) (any, error)) {
	d := time.Duration(timeout)
	if d <= 0 {
		d = s.cfg.DefaultOperationTimeout
	}
	if machineID == "" {
		machineID = "unknown" // the store keys operations by machine too
	}
	now := time.Now().UTC()
	op, err := s.ops.PutOperation(store.Operation{
		ID: newOperationID(), MachineID: machineID, Kind: kind, State: store.OperationRunning,
		Params: params, StartedAt: now, Deadline: now.Add(d),
	})
	if err != nil {
		s.reply(w, nil, fmt.Errorf("recording the operation: %w", err))
		return
	}
	s.start(op, run)
	writeJSON(w, http.StatusAccepted, acceptedResponse{Operation: op.ID})
}

func (s *Server) start(op store.Operation, run func(context.Context) (any, error)) {
	done := make(chan struct{})
	s.mu.Lock()
	s.running[op.ID] = done
	s.mu.Unlock()
	s.metrics.opsInFlight.Inc()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.metrics.opsInFlight.Dec()
		ctx, cancel := context.WithDeadline(s.base, op.Deadline)
		defer cancel()
		res, err := run(ctx)
		if s.base.Err() != nil {
			// The daemon is stopping: leave the operation running in the
			// store for the next start to resume.
			s.mu.Lock()
			delete(s.running, op.ID)
			s.mu.Unlock()
			close(done)
			return
		}
		s.finish(op, res, err)
		s.mu.Lock()
		delete(s.running, op.ID)
		s.mu.Unlock()
		close(done)
	}()
}

func (s *Server) finish(op store.Operation, res any, err error) {
	state := store.OperationSucceeded
	if err != nil {
		state = store.OperationFailed
	}
	s.metrics.opDuration.WithLabelValues(op.Kind, string(state)).Observe(time.Since(op.StartedAt).Seconds())
	if _, uerr := s.ops.UpdateOperation(op.ID, func(o *store.Operation) error {
		o.State, o.FinishedAt = state, time.Now().UTC()
		if o.Params == nil {
			o.Params = map[string]string{}
		}
		if err != nil {
			o.Error = marshalError(err)
		} else if res != nil {
			b, jerr := json.Marshal(res)
			if jerr != nil {
				return jerr
			}
			o.Params["result"] = string(b)
		}
		return nil
	}); uerr != nil {
		s.log.Error("recording the end of an operation failed", "operation", op.ID, "error", uerr.Error())
	}
	if err != nil {
		s.log.Info("operation failed", "operation", op.ID, "kind", op.Kind, "machine_id", op.MachineID, "error", err.Error())
	} else {
		s.log.Info("operation succeeded", "operation", op.ID, "kind", op.Kind, "machine_id", op.MachineID)
	}
}

// resume picks up the operations a previous run left unfinished: a
// provisioning whose machine was already told to network-boot waits again;
// anything else fails with ErrInterrupted (re-running terraform apply
// starts it over).
func (s *Server) resume() {
	ops, err := s.ops.ListOperations("")
	if err != nil {
		s.log.Error("listing unfinished operations failed", "error", err.Error())
		return
	}
	r, canResume := s.eng.(resumable)
	for _, op := range ops {
		if op.State.Done() {
			continue
		}
		if op.Kind == "provision" && canResume && op.MachineID != "" &&
			r.ReachedStage(op.MachineID, "engine", "pxe_boot_requested", op.StartedAt) {
			s.log.Info("resuming an operation", "operation", op.ID, "machine_id", op.MachineID)
			want := op.Params["want"]
			s.start(op, func(ctx context.Context) (any, error) { return r.AwaitMachine(ctx, op.MachineID, want) })
			continue
		}
		s.log.Warn("an operation was interrupted by a restart", "operation", op.ID, "kind", op.Kind)
		s.finish(op, nil, fmt.Errorf("%w before it could be resumed (%s of machine %s): run terraform apply again", ErrInterrupted, op.Kind, op.MachineID))
	}
}

func (s *Server) getOperation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			s.reply(w, nil, badRequest("wait=%q is not a duration such as 25s", v))
			return
		}
		wait = min(d, 60*time.Second)
	}
	op, err := s.ops.GetOperation(id)
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, errorBody{&wireError{Code: "no_such_operation", Message: "no operation " + id}})
		return
	}
	if err != nil {
		s.reply(w, nil, err)
		return
	}
	if !op.State.Done() && wait > 0 {
		s.mu.Lock()
		done := s.running[id]
		s.mu.Unlock()
		if done != nil {
			t := time.NewTimer(wait)
			select {
			case <-done:
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
		}
		if op, err = s.ops.GetOperation(id); err != nil {
			s.reply(w, nil, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, operationView(op))
}

func operationView(op store.Operation) operationResponse {
	out := operationResponse{ID: op.ID, Kind: op.Kind, State: string(op.State), MachineID: op.MachineID, StartedAt: op.StartedAt, FinishedAt: op.FinishedAt}
	if v := op.Params["result"]; v != "" {
		out.Result = json.RawMessage(v)
	}
	if op.Error != "" {
		var we wireError
		if json.Unmarshal([]byte(op.Error), &we) == nil {
			out.Error = &we
		} else {
			out.Error = &wireError{Code: "internal", Message: op.Error}
		}
	}
	return out
}

// memOps keeps operations in memory (an engine without a store).
type memOps struct {
	mu  sync.Mutex
	ops map[string]store.Operation
}

func newMemOps() *memOps { return &memOps{ops: map[string]store.Operation{}} }

func (m *memOps) PutOperation(op store.Operation) (store.Operation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now().UTC()
	op.CreatedAt, op.UpdatedAt = now, now
	m.ops[op.ID] = op
	return op, nil
}

func (m *memOps) UpdateOperation(id string, fn func(*store.Operation) error) (store.Operation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	op, ok := m.ops[id]
	if !ok {
		return op, store.ErrNotFound
	}
	if op.Params != nil {
		p := make(map[string]string, len(op.Params))
		for k, v := range op.Params {
			p[k] = v
		}
		op.Params = p
	}
	if err := fn(&op); err != nil {
		return store.Operation{}, err
	}
	op.UpdatedAt = time.Now().UTC()
	m.ops[id] = op
	return op, nil
}

func (m *memOps) GetOperation(id string) (store.Operation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	op, ok := m.ops[id]
	if !ok {
		return op, store.ErrNotFound
	}
	return op, nil
}

func (m *memOps) ListOperations(machineID string) ([]store.Operation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Operation
	for _, op := range m.ops {
		if machineID == "" || op.MachineID == machineID {
			out = append(out, op)
		}
	}
	return out, nil
}
