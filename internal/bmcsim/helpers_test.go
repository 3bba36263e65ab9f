package bmcsim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// env is a running simulator plus an HTTP client that trusts it.
type env struct {
	t    *testing.T
	sim  *Simulator
	base string
	ca   []byte
	hc   *http.Client
	// auth applied to requests made with do: "basic" (default), "none", or a
	// session token.
	auth string
}

func startEnv(t *testing.T, opts Options) *env {
	t.Helper()
	return serveEnv(t, New(opts))
}

// startEnvClock runs a simulator whose sessions and power model follow clk.
func startEnvClock(t *testing.T, opts Options, clk *fakeClock) *env {
	t.Helper()
	sim := New(opts)
	sim.now = clk.Now
	return serveEnv(t, sim)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func serveEnv(t *testing.T, sim *Simulator) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	base, ca, err := sim.StartTLS(ctx)
	if err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	return &env{t: t, sim: sim, base: base, ca: ca, hc: newClient(t, ca, false), auth: "basic"}
}

func newClient(t *testing.T, ca []byte, noKeepAlive bool) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("CA PEM does not parse")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DisableKeepAlives: noKeepAlive}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (e *env) request(method, path string, body any, hdr map[string]string) (*http.Request, error) {
	return e.requestAs(e.auth, method, path, body, hdr)
}

func (e *env) requestAs(auth, method, path string, body any, hdr map[string]string) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			buf, err := json.Marshal(b)
			if err != nil {
				return nil, err
			}
			rd = bytes.NewReader(buf)
		}
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch auth {
	case "basic":
		req.SetBasicAuth("admin", "password")
	case "none", "":
	default:
		req.Header.Set("X-Auth-Token", auth)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return req, nil
}

// do sends a request and decodes a JSON body if there is one.
func (e *env) do(method, path string, body any, hdr map[string]string) reply {
	e.t.Helper()
	return e.doAs(e.auth, method, path, body, hdr)
}

// doAs is do with explicit credentials ("basic", "none" or a token).
func (e *env) doAs(auth, method, path string, body any, hdr map[string]string) reply {
	e.t.Helper()
	req, err := e.requestAs(auth, method, path, body, hdr)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			e.t.Fatalf("%s %s: body is not a JSON object: %v\n%s", method, path, err, raw)
		}
	}
	return r
}

func (e *env) get(path string) reply { e.t.Helper(); return e.do(http.MethodGet, path, nil, nil) }

// mustStatus fails the test unless the reply has the status.
func (r reply) mustStatus(t *testing.T, want int) reply {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.raw)
	}
	return r
}

// messageIDs lists the MessageIds of a Redfish error (or ExtendedInfo) body.
func messageIDs(body map[string]any) []string {
	var ids []string
	info, _ := body["@Message.ExtendedInfo"].([]any)
	if e, ok := body["error"].(map[string]any); ok {
		info, _ = e["@Message.ExtendedInfo"].([]any)
	}
	for _, m := range info {
		if mm, ok := m.(map[string]any); ok {
			id, _ := mm["MessageId"].(string)
			ids = append(ids, id)
		}
	}
	return ids
}

// hasMessage reports whether any MessageId ends with "."+suffix.
func hasMessage(body map[string]any, suffix string) bool {
	for _, id := range messageIDs(body) {
		if strings.HasSuffix(id, "."+suffix) {
			return true
		}
	}
	return false
}

// mustError checks status and that the body is a Redfish error with the message.
func (r reply) mustError(t *testing.T, status int, message string) {
	t.Helper()
	r.mustStatus(t, status)
	e, ok := r.body["error"].(map[string]any)
	if !ok {
		t.Fatalf("no Redfish error object in %s", r.raw)
	}
	if code, _ := e["code"].(string); code == "" {
		t.Fatalf("error without code: %s", r.raw)
	}
	if message != "" && !hasMessage(r.body, message) {
		t.Fatalf("want message %s in %v (%s)", message, messageIDs(r.body), r.raw)
	}
}

// path walks a decoded JSON document: path(m, "Boot", "BootSourceOverrideTarget").
func path(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, keys ...string) string {
	s, _ := path(v, keys...).(string)
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func (e *env) systemPath() string {
	ids := e.sim.SystemIDs()
	if len(ids) == 0 {
		e.t.Fatal("no systems")
	}
	return "/redfish/v1/Systems/" + ids[0]
}

func (e *env) waitPower(id, state string) {
	e.t.Helper()
	waitFor(e.t, id+" "+state, func() bool {
		st, ok := e.sim.System(id)
		return ok && st.PowerState == state
	})
}

func (e *env) reset(sysPath, resetType string) reply {
	e.t.Helper()
	return e.do(http.MethodPost, sysPath+"/Actions/ComputerSystem.Reset", map[string]any{"ResetType": resetType}, nil)
}

// okWrite accepts every vendor's success status for writes and actions.
func okWrite(t *testing.T, r reply) {
	t.Helper()
	if r.status != http.StatusOK && r.status != http.StatusNoContent {
		t.Fatalf("write failed: %d %s", r.status, r.raw)
	}
}
