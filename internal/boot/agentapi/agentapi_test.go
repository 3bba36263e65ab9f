package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

type fakeBackend struct {
	mu      sync.Mutex
	desired roles.Desired
	changed chan struct{}
	reports []roles.Report
	gone    bool
	// asked gets a value on every Desired call.
	asked chan struct{}
}

func newFake() *fakeBackend {
	return &fakeBackend{desired: roles.Desired{MachineID: "m-1", Revision: "r1", Generation: 1}, changed: make(chan struct{}), asked: make(chan struct{}, 16)}
}

func (f *fakeBackend) AgentMachine(_ context.Context, cred string) (string, error) {
	if cred != "m-1.secret" {
		return "", ErrUnauthorized
	}
	return "m-1", nil
}

func (f *fakeBackend) Desired(context.Context, string) (roles.Desired, <-chan struct{}, error) {
	select {
	case f.asked <- struct{}{}:
	default:
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return roles.Desired{}, nil, fmt.Errorf("%w: gone", ErrUnauthorized)
	}
	return f.desired, f.changed, nil
}

func (f *fakeBackend) Report(_ context.Context, _ string, r roles.Report) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = append(f.reports, r)
	return nil
}

func (f *fakeBackend) set(d roles.Desired) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.desired = d
	close(f.changed)
	f.changed = make(chan struct{})
}

// get polls for the desired roles; it returns the status, the body and the
// WWW-Authenticate header.
func get(t *testing.T, srv *httptest.Server, cred, query string) (int, roles.Desired, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+roles.PathDesired+"?"+query, nil)
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d roles.Desired
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, d, resp.Header.Get("WWW-Authenticate")
}

func TestDesiredLongPoll(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(New(Config{Backend: f, MaxWait: 2 * time.Second}))
	defer srv.Close()

	for _, cred := range []string{"", "m-1.wrong"} {
		if code, _, challenge := get(t, srv, cred, ""); code != http.StatusUnauthorized || challenge == "" {
			t.Errorf("credential %q: %d", cred, code)
		}
	}
	// Different from what the agent has: at once.
	if code, d, _ := get(t, srv, "m-1.secret", "revision=old&generation=1&wait=30"); code != http.StatusOK || d.Revision != "r1" {
		t.Fatalf("changed desired: %d %+v", code, d)
	}
	// The same: 204 when the (short) wait ends.
	if code, _, _ := get(t, srv, "m-1.secret", "revision=r1&generation=1&wait=0"); code != http.StatusNoContent {
		t.Fatalf("unchanged desired: %d", code)
	}
	if code, _, _ := get(t, srv, "m-1.secret", "wait=soon"); code != http.StatusBadRequest {
		t.Fatalf("bad wait: %d", code)
	}
	// The same, then a change while the poll waits: answered with it
	// before the (2 s) wait ends.
	for len(f.asked) > 0 {
		<-f.asked
	}
	type result struct {
		code int
		d    roles.Desired
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		code, d, _ := get(t, srv, "m-1.secret", "revision=r1&generation=1&wait=30")
		done <- result{code, d}
	}()
	<-f.asked
	f.set(roles.Desired{MachineID: "m-1", Revision: "r1", Generation: 2})
	res := <-done
	if res.code != http.StatusOK || res.d.Generation != 2 || time.Since(start) >= 2*time.Second {
		t.Fatalf("woken poll: %d %+v after %v", res.code, res.d, time.Since(start))
	}
	// A machine deregistered while its agent waits: 401.
	f.mu.Lock()
	f.gone = true
	f.mu.Unlock()
	if code, _, _ := get(t, srv, "m-1.secret", "revision=r1&generation=2&wait=0"); code != http.StatusUnauthorized {
		t.Fatalf("gone machine: %d", code)
	}
}

func TestReportAndBinary(t *testing.T) {
	f := newFake()
	bin := filepath.Join(t.TempDir(), "metal-agent")
	if err := os.WriteFile(bin, []byte("\x7fELF agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{Backend: f, BinaryPath: bin}))
	defer srv.Close()

	big := strings.Repeat("x", roles.MaxOutput) + "TAIL"
	body, _ := json.Marshal(roles.Report{Revision: "r1", Generation: 1, Results: []roles.Result{{Role: "a", Status: "failed", Output: big}}})
	post := func(cred string, b []byte) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+roles.PathReport, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+cred)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("m-1.wrong", body); code != http.StatusUnauthorized {
		t.Fatalf("report with a bad credential: %d", code)
	}
	if code := post("m-1.secret", []byte("{not json")); code != http.StatusBadRequest {
		t.Fatalf("bad report: %d", code)
	}
	if code := post("m-1.secret", body); code != http.StatusNoContent {
		t.Fatalf("report: %d", code)
	}
	if len(f.reports) != 1 {
		t.Fatalf("reports: %d", len(f.reports))
	}
	out := f.reports[0].Results[0].Output
	if len(out) != roles.MaxOutput || !strings.HasSuffix(out, "TAIL") {
		t.Errorf("output kept %d bytes ending %q, want the last %d", len(out), out[len(out)-4:], roles.MaxOutput)
	}

	resp, err := srv.Client().Get(srv.URL + roles.PathBinary)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "\x7fELF agent" {
		t.Fatalf("binary: %s %q", resp.Status, b)
	}
	none := httptest.NewServer(New(Config{Backend: f}))
	defer none.Close()
	resp, err = none.Client().Get(none.URL + roles.PathBinary)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("no binary configured: %s", resp.Status)
	}
}
