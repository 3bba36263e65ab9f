package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

const testCredential = "s3cret-credential-value"

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeServer implements the agent routes of the boot service.
type fakeServer struct {
	t       *testing.T
	mu      sync.Mutex
	desired roles.Desired
	polls   []url.Values
	auths   []string
	reports []roles.Report
	// pollStatus and reportStatus, when they return non-zero, answer the
	// n-th (1-based) request with that status instead.
	pollStatus   func(n int) int
	reportStatus func(n int) int
	pollCh       chan url.Values
	reportCh     chan roles.Report
}

func newFakeServer(t *testing.T, d roles.Desired) (*fakeServer, *httptest.Server) {
	fs := &fakeServer{t: t, desired: d, pollCh: make(chan url.Values, 100), reportCh: make(chan roles.Report, 100)}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close)
	return fs, srv
}

func (fs *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	fs.auths = append(fs.auths, r.Header.Get("Authorization"))
	authorized := r.Header.Get("Authorization") == "Bearer "+testCredential
	fs.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == roles.PathDesired:
		q := r.URL.Query()
		fs.mu.Lock()
		fs.polls = append(fs.polls, q)
		n := len(fs.polls)
		d := fs.desired
		fs.mu.Unlock()
		select {
		case fs.pollCh <- q:
		default:
		}
		if !authorized {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if fs.pollStatus != nil {
			if s := fs.pollStatus(n); s != 0 {
				w.WriteHeader(s)
				return
			}
		}
		if q.Get("revision") == d.Revision && q.Get("generation") == strconv.FormatUint(d.Generation, 10) {
			if wait, _ := strconv.Atoi(q.Get("wait")); wait > 0 {
				// Nothing new: hold the long poll until the client goes.
				<-r.Context().Done()
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(d)
	case r.Method == http.MethodPost && r.URL.Path == roles.PathReport:
		if !authorized {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var rep roles.Report
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			fs.t.Errorf("report body: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		fs.mu.Lock()
		fs.reports = append(fs.reports, rep)
		n := len(fs.reports)
		fs.mu.Unlock()
		if fs.reportStatus != nil {
			if s := fs.reportStatus(n); s != 0 {
				w.WriteHeader(s)
				return
			}
		}
		select {
		case fs.reportCh <- rep:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func testDesired() roles.Desired {
	return roles.Desired{MachineID: "m1", Revision: "rev-1", Generation: 7, Roles: []roles.Rendered{
		mkRole("base", []roles.File{file("/etc/base.conf", "base\n")}, "echo base applied"),
	}}
}

func remoteFixture(t *testing.T, srv *httptest.Server) (*fixture, *syncBuffer) {
	f := newFixture(t)
	logs := &syncBuffer{}
	f.cfg.Server = srv.URL
	f.cfg.Credential = testCredential
	f.cfg.HTTPClient = srv.Client()
	f.cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.cfg.MinBackoff = time.Millisecond
	f.cfg.MaxBackoff = 5 * time.Millisecond
	return f, logs
}

func TestRun(t *testing.T) {
	fs, srv := newFakeServer(t, testDesired())
	fs.pollStatus = func(n int) int {
		switch n {
		case 1:
			return http.StatusServiceUnavailable
		case 2:
			return http.StatusNoContent // a long poll that ended empty
		}
		return 0
	}
	f, logs := remoteFixture(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, f.cfg) }()

	rep := waitFor(t, fs.reportCh, "the report")
	if rep.Revision != "rev-1" || rep.Generation != 7 || len(rep.Results) != 1 {
		t.Fatalf("report %+v", rep)
	}
	if r := rep.Results[0]; r.Role != "base" || r.Action != roles.ActionApplied || r.Status != roles.StatusOK ||
		r.Digest != testDesired().Roles[0].Digest || !strings.Contains(r.Output, "base applied") {
		t.Errorf("result %+v", r)
	}
	var q url.Values
	for range 4 {
		q = waitFor(t, fs.pollCh, "a poll")
		if q.Get("wait") != strconv.Itoa(roles.MaxWait) {
			t.Errorf("poll asked to wait %q", q.Get("wait"))
		}
	}
	// The fourth poll says what the agent now has, and waits.
	if q.Get("revision") != "rev-1" || q.Get("generation") != "7" {
		t.Errorf("poll after the apply: %v", q)
	}
	cancel()
	if err := waitFor(t, done, "Run to return"); err != nil {
		t.Fatal(err)
	}

	fs.mu.Lock()
	for _, a := range fs.auths {
		if a != "Bearer "+testCredential {
			t.Errorf("authorization %q", a)
		}
	}
	fs.mu.Unlock()
	if got := f.read(t, "/etc/base.conf"); got != "base\n" {
		t.Errorf("base.conf = %q", got)
	}
	st, err := LoadState(f.cfg.StatePath)
	if err != nil || st.Revision != "rev-1" || st.Generation != 7 || st.Roles["base"].Status != roles.StatusOK {
		t.Errorf("saved state %+v, %v", st, err)
	}
	if _, err := os.Stat(pendingReportPath(f.cfg.StatePath)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("delivered report still pending: %v", err)
	}
	out := logs.String()
	wantContains(t, "logs", out, "polling the server", "503", "roles applied", "agent stopped")
	if strings.Contains(out, testCredential) {
		t.Errorf("the credential is in the logs:\n%s", out)
	}
}

func TestRunCredentialRejected(t *testing.T) {
	fs, srv := newFakeServer(t, testDesired())
	f, logs := remoteFixture(t, srv)
	f.cfg.Credential = "wrong-" + testCredential
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, f.cfg) }()
	for range 3 {
		waitFor(t, fs.pollCh, "a poll")
	}
	cancel()
	if err := waitFor(t, done, "Run to return"); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	wantContains(t, "logs", out, "credential rejected by the server", "retry_in")
	if strings.Contains(out, testCredential) {
		t.Errorf("the credential is in the logs:\n%s", out)
	}
	if f.exists("/etc/base.conf") {
		t.Error("roles applied without a valid credential")
	}
}

func TestOnce(t *testing.T) {
	fs, srv := newFakeServer(t, testDesired())
	f, logs := remoteFixture(t, srv)
	ctx := context.Background()

	rep, err := Once(ctx, f.cfg)
	if err != nil || rep == nil {
		t.Fatalf("Once: %+v, %v", rep, err)
	}
	got := waitFor(t, fs.reportCh, "the report")
	if got.Generation != 7 || len(got.Results) != 1 || got.Results[0].Status != roles.StatusOK {
		t.Fatalf("report %+v", got)
	}
	if q := waitFor(t, fs.pollCh, "a poll"); q.Get("wait") != "0" || q.Get("generation") != "0" || q.Get("revision") != "" {
		t.Errorf("first poll %v", q)
	}

	// Nothing new: no report.
	if rep, err := Once(ctx, f.cfg); err != nil || rep != nil {
		t.Fatalf("second Once: %+v, %v", rep, err)
	}
	if q := waitFor(t, fs.pollCh, "a poll"); q.Get("generation") != "7" || q.Get("revision") != "rev-1" {
		t.Errorf("second poll %v", q)
	}

	// A new generation with the same roles: unchanged.
	fs.mu.Lock()
	fs.desired.Generation = 8
	fs.mu.Unlock()
	rep, err = Once(ctx, f.cfg)
	if err != nil || rep == nil || rep.Results[0].Action != roles.ActionUnchanged {
		t.Fatalf("third Once: %+v, %v", rep, err)
	}
	if strings.Contains(logs.String(), testCredential) {
		t.Error("the credential is in the logs")
	}
}

func TestOnceKeepsUndeliveredReport(t *testing.T) {
	fs, srv := newFakeServer(t, testDesired())
	fs.reportStatus = func(n int) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return 0
	}
	f, _ := remoteFixture(t, srv)
	rep, err := Once(context.Background(), f.cfg)
	if err == nil || rep == nil || !strings.Contains(err.Error(), "kept for the next run") {
		t.Fatalf("Once: %+v, %v", rep, err)
	}
	if _, err := os.Stat(pendingReportPath(f.cfg.StatePath)); err != nil {
		t.Fatalf("report not kept: %v", err)
	}
	// The next run delivers it, then finds nothing new.
	rep, err = Once(context.Background(), f.cfg)
	if err != nil || rep != nil {
		t.Fatalf("second Once: %+v, %v", rep, err)
	}
	if got := waitFor(t, fs.reportCh, "the report"); got.Generation != 7 || len(got.Results) != 1 {
		t.Errorf("delivered report %+v", got)
	}
	if _, err := os.Stat(pendingReportPath(f.cfg.StatePath)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("delivered report still pending: %v", err)
	}
}

func TestOnceErrors(t *testing.T) {
	t.Run("credential rejected", func(t *testing.T) {
		_, srv := newFakeServer(t, testDesired())
		f, _ := remoteFixture(t, srv)
		f.cfg.Credential = "wrong"
		if _, err := Once(context.Background(), f.cfg); !errors.Is(err, errUnauthorized) {
			t.Fatalf("Once: %v", err)
		}
	})
	t.Run("another machine's roles", func(t *testing.T) {
		d := testDesired()
		d.MachineID = "m2"
		_, srv := newFakeServer(t, d)
		f, _ := remoteFixture(t, srv)
		if _, err := Once(context.Background(), f.cfg); err == nil || !strings.Contains(err.Error(), `machine "m2", this is "m1"`) {
			t.Fatalf("Once: %v", err)
		}
		if f.exists("/etc/base.conf") {
			t.Error("another machine's roles were applied")
		}
	})
	t.Run("configuration", func(t *testing.T) {
		if _, err := Once(context.Background(), Config{Server: "ftp://x", MachineID: "m", Credential: "c"}); err == nil || !strings.Contains(err.Error(), "http://") {
			t.Fatalf("Once: %v", err)
		}
		if _, err := Once(context.Background(), Config{Server: "http://x"}); err == nil || !strings.Contains(err.Error(), "missing machine_id, credential") {
			t.Fatalf("Once: %v", err)
		}
	})
	t.Run("corrupt state", func(t *testing.T) {
		_, srv := newFakeServer(t, testDesired())
		f, _ := remoteFixture(t, srv)
		if err := os.WriteFile(f.cfg.StatePath, []byte("]"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Run(context.Background(), f.cfg); err == nil || !strings.Contains(err.Error(), f.cfg.StatePath) {
			t.Fatalf("Run: %v", err)
		}
	})
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write("ok.json", `{"server":"http://192.0.2.1:8080","machine_id":"m1","credential":"c","future_field":1}`)
	c, err := LoadConfig(p)
	if err != nil || c.Server != "http://192.0.2.1:8080" || c.MachineID != "m1" || c.Credential != "c" {
		t.Fatalf("LoadConfig: %+v, %v", c, err)
	}
	p = write("missing.json", `{"server":"http://x"}`)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "missing machine_id, credential") {
		t.Fatalf("LoadConfig: %v", err)
	}
	p = write("bad.json", `{`)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("LoadConfig: %v", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "absent.json")); err == nil || !strings.Contains(err.Error(), "absent.json") {
		t.Fatalf("LoadConfig: %v", err)
	}
}

func TestConfigLogValueHidesCredential(t *testing.T) {
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "config", Config{Server: "http://s", Credential: testCredential})
	if strings.Contains(b.String(), testCredential) || !strings.Contains(b.String(), "http://s") {
		t.Fatalf("logged %q", b.String())
	}
}

func TestMainCommand(t *testing.T) {
	_, srv := newFakeServer(t, testDesired())
	dir := t.TempDir()
	root := t.TempDir()
	cfgPath := filepath.Join(dir, "agent.json")
	b, _ := json.Marshal(roles.AgentConfig{Server: srv.URL, MachineID: "m1", Credential: testCredential})
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(dir, "state", "state.json")
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"agent", "-once", "-config", cfgPath, "-root", root, "-state", statePath}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	var rep roles.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || rep.Generation != 7 || rep.Results[0].Status != roles.StatusOK {
		t.Fatalf("stdout %q: %v", stdout.String(), err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc", "base.conf")); err != nil {
		t.Error(err)
	}
	wantContains(t, "stderr", stderr.String(), "chmod 0600", "mode=0644")
	if strings.Contains(stderr.String(), testCredential) {
		t.Error("the credential is in the logs")
	}

	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"-h"}, 0},
		{[]string{"-bogus"}, 2},
		{[]string{"extra"}, 2},
		{[]string{"-once", "-config", filepath.Join(dir, "absent.json")}, 1},
	} {
		stdout.Reset()
		stderr.Reset()
		if got := Main(context.Background(), tc.args, &stdout, &stderr); got != tc.code {
			t.Errorf("Main(%q) = %d, want %d; stderr: %s", tc.args, got, tc.code, stderr.String())
		}
	}
}
