// Package agent is the role agent: `terraform-provider-metal agent` runs on
// an installed machine, long-polls the boot service for the machine's
// desired role set (see internal/roles), applies it idempotently and reports
// a result per role.
//
// Apply is the part that changes the machine and needs no network; Run and
// Once add the HTTP conversation (internal/roles documents the routes).
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// Config configures the agent. Server, MachineID and Credential are needed
// by Run and Once only; Apply uses the rest.
type Config struct {
	// Server is the boot service's base URL, e.g. http://192.0.2.1:8080.
	Server     string
	MachineID  string
	Credential string
	// Root prefixes every file path a role names: "/" in production (the
	// default), a scratch directory in tests. Scripts run with Root as their
	// working directory and METAL_ROOT set to it.
	Root string
	// StatePath is where the agent records what it applied (default
	// roles.DefaultStatePath). A report not yet delivered is kept next to it
	// in StatePath+".report".
	StatePath  string
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Wait is the long-poll wait asked of the server (default and maximum
	// roles.MaxWait seconds).
	Wait time.Duration
	// Shell runs scripts that do not start with #! (default /bin/sh).
	Shell string
	// PackageManager is the command that installs packages: a name looked up
	// on PATH or a path. Its base name selects the command line (apt-get,
	// dnf, yum, zypper or apk). Empty detects the first of those on PATH.
	PackageManager string
	// MinBackoff and MaxBackoff bound the full-jitter exponential backoff
	// after an error (defaults 1 s and 30 s).
	MinBackoff, MaxBackoff time.Duration
}

// LogValue keeps the credential out of logs even when a whole Config is
// logged.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("server", c.Server),
		slog.String("machine_id", c.MachineID),
		slog.String("root", c.Root),
		slog.String("state", c.StatePath),
	)
}

// requestSlack is how much longer than the long-poll wait a request may take.
const requestSlack = 30 * time.Second

// maxDesiredBytes bounds the Desired document read from the server.
const maxDesiredBytes = 64 << 20

func (c Config) withDefaults() Config {
	if c.Root == "" {
		c.Root = "/"
	}
	if c.StatePath == "" {
		c.StatePath = roles.DefaultStatePath
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Wait <= 0 || c.Wait > roles.MaxWait*time.Second {
		c.Wait = roles.MaxWait * time.Second
	}
	if c.Shell == "" {
		c.Shell = "/bin/sh"
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	return c
}

func (c Config) validateRemote() error {
	var missing []string
	if c.Server == "" {
		missing = append(missing, "server")
	}
	if c.MachineID == "" {
		missing = append(missing, "machine_id")
	}
	if c.Credential == "" {
		missing = append(missing, "credential")
	}
	if len(missing) > 0 {
		return fmt.Errorf("agent configuration: missing %s", strings.Join(missing, ", "))
	}
	u, err := url.Parse(c.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("agent configuration: server %q: want an http:// or https:// URL", c.Server)
	}
	return nil
}

// LoadConfig reads the agent's configuration file. The file holds the
// machine's credential and should have mode 0600; Main warns when it does
// not (FAT file systems, where install configs sometimes put it, have no
// modes, so this is not refused).
func LoadConfig(path string) (roles.AgentConfig, error) {
	var c roles.AgentConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("agent configuration: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("agent configuration %s: %w", path, err)
	}
	var missing []string
	if c.Server == "" {
		missing = append(missing, "server")
	}
	if c.MachineID == "" {
		missing = append(missing, "machine_id")
	}
	if c.Credential == "" {
		missing = append(missing, "credential")
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("agent configuration %s: missing %s", path, strings.Join(missing, ", "))
	}
	return c, nil
}

// errUnauthorized is a 401 (or 403) from the server.
var errUnauthorized = errors.New("credential rejected by the server (HTTP 401): check the credential in the agent configuration")

// statusError is an unexpected HTTP status.
type statusError struct {
	op   string
	code int
	msg  string
}

func (e *statusError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("%s: HTTP %d", e.op, e.code)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.op, e.code, e.msg)
}

// permanent reports whether retrying the same request cannot help.
func (e *statusError) permanent() bool {
	return e.code >= 400 && e.code < 500 && e.code != http.StatusRequestTimeout && e.code != http.StatusTooManyRequests
}

func newStatusError(op string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return &statusError{op: op, code: resp.StatusCode, msg: strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))}
}

type client struct{ cfg Config }

func (c client) url(route string) string { return strings.TrimRight(c.cfg.Server, "/") + route }

func (c client) authorize(req *http.Request) {
	req.Header.Set("Authorization", "Bearer "+c.cfg.Credential)
	req.Header.Set("User-Agent", "metal-agent")
}

// desired long-polls for a Desired that differs from state's revision and
// generation. It returns nil, nil on 204.
func (c client) desired(ctx context.Context, state roles.State, wait time.Duration) (*roles.Desired, error) {
	secs := int64((wait + time.Second - 1) / time.Second)
	q := url.Values{
		"revision":   {state.Revision},
		"generation": {strconv.FormatUint(state.Generation, 10)},
		"wait":       {strconv.FormatInt(secs, 10)},
	}
	ctx, cancel := context.WithTimeout(ctx, wait+requestSlack)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(roles.PathDesired)+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	c.authorize(req)
	req.Header.Set("Accept", "application/json")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	switch resp.StatusCode {
	case http.StatusOK:
		var d roles.Desired
		dec := json.NewDecoder(io.LimitReader(resp.Body, maxDesiredBytes))
		if err := dec.Decode(&d); err != nil {
			return nil, fmt.Errorf("GET %s: decoding the desired roles: %w", roles.PathDesired, err)
		}
		if d.MachineID != "" && d.MachineID != c.cfg.MachineID {
			return nil, fmt.Errorf("GET %s: the server sent the roles of machine %q, this is %q", roles.PathDesired, d.MachineID, c.cfg.MachineID)
		}
		return &d, nil
	case http.StatusNoContent:
		return nil, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, errUnauthorized
	default:
		return nil, newStatusError("GET "+roles.PathDesired, resp)
	}
}

func (c client) report(ctx context.Context, rep roles.Report) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, requestSlack)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(roles.PathReport), bytes.NewReader(b))
	if err != nil {
		return err
	}
	c.authorize(req)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return errUnauthorized
	default:
		return newStatusError("POST "+roles.PathReport, resp)
	}
}

// backoff is full-jitter exponential backoff.
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	d := b.max
	if b.n < 30 {
		if e := b.min << b.n; e > 0 && e < b.max {
			d = e
		}
	}
	b.n++
	return rand.N(d) + 1
}

func (b *backoff) reset() { b.n = 0 }

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// agent is what Run and Once share.
type agent struct {
	cfg Config
	log *slog.Logger
	c   client
}

func newAgent(cfg Config) (*agent, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validateRemote(); err != nil {
		return nil, err
	}
	// Scripts are written next to the state (see Apply): make sure the
	// directory exists from the first apply on.
	_ = os.MkdirAll(filepath.Dir(cfg.StatePath), 0o700)
	return &agent{cfg: cfg, log: cfg.Logger, c: client{cfg: cfg}}, nil
}

// loadPending is the report an earlier run could not deliver, if any.
func (a *agent) loadPending() *roles.Report {
	pending, err := loadPendingReport(a.cfg.StatePath)
	if err != nil {
		a.log.Warn("ignoring an unreadable undelivered report", "error", err)
	}
	return pending
}

// sendPending delivers a report left over from an earlier attempt (or run)
// and forgets it once the server took it, or refused it for good.
func (a *agent) sendPending(ctx context.Context, pending *roles.Report) error {
	err := a.c.report(ctx, *pending)
	var se *statusError
	if errors.As(err, &se) && se.permanent() {
		a.log.Warn("the server refused the report; dropping it", "revision", pending.Revision, "generation", pending.Generation, "error", err)
		err = nil
	}
	if err != nil {
		return err
	}
	if err := removePendingReport(a.cfg.StatePath); err != nil {
		a.log.Error("removing the delivered report", "error", err)
	}
	a.log.Debug("report delivered", "revision", pending.Revision, "generation", pending.Generation)
	return nil
}

// apply applies d, records the new state and keeps the report as pending
// until it is delivered. When ctx ends during the apply, the state keeps
// the old revision and generation, so the next start asks for d again (and
// re-runs what the interruption failed); the report is not kept.
func (a *agent) apply(ctx context.Context, d roles.Desired, state roles.State) (roles.Report, roles.State, error) {
	a.log.Info("applying roles", "revision", d.Revision, "generation", d.Generation, "roles", len(d.Roles))
	rep, next := Apply(ctx, a.cfg, d, state)
	if err := ctx.Err(); err != nil {
		next.Revision, next.Generation = state.Revision, state.Generation
		if serr := SaveState(a.cfg.StatePath, next); serr != nil {
			a.log.Error("saving the agent state", "error", serr)
		}
		return rep, next, err
	}
	failed := 0
	for _, r := range rep.Results {
		if r.Status == roles.StatusFailed {
			failed++
			a.log.Warn("role failed", "role", r.Role, "action", r.Action, "output", lastBytes(r.Output, 2048))
		} else {
			a.log.Info("role", "role", r.Role, "action", r.Action, "status", r.Status)
		}
	}
	// The report is kept before the state: a crash in between re-applies
	// (idempotently) rather than losing the report.
	if err := savePendingReport(a.cfg.StatePath, rep); err != nil {
		a.log.Error("keeping the report until it is delivered", "error", err)
	}
	if err := SaveState(a.cfg.StatePath, next); err != nil {
		a.log.Error("saving the agent state", "error", err)
	}
	a.log.Info("roles applied", "revision", d.Revision, "generation", d.Generation, "failed", failed)
	return rep, next, nil
}

// Run long-polls the server for the machine's desired roles, applies them
// and reports, until ctx ends; it then returns nil. Errors talking to the
// server are logged and retried with backoff; it returns an error only when
// it cannot start (configuration, unreadable state).
func Run(ctx context.Context, cfg Config) error {
	a, err := newAgent(cfg)
	if err != nil {
		return err
	}
	state, err := LoadState(a.cfg.StatePath)
	if err != nil {
		return err
	}
	state, pending := a.takeInstallFailure(state, a.loadPending())
	a.log.Info("agent started", "server", a.cfg.Server, "machine_id", a.cfg.MachineID,
		"revision", state.Revision, "generation", state.Generation)
	a.loop(ctx, state, pending)
	a.log.Info("agent stopped")
	return nil
}

// loop is Run's poll, apply and report loop; it returns when ctx ends.
func (a *agent) loop(ctx context.Context, state roles.State, pending *roles.Report) {
	bo := backoff{min: a.cfg.MinBackoff, max: a.cfg.MaxBackoff}
	retry := func(msg string, err error) bool {
		d := bo.next()
		if errors.Is(err, errUnauthorized) {
			a.log.Error(msg+": credential rejected by the server; check the agent configuration", "retry_in", d.Round(time.Millisecond))
		} else {
			a.log.Warn(msg, "error", err, "retry_in", d.Round(time.Millisecond))
		}
		return sleep(ctx, d)
	}
	for ctx.Err() == nil {
		if pending != nil {
			if err := a.sendPending(ctx, pending); err != nil {
				if ctx.Err() != nil || !retry("reporting to the server", err) {
					break
				}
				continue
			}
			pending = nil
			bo.reset()
		}
		start := time.Now()
		d, err := a.c.desired(ctx, state, a.cfg.Wait)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			if !retry("polling the server", err) {
				break
			}
			continue
		}
		if d == nil {
			// A server that answers 204 at once instead of waiting would
			// make this loop spin: pace it.
			if time.Since(start) < min(time.Second, a.cfg.Wait) {
				if !sleep(ctx, bo.next()) {
					break
				}
			} else {
				bo.reset()
			}
			continue
		}
		bo.reset()
		rep, next, err := a.apply(ctx, *d, state)
		state = next
		if err != nil {
			return
		}
		pending = &rep
	}
}

// Once asks the server for the desired roles without waiting, applies them
// when they differ from what the agent has and reports. It returns a nil
// report when there is nothing new. A report that could not be delivered
// (by this or an earlier run) is kept and sent first next time.
func Once(ctx context.Context, cfg Config) (*roles.Report, error) {
	a, err := newAgent(cfg)
	if err != nil {
		return nil, err
	}
	state, err := LoadState(a.cfg.StatePath)
	if err != nil {
		return nil, err
	}
	state, pending := a.takeInstallFailure(state, a.loadPending())
	if pending != nil {
		if err := a.sendPending(ctx, pending); err != nil {
			return nil, fmt.Errorf("delivering an earlier report: %w", err)
		}
	}
	d, err := a.c.desired(ctx, state, 0)
	if err != nil {
		return nil, err
	}
	if d == nil {
		a.log.Info("roles up to date", "revision", state.Revision, "generation", state.Generation)
		return nil, nil
	}
	rep, _, err := a.apply(ctx, *d, state)
	if err != nil {
		return &rep, err
	}
	if err := a.sendPending(ctx, &rep); err != nil {
		return &rep, fmt.Errorf("reporting to the server (kept for the next run): %w", err)
	}
	return &rep, nil
}

// lastBytes is the end of s, at most n bytes.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[len(s)-n:], "")
}
