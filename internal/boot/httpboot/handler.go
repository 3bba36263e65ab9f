// Package httpboot is the HTTP side of the bundled boot service: the
// per-machine iPXE scripts, install configs and boot artifacts, the progress
// and "provisioned" callbacks, and the iPXE binaries for UEFI HTTP boot.
//
// Routes (see Handler):
//
//	GET  /boot/{token}/script.ipxe       install (or wipe) script
//	GET  /boot/{token}/kernel            artifact, by Vars.Image sum
//	GET  /boot/{token}/initrd            artifact
//	GET  /boot/{token}/image             artifact (when Vars.Image has one)
//	GET  /boot/{token}/config/{name}     render.ConfigNames(kind)
//	GET  /boot/{token}/progress/{stage}  progress report for iPXE (cannot POST)
//	POST /boot/{token}/events            progress report {"stage","message"}
//	POST /boot/{token}/provisioned       done: revokes the token
//	GET  /boot/local.ipxe                local-disk boot script
//	GET  /boot/by-mac/{mac}/script.ipxe  the same local-disk boot script
//	GET  /boot/binaries/{name}           allow-listed iPXE binaries
//
// (GET routes also answer HEAD.)
//
// Security model:
//
//   - Every per-machine route needs a token the backend accepts. Anything
//     else under /boot/{token}/ (malformed, unknown, expired, used token,
//     or no such route) gets the same bare 403: empty body, no hint whether
//     the machine or the route exists.
//   - Machine.AllowedSources optionally binds a token to the client
//     addresses the machine may use; other sources get the same 403.
//   - After POST provisioned the token is dead (backend contract, and the
//     handler refuses a Machine marked Provisioned). The machine's next PXE
//     boot must be pointed by DHCP at a non-secret URL: /boot/local.ipxe or
//     /boot/by-mac/{mac}/script.ipxe. Both return the same constant
//     local-boot script for every caller and never consult the backend, so
//     they reveal nothing (not even whether a MAC is known). The by-mac
//     form exists so the DHCP layer can hand a per-machine URL (iPXE
//     expands ${mac:hexhyp} in it) and the access log shows which machine
//     asked.
//   - Artifacts are opened only by a validated sha256 from the backend's
//     Machine, never by a request path; binaries only by exact allow-listed
//     name through an os.Root.
//   - Tokens are never logged: logs carry TokenFingerprint and the route
//     pattern, never the request path.
package httpboot

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
)

// DefaultBinaries is the allow-list of /boot/binaries/{name} when
// Config.Binaries is empty (the names Debian's ipxe package ships, plus
// arm64 builds).
var DefaultBinaries = []string{"ipxe.efi", "snponly.efi", "undionly.kpxe", "ipxe.pxe", "ipxe-arm64.efi", "snponly-arm64.efi"}

const byMACPattern = "GET /boot/by-mac/{mac}/script.ipxe"

// DefaultMaxBodyBytes caps callback bodies.
const DefaultMaxBodyBytes = 64 << 10

// MaxMessageBytes caps an event's message; longer ones are truncated.
const MaxMessageBytes = 4096

// Config configures a Handler.
type Config struct {
	// Backend resolves tokens and records events. Required.
	Backend Backend
	// Artifacts serves kernel, initrd and image by sum. Required.
	Artifacts Artifacts
	// BaseURL is how machines reach this handler (e.g.
	// http://192.0.2.1:8080), used when Machine.Vars.BaseURL is empty. When
	// both are empty the request's Host is used.
	BaseURL string
	// BinariesDir holds the iPXE binaries served at /boot/binaries/{name};
	// empty disables that route (404).
	BinariesDir string
	// Binaries is the allow-list of names in BinariesDir (exact file names,
	// no directories). Empty means DefaultBinaries.
	Binaries []string
	// MaxBodyBytes caps POST bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives logs; nil discards.
	Logger *slog.Logger
	// Now is the clock for event times; nil means time.Now.
	Now func() time.Time
}

// Handler serves the boot routes. Create it with New; it is safe for
// concurrent use.
type Handler struct {
	backend   Backend
	artifacts Artifacts
	baseURL   string
	binaries  []string
	root      *os.Root
	maxBody   int64
	log       *slog.Logger
	now       func() time.Time

	mux      *http.ServeMux // outer: subtrees
	tokenMux *http.ServeMux // /boot/{token}/...
}

// New builds a Handler. Close releases the binaries directory.
func New(cfg Config) (*Handler, error) {
	if cfg.Backend == nil {
		return nil, errors.New("httpboot: Config.Backend is required")
	}
	if cfg.Artifacts == nil {
		return nil, errors.New("httpboot: Config.Artifacts is required")
	}
	h := &Handler{
		backend:   cfg.Backend,
		artifacts: cfg.Artifacts,
		baseURL:   strings.TrimRight(cfg.BaseURL, "/"),
		binaries:  cfg.Binaries,
		maxBody:   cfg.MaxBodyBytes,
		log:       cfg.Logger,
		now:       cfg.Now,
	}
	if len(h.binaries) == 0 {
		h.binaries = DefaultBinaries
	}
	for _, b := range h.binaries {
		if b == "" || b == "." || b == ".." || strings.ContainsAny(b, `/\`) {
			return nil, errors.New("httpboot: Config.Binaries entries must be plain file names")
		}
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if cfg.BinariesDir != "" {
		root, err := os.OpenRoot(cfg.BinariesDir)
		if err != nil {
			return nil, err
		}
		h.root = root
	}

	t := http.NewServeMux()
	t.HandleFunc("GET /boot/{token}/"+render.PathScript, h.authed(h.serveScript))
	t.HandleFunc("GET /boot/{token}/"+render.PathKernel, h.authed(h.serveArtifact(StageKernel)))
	t.HandleFunc("GET /boot/{token}/"+render.PathInitrd, h.authed(h.serveArtifact(StageInitrd)))
	t.HandleFunc("GET /boot/{token}/"+render.PathImage, h.authed(h.serveArtifact(StageImage)))
	t.HandleFunc("GET /boot/{token}/"+render.PathConfig+"{name}", h.authed(h.serveConfig))
	t.HandleFunc("GET /boot/{token}/"+render.PathProgress+"{stage}", h.authed(h.serveProgress))
	t.HandleFunc("POST /boot/{token}/"+render.PathEvents, h.authed(h.serveEvents))
	t.HandleFunc("POST /boot/{token}/"+render.PathProvisioned, h.authed(h.serveProvisioned))
	h.tokenMux = t

	m := http.NewServeMux()
	m.HandleFunc("GET /boot/binaries/{name}", h.serveBinary)
	m.HandleFunc(byMACPattern, h.serveLocalBoot)
	m.HandleFunc("GET /boot/local.ipxe", h.serveLocalBoot)
	m.HandleFunc("/boot/binaries/", http.NotFound)
	m.HandleFunc("/boot/by-mac/", http.NotFound)
	m.HandleFunc("/boot/", h.serveTokenTree)
	h.mux = m
	return h, nil
}

// Close releases the binaries directory handle.
func (h *Handler) Close() error {
	if h.root != nil {
		return h.root.Close()
	}
	return nil
}

// ServeHTTP implements http.Handler. A non-canonical path under /boot/
// ("..", ".", "//") is refused like a bad token instead of being redirected:
// boot clients never send one.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; strings.HasPrefix(p, "/boot/") {
		clean := path.Clean(p)
		if strings.HasSuffix(p, "/") {
			clean += "/"
		}
		if clean != p {
			h.deny(w, r, "", "non-canonical path")
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

// ScriptURL is a machine's install script URL (secret: it carries the
// token). The DHCP layer hands it to iPXE while the machine provisions.
func ScriptURL(base, token string) string { return render.TokenURL(base, token, render.PathScript) }

// LocalBootURL is the constant local-boot script URL, safe to hand to any
// machine that must not (re)install.
func LocalBootURL(base string) string { return strings.TrimRight(base, "/") + "/boot/local.ipxe" }

// ByMACScriptURL is the per-machine spelling of LocalBootURL. mac may be a
// literal MAC or the iPXE expansion "${mac:hexhyp}".
func ByMACScriptURL(base, mac string) string {
	return strings.TrimRight(base, "/") + "/boot/by-mac/" + mac + "/script.ipxe"
}

// BinaryURL is the UEFI HTTP boot URL of an allow-listed iPXE binary.
func BinaryURL(base, name string) string {
	return strings.TrimRight(base, "/") + "/boot/binaries/" + name
}

// serveTokenTree dispatches /boot/... requests that are not a public
// route. Anything that matches no token route (wrong method, unknown
// route, empty token) is refused exactly like a bad token.
func (h *Handler) serveTokenTree(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.tokenMux.Handler(r); pattern == "" {
		h.deny(w, r, "", "no route")
		return
	}
	h.tokenMux.ServeHTTP(w, r)
}

// request is an authorised per-token request.
type request struct {
	machine *Machine
	token   string
	fp      string
}

func (h *Handler) authed(next func(http.ResponseWriter, *http.Request, *request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := r.PathValue("token")
		if !ValidTokenSyntax(tok) {
			h.deny(w, r, "", "malformed token")
			return
		}
		fp := TokenFingerprint(tok)
		m, err := h.backend.MachineByToken(r.Context(), tok)
		switch {
		case errors.Is(err, ErrInvalidToken) || (err == nil && m == nil):
			h.deny(w, r, fp, "invalid token")
			return
		case err != nil:
			h.log.Error("boot backend failed", "route", r.Pattern, "token_fp", fp, "err", err)
			bare(w, http.StatusServiceUnavailable)
			return
		case m.Provisioned:
			h.deny(w, r, fp, "machine already provisioned")
			return
		case !sourceAllowed(r.RemoteAddr, m.AllowedSources):
			h.deny(w, r, fp, "client address not allowed for token")
			return
		}
		next(w, r, &request{machine: m, token: tok, fp: fp})
	}
}

func sourceAllowed(remote string, allowed []netip.Prefix) bool {
	if len(allowed) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// bare answers a status with no body and nothing but Cache-Control.
func bare(w http.ResponseWriter, status int) {
	hd := w.Header()
	for k := range hd {
		delete(hd, k)
	}
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
}

func (h *Handler) deny(w http.ResponseWriter, r *http.Request, fp, why string) {
	h.log.Info("boot request denied", "reason", why, "route", r.Pattern, "method", r.Method, "token_fp", fp, "remote", r.RemoteAddr)
	bare(w, http.StatusForbidden)
}

func (h *Handler) record(r *http.Request, q *request, e Event) {
	e.Time = h.now()
	e.Remote = r.RemoteAddr
	h.backend.Record(r.Context(), q.machine.ID, e)
	h.log.Debug("boot event", "machine", q.machine.ID, "stage", e.Stage, "bytes", e.Bytes, "status", e.Status, "reported", e.Reported, "token_fp", q.fp)
}

func (h *Handler) vars(r *http.Request, q *request) render.MachineVars {
	v := q.machine.Vars
	v.Token = q.token
	if v.BaseURL == "" {
		v.BaseURL = h.baseURL
	}
	if v.BaseURL == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		v.BaseURL = scheme + "://" + r.Host
	}
	return v
}

// writeBody sends a small generated document (never cached: it carries
// the token) and returns the body bytes written.
func writeBody(w http.ResponseWriter, r *http.Request, contentType string, b []byte) int64 {
	hd := w.Header()
	hd.Set("Content-Type", contentType)
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return 0
	}
	n, _ := w.Write(b)
	return int64(n)
}

func (h *Handler) serveScript(w http.ResponseWriter, r *http.Request, q *request) {
	v := h.vars(r, q)
	var (
		b   []byte
		err error
	)
	if q.machine.Action == ActionWipe {
		b, err = render.WipeScript(v)
	} else {
		b, err = render.IPXEScript(v)
	}
	if err != nil {
		h.log.Error("rendering boot script failed", "machine", q.machine.ID, "err", err)
		bare(w, http.StatusInternalServerError)
		h.record(r, q, Event{Stage: StageScript, Status: http.StatusInternalServerError, Message: "render failed"})
		return
	}
	n := writeBody(w, r, "text/plain; charset=utf-8", b)
	h.record(r, q, Event{Stage: StageScript, Bytes: n, Status: http.StatusOK})
}

func (h *Handler) serveConfig(w http.ResponseWriter, r *http.Request, q *request) {
	name := r.PathValue("name")
	stage := StageConfig + name
	if !slices.Contains(render.ConfigNames(q.machine.Vars.Kind), name) {
		bare(w, http.StatusNotFound)
		return
	}
	b, err := render.Config(h.vars(r, q), name)
	if err != nil {
		h.log.Error("rendering install config failed", "machine", q.machine.ID, "config", name, "err", err)
		bare(w, http.StatusInternalServerError)
		h.record(r, q, Event{Stage: stage, Status: http.StatusInternalServerError, Message: "render failed"})
		return
	}
	n := writeBody(w, r, render.ContentType(name), b)
	h.record(r, q, Event{Stage: stage, Bytes: n, Status: http.StatusOK})
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (h *Handler) serveArtifact(stage string) func(http.ResponseWriter, *http.Request, *request) {
	return func(w http.ResponseWriter, r *http.Request, q *request) {
		img := q.machine.Vars.Image
		sum := map[string]string{StageKernel: img.KernelSHA256, StageInitrd: img.InitrdSHA256, StageImage: img.ImageSHA256}[stage]
		if sum == "" {
			bare(w, http.StatusNotFound)
			return
		}
		if !sha256RE.MatchString(sum) {
			h.log.Error("machine has an invalid artifact sum", "machine", q.machine.ID, "stage", stage)
			bare(w, http.StatusInternalServerError)
			return
		}
		f, err := h.artifacts.Open(sum)
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, fs.ErrNotExist) {
				status = http.StatusNotFound
			}
			h.log.Error("boot artifact unavailable", "machine", q.machine.ID, "stage", stage, "sha256", sum, "err", err)
			bare(w, status)
			h.record(r, q, Event{Stage: stage, Status: status, Message: "artifact not available"})
			return
		}
		defer func() { _ = f.Close() }()
		cw := serveFile(w, r, f, `"sha256:`+sum+`"`, "private")
		h.record(r, q, Event{Stage: stage, Bytes: cw.n, Status: cw.status})
	}
}

var stageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func (h *Handler) serveProgress(w http.ResponseWriter, r *http.Request, q *request) {
	stage := r.PathValue("stage")
	if !stageRE.MatchString(stage) {
		bare(w, http.StatusBadRequest)
		return
	}
	writeBody(w, r, "text/plain; charset=utf-8", []byte("ok\n"))
	h.record(r, q, Event{Stage: stage, Status: http.StatusOK, Reported: true})
}

// eventBody is the JSON of POST events.
type eventBody struct {
	Stage   string `json:"stage"`
	Message string `json:"message"`
}

func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request, q *request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		bare(w, http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		bare(w, http.StatusBadRequest)
		return
	}
	var e eventBody
	if err := json.Unmarshal(body, &e); err != nil || !stageRE.MatchString(e.Stage) {
		bare(w, http.StatusBadRequest)
		return
	}
	bare(w, http.StatusNoContent)
	h.record(r, q, Event{Stage: e.Stage, Message: truncate(e.Message, MaxMessageBytes), Bytes: int64(len(body)), Status: http.StatusNoContent, Reported: true})
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func (h *Handler) serveProvisioned(w http.ResponseWriter, r *http.Request, q *request) {
	// The body is informational (cloud-init's phone_home posts a form;
	// curl posts nothing); read it so the connection can be reused.
	n, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, h.maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		bare(w, http.StatusRequestEntityTooLarge)
		return
	}
	if err := h.backend.MarkProvisioned(r.Context(), q.machine.ID); err != nil {
		if errors.Is(err, ErrInvalidToken) {
			h.deny(w, r, q.fp, "machine already provisioned")
			return
		}
		h.log.Error("marking machine provisioned failed", "machine", q.machine.ID, "err", err)
		bare(w, http.StatusServiceUnavailable)
		return
	}
	bare(w, http.StatusNoContent)
	h.log.Info("machine provisioned", "machine", q.machine.ID, "token_fp", q.fp, "remote", r.RemoteAddr)
	h.record(r, q, Event{Stage: StageProvisioned, Bytes: n, Status: http.StatusNoContent, Reported: true})
}

// serveLocalBoot answers the same constant script to everyone; see the
// package documentation.
func (h *Handler) serveLocalBoot(w http.ResponseWriter, r *http.Request) {
	var mac string
	if r.Pattern == byMACPattern {
		hw, err := net.ParseMAC(r.PathValue("mac"))
		if err != nil || len(hw) != 6 {
			http.NotFound(w, r)
			return
		}
		mac = hw.String()
	}
	h.log.Debug("local boot script", "mac", mac, "remote", r.RemoteAddr)
	writeBody(w, r, "text/plain; charset=utf-8", render.LocalBootScript())
}

func (h *Handler) serveBinary(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if h.root == nil || !slices.Contains(h.binaries, name) {
		http.NotFound(w, r)
		return
	}
	f, err := h.root.Open(name)
	if err != nil {
		h.log.Warn("boot binary unavailable", "name", name, "err", err)
		http.NotFound(w, r)
		return
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	cw := serveFile(w, r, f, "", "no-cache")
	h.log.Debug("boot binary served", "name", name, "status", cw.status, "bytes", cw.n, "remote", r.RemoteAddr)
}
