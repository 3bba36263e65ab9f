package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// fakeEngine answers every method with the configured error, and
// Provision blocks until release is closed.
type fakeEngine struct {
	err       error
	release   chan struct{}
	canceled  atomic.Bool
	provision atomic.Int32
}

func (f *fakeEngine) Systems(context.Context, engine.BMC) ([]engine.SystemSummary, error) {
	return []engine.SystemSummary{{ID: "node-1"}}, f.err
}
func (f *fakeEngine) Machine(_ context.Context, bmc engine.BMC) (*engine.Inventory, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &engine.Inventory{SystemID: "node-1", PowerState: engine.PowerOn, NICs: []engine.NIC{{MAC: "52:54:00:00:00:01"}}}, nil
}
func (f *fakeEngine) SetPower(_ context.Context, _ engine.BMC, want engine.PowerState, _ engine.PowerOptions) (*engine.Inventory, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &engine.Inventory{SystemID: "node-1", PowerState: want}, nil
}
func (f *fakeEngine) BootOnce(context.Context, engine.BMC, engine.BootOverride) error { return f.err }
func (f *fakeEngine) EnsureImage(_ context.Context, s engine.ImageSpec) (*engine.ImageInfo, error) {
	return &engine.ImageInfo{Name: s.Name, Kind: s.Kind}, f.err
}
func (f *fakeEngine) Image(_ context.Context, n string) (*engine.ImageInfo, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &engine.ImageInfo{Name: n}, nil
}
func (f *fakeEngine) DeleteImage(context.Context, string) error { return f.err }
func (f *fakeEngine) Render(context.Context, engine.BMC, []string, engine.ProvisionSpec) (*engine.Rendered, error) {
	return &engine.Rendered{IPXE: "#!ipxe"}, f.err
}
func (f *fakeEngine) Provision(ctx context.Context, _ engine.BMC, spec engine.ProvisionSpec) (*engine.ProvisionResult, error) {
	f.provision.Add(1)
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			f.canceled.Store(true)
			return nil, ctx.Err()
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	return &engine.ProvisionResult{MachineID: "m-1", IPAddress: "192.0.2.10", Timeline: []engine.TimelineEvent{{Source: "http", Stage: "provisioned"}}}, nil
}
func (f *fakeEngine) Deprovision(context.Context, engine.BMC, string, bool) error { return f.err }
func (f *fakeEngine) Timeline(context.Context, engine.BMC) ([]engine.TimelineEvent, error) {
	return nil, f.err
}
func (f *fakeEngine) Discovered(context.Context) ([]engine.DiscoveredMachine, error) {
	return nil, f.err
}
func (f *fakeEngine) BIOS(context.Context, engine.BMC) (*engine.BIOS, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &engine.BIOS{Attributes: map[string]string{"LogicalProc": "Enabled"}, Pending: map[string]string{"LogicalProc": "Disabled"},
		Registry: map[string]engine.BIOSAttribute{"LogicalProc": {Name: "LogicalProc", Type: "Enumeration", Values: []string{"Enabled", "Disabled"}}}}, nil
}
func (f *fakeEngine) ApplyBIOS(_ context.Context, _ engine.BMC, p engine.BIOSProfile) (*engine.BIOSResult, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &engine.BIOSResult{Changed: sortedNames(p.Attributes), Rebooted: p.ApplyTime != engine.ApplyAtMaintenanceWindowStart,
		Pending: p.ApplyTime == engine.ApplyAtMaintenanceWindowStart}, nil
}
func (f *fakeEngine) Storage(context.Context, engine.BMC) ([]engine.StorageController, error) {
	if f.err != nil {
		return nil, f.err
	}
	return []engine.StorageController{{ID: "RAID.Integrated.1-1", SupportedRAIDTypes: []string{"RAID1"},
		Drives: []engine.Drive{{ID: "d0", MediaType: "SSD", CapacityBytes: 1 << 40, VolumeIDs: []string{"v0"}}}}}, nil
}
func (f *fakeEngine) CreateVolume(_ context.Context, _ engine.BMC, spec engine.VolumeSpec) (*engine.Volume, error) {
	if f.err != nil {
		return nil, f.err
	}
	ids := spec.DriveIDs
	if spec.Selector != nil {
		ids = []string{spec.Selector.MediaType}
	}
	return &engine.Volume{ID: "v1", Name: spec.Name, RAIDType: spec.RAIDType, DriveIDs: ids, DeviceHint: "/dev/disk/by-id/wwn-0x6abc"}, nil
}
func (f *fakeEngine) DeleteVolume(_ context.Context, _ engine.BMC, storageID, volumeID string) error {
	if f.err == nil && (storageID == "" || volumeID == "") {
		return errors.New("ids lost on the wire")
	}
	return f.err
}
func (f *fakeEngine) PutRole(_ context.Context, r engine.Role) (*engine.RoleInfo, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &engine.RoleInfo{Role: r, Ref: engine.RoleRef(r)}, nil
}
func (f *fakeEngine) CheckRole(context.Context, engine.Role) error { return f.err }
func (f *fakeEngine) CheckRoles(context.Context, engine.RoleSelection, engine.RoleFacts) error {
	return f.err
}
func (f *fakeEngine) Role(_ context.Context, name string) (*engine.RoleInfo, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &engine.RoleInfo{Role: engine.Role{Name: name}}, nil
}
func (f *fakeEngine) DeleteRole(context.Context, string) error { return f.err }
func (f *fakeEngine) ApplyRoles(_ context.Context, _ engine.BMC, sel engine.RoleSelection) (*engine.RoleStatus, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &engine.RoleStatus{Roles: sel.Roles, Generation: 2}, nil
}
func (f *fakeEngine) RoleStatus(context.Context, engine.BMC) (*engine.RoleStatus, error) {
	return &engine.RoleStatus{}, f.err
}
func (f *fakeEngine) Close() error { return nil }

func sortedNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

type fixture struct {
	eng    *fakeEngine
	srv    *Server
	ts     *httptest.Server
	tokens *FileTokens
	token  string
	pin    string
}

func newFixture(t *testing.T, eng *fakeEngine) *fixture {
	t.Helper()
	tokens := OpenTokens(filepath.Join(t.TempDir(), TokensFile))
	tok, err := tokens.Create("ci")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(eng, Config{Tokens: tokens, ServerVersion: "v9.9.9-test"})
	ts := httptest.NewTLSServer(srv)
	t.Cleanup(func() { ts.Close(); srv.Close() })
	return &fixture{eng: eng, srv: srv, ts: ts, tokens: tokens, token: tok, pin: Fingerprint(ts.Certificate().Raw)}
}

func (fx *fixture) client(t *testing.T, token string) *Client {
	t.Helper()
	c, err := NewClient(Config{Endpoint: fx.ts.URL, Token: token, TLSFingerprint: fx.pin})
	if err != nil {
		t.Fatal(err)
	}
	c.pollWait = 200 * time.Millisecond
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var bmc = engine.BMC{Endpoint: "https://bmc.example:443", Username: "root", Password: "secret", SystemID: "node-1"}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, &fakeEngine{})
	ctx := context.Background()
	hc := fx.ts.Client()

	// No token, and a bearer that is not a token: a 401 that reveals nothing.
	for _, hdr := range []string{"", "Bearer ", "Bearer metal_wrong", "Basic Zm9vOmJhcg=="} {
		req, _ := http.NewRequest(http.MethodGet, fx.ts.URL+"/v1/discovered", nil)
		if hdr != "" {
			req.Header.Set("Authorization", hdr)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%q: status %d", hdr, resp.StatusCode)
		}
		if got := strings.TrimSpace(string(body)); got != `{"error":{"code":"invalid_token","message":"authentication required"}}` {
			t.Fatalf("%q: 401 body %s says more than it should", hdr, got)
		}
	}
	// The version is public.
	resp, err := hc.Get(fx.ts.URL + "/v1/version")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if v["api_version"] != float64(1) || v["server"] != "v9.9.9-test" {
		t.Fatalf("/v1/version = %v", v)
	}

	if _, err := fx.client(t, fx.token).Discovered(ctx); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	_, err = fx.client(t, "metal_wrong").Discovered(ctx)
	if !errors.Is(err, ErrInvalidToken) || errors.Is(err, engine.ErrUnauthorized) || !strings.Contains(err.Error(), "token create") {
		t.Fatalf("wrong token: %v", err)
	}
	// Revoked: refused at once, without a restart.
	if err := fx.tokens.Revoke("ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.client(t, fx.token).Discovered(ctx); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("revoked token: %v", err)
	}
	// The file holds hashes only.
	infos, _ := fx.tokens.List()
	if len(infos) != 0 {
		t.Fatalf("revoked token still listed: %+v", infos)
	}
}

func TestTokenRotation(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, &fakeEngine{})
	ctx := context.Background()
	old := fx.client(t, fx.token)
	if _, err := old.Discovered(ctx); err != nil {
		t.Fatal(err)
	}
	fresh, err := fx.tokens.Rotate("ci")
	if err != nil || fresh == fx.token {
		t.Fatalf("rotate: %q %v", fresh, err)
	}
	if _, err := old.Discovered(ctx); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("the rotated-out token still works: %v", err)
	}
	if _, err := fx.client(t, fresh).Discovered(ctx); err != nil {
		t.Fatalf("the new token: %v", err)
	}
	infos, _ := fx.tokens.List()
	b, _ := json.Marshal(infos)
	if strings.Contains(string(b), fresh) || strings.Contains(string(b), fx.token) || len(infos) != 1 {
		t.Fatalf("token file: %s", b)
	}
	if _, err := fx.tokens.Create("ci"); err == nil {
		t.Fatal("a second token of the same name was created")
	}
}

func TestErrorsRoundTrip(t *testing.T) {
	t.Parallel()
	timeline := []engine.TimelineEvent{{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Source: "dhcp", Stage: "offer", Message: "192.0.2.9"}}
	cases := []struct {
		name  string
		err   error
		check func(t *testing.T, got error)
	}{
		{"not_found", fmt.Errorf("system gone: %w", engine.ErrNotFound), is(engine.ErrNotFound)},
		{"unauthorized", engine.ErrUnauthorized, is(engine.ErrUnauthorized)},
		{"unreachable", engine.ErrUnreachable, is(engine.ErrUnreachable)},
		{"tls", engine.ErrTLS, is(engine.ErrTLS)},
		{"invalid_endpoint", engine.ErrInvalidEndpoint, is(engine.ErrInvalidEndpoint)},
		{"image_not_found", fmt.Errorf("%w: debian", engine.ErrImageNotFound), is(engine.ErrImageNotFound)},
		{"not_configured", engine.ErrBootServiceNotConfigured, is(engine.ErrBootServiceNotConfigured)},
		{"bind", engine.ErrBind, is(engine.ErrBind)},
		{"ambiguous", &engine.AmbiguousSystemError{IDs: []string{"a", "b"}}, func(t *testing.T, got error) {
			var a *engine.AmbiguousSystemError
			if !errors.As(got, &a) || !errors.Is(got, engine.ErrAmbiguousSystem) || strings.Join(a.IDs, ",") != "a,b" {
				t.Fatalf("got %#v", got)
			}
		}},
		{"provision_timeout", &engine.ProvisionError{MachineID: "m-1", Want: "provisioned", Timeline: timeline, Err: fmt.Errorf("%w: %w", engine.ErrProvisionTimeout, context.DeadlineExceeded)}, func(t *testing.T, got error) {
			var p *engine.ProvisionError
			if !errors.As(got, &p) || !errors.Is(got, engine.ErrProvisionTimeout) || p.MachineID != "m-1" || p.Want != "provisioned" ||
				len(p.Timeline) != 1 || !p.Timeline[0].Time.Equal(timeline[0].Time) || p.Timeline[0].Message != "192.0.2.9" {
				t.Fatalf("got %#v", got)
			}
			if !strings.Contains(got.Error(), "dhcp/offer") {
				t.Fatalf("message lost the last step: %v", got)
			}
		}},
		{"image_file_checksum", &engine.ImageFileError{Role: "kernel", Err: &engine.ChecksumMismatchError{URL: "https://x/vmlinuz", Want: "aa", Got: "bb"}}, func(t *testing.T, got error) {
			var f *engine.ImageFileError
			var c *engine.ChecksumMismatchError
			if !errors.As(got, &f) || f.Role != "kernel" || !errors.As(got, &c) || c.Want != "aa" || c.Got != "bb" || c.URL != "https://x/vmlinuz" {
				t.Fatalf("got %#v", got)
			}
		}},
		{"bios_not_applied", &engine.BIOSMismatchError{Mismatches: []engine.BIOSMismatch{{Attribute: "ProcCStates", Wanted: "Disabled", Actual: "Enabled"}}, Detail: "job said no"}, func(t *testing.T, got error) {
			var m *engine.BIOSMismatchError
			if !errors.As(got, &m) || !errors.Is(got, engine.ErrBIOSNotApplied) || len(m.Mismatches) != 1 ||
				m.Mismatches[0] != (engine.BIOSMismatch{Attribute: "ProcCStates", Wanted: "Disabled", Actual: "Enabled"}) || m.Detail != "job said no" {
				t.Fatalf("got %#v", got)
			}
		}},
		{"task_failed", &engine.TaskError{What: "creating volume", State: "Exception", Messages: []engine.TaskMessage{{MessageID: "Base.1.TaskFailed", Message: "disk 2 failed", Severity: "Critical"}}}, func(t *testing.T, got error) {
			var te *engine.TaskError
			if !errors.As(got, &te) || !errors.Is(got, engine.ErrTaskFailed) || te.State != "Exception" || len(te.Messages) != 1 || te.Messages[0].Message != "disk 2 failed" {
				t.Fatalf("got %#v", got)
			}
		}},
		{"invalid_spec", fmt.Errorf("volume: %w", engine.ErrInvalidSpec), is(engine.ErrInvalidSpec)},
		{"internal", errors.New("disk on fire"), func(t *testing.T, got error) {
			var r *RemoteError
			if !errors.As(got, &r) || r.Code != "internal" || got.Error() != "disk on fire" {
				t.Fatalf("got %#v", got)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t, &fakeEngine{err: tc.err})
			c := fx.client(t, fx.token)
			ctx := context.Background()
			// A synchronous call and a long-running operation.
			_, err := c.Machine(ctx, bmc)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tc.err.Error() {
				t.Fatalf("message changed crossing the wire: %q -> %q", tc.err, err)
			}
			tc.check(t, err)
			_, err = c.Provision(ctx, bmc, engine.ProvisionSpec{Image: "debian"})
			tc.check(t, err)
		})
	}
}

func is(want error) func(*testing.T, error) {
	return func(t *testing.T, got error) {
		t.Helper()
		if !errors.Is(got, want) {
			t.Fatalf("got %v (%T), want errors.Is %v", got, got, want)
		}
	}
}

func TestVersionSkew(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, &fakeEngine{})
	c := fx.client(t, fx.token)
	c.cfg.apiVersion = 2
	_, err := c.Discovered(context.Background())
	var v *VersionError
	if !errors.As(err, &v) || !strings.Contains(err.Error(), "v9.9.9-test") || !strings.Contains(err.Error(), "API v1") ||
		!strings.Contains(err.Error(), "API v2") || !strings.Contains(err.Error(), "upgrade the daemon") {
		t.Fatalf("older daemon: %v", err)
	}
	c.cfg.apiVersion = 0
	if _, err := c.Discovered(context.Background()); err != nil {
		t.Fatalf("a failed negotiation must not stick: %v", err)
	}

	// A newer daemon.
	newer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, versionInfo{APIVersion: 2, Server: "v3.0.0"})
	}))
	defer newer.Close()
	c2, _ := NewClient(Config{Endpoint: newer.URL, Token: "x", TLSFingerprint: Fingerprint(newer.Certificate().Raw)})
	_, err = c2.Discovered(context.Background())
	if !errors.Is(err, ErrVersionSkew) || !strings.Contains(err.Error(), "v3.0.0") || !strings.Contains(err.Error(), "upgrade the provider") {
		t.Fatalf("newer daemon: %v", err)
	}
}

func TestFingerprintPinning(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, &fakeEngine{})
	ctx := context.Background()
	upper := strings.ToUpper(fx.pin[:2]) + ":" + fx.pin[2:]
	c, err := NewClient(Config{Endpoint: fx.ts.URL, Token: fx.token, TLSFingerprint: upper})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Discovered(ctx); err != nil {
		t.Fatalf("pinned: %v", err)
	}
	wrong := strings.Repeat("ab", 32)
	c, _ = NewClient(Config{Endpoint: fx.ts.URL, Token: fx.token, TLSFingerprint: wrong})
	_, err = c.Discovered(ctx)
	var ferr *FingerprintError
	if !errors.As(err, &ferr) || !errors.Is(err, ErrFingerprintMismatch) || ferr.Expected != wrong || ferr.Got != fx.pin ||
		!strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), fx.pin) {
		t.Fatalf("mismatch: %v", err)
	}
	// Neither pin nor CA: the self-signed certificate is not trusted.
	c, _ = NewClient(Config{Endpoint: fx.ts.URL, Token: fx.token})
	if _, err := c.Discovered(ctx); !errors.Is(err, ErrDaemonTLS) {
		t.Fatalf("untrusted: %v", err)
	}
	if _, err := NewClient(Config{Endpoint: fx.ts.URL, Token: "x", TLSFingerprint: "abc"}); err == nil {
		t.Fatal("a malformed fingerprint was accepted")
	}
	// Unreachable.
	c, _ = NewClient(Config{Endpoint: "https://127.0.0.1:1", Token: "x", TLSFingerprint: wrong})
	if _, err := c.Discovered(ctx); !errors.Is(err, ErrDaemonUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("unreachable: %v", err)
	}
}

// A client that goes away mid-provision does not cancel the operation;
// a client that reconnects (or one whose connection drops while polling)
// gets the result.
func TestDisconnectMidProvision(t *testing.T) {
	t.Parallel()
	eng := &fakeEngine{release: make(chan struct{})}
	fx := newFixture(t, eng)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := fx.client(t, fx.token).Provision(ctx, bmc, engine.ProvisionSpec{Image: "debian"})
		errc <- err
	}()
	opID := waitOperation(t, fx.srv)
	cancel() // the first client goes away
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled client: %v", err)
	}
	fx.ts.CloseClientConnections()

	// A second client reconnects and waits for the same operation; its
	// connection is dropped while it polls, and it carries on.
	c := fx.client(t, fx.token)
	done := make(chan error, 1)
	var res engine.ProvisionResult
	go func() { done <- c.Wait(context.Background(), opID, &res) }()
	time.Sleep(300 * time.Millisecond)
	fx.ts.CloseClientConnections()
	close(eng.release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the reconnected client never got the result")
	}
	if res.MachineID != "m-1" || res.IPAddress != "192.0.2.10" || eng.canceled.Load() || eng.provision.Load() != 1 {
		t.Fatalf("result %+v, canceled %v, provisions %d", res, eng.canceled.Load(), eng.provision.Load())
	}
}

func waitOperation(t *testing.T, s *Server) string {
	t.Helper()
	for range 200 {
		ops, _ := s.ops.ListOperations("")
		if len(ops) == 1 {
			return ops[0].ID
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no operation started")
	return ""
}

func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, &fakeEngine{})
	if _, err := fx.client(t, fx.token).Provision(context.Background(), bmc, engine.ProvisionSpec{Image: "x"}); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for path, want := range map[string]string{
		"/healthz": `"ok"`, "/readyz": `"ready"`,
		"/metrics": `metal_operation_duration_seconds_count{kind="provision",state="succeeded"} 1`,
	} {
		resp, err := hc.Get(fx.ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
}

// TestBIOSAndStorageRoundTrip checks every BIOS and storage method carries
// its arguments and results across the wire.
func TestBIOSAndStorageRoundTrip(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, &fakeEngine{})
	c := fx.client(t, fx.token)
	ctx := context.Background()
	b, err := c.BIOS(ctx, bmc)
	if err != nil || b.Attributes["LogicalProc"] != "Enabled" || b.Pending["LogicalProc"] != "Disabled" || len(b.Registry["LogicalProc"].Values) != 2 {
		t.Fatalf("BIOS: %+v %v", b, err)
	}
	res, err := c.ApplyBIOS(ctx, bmc, engine.BIOSProfile{Attributes: map[string]string{"B": "1", "A": "2"}, ApplyTime: engine.ApplyAtMaintenanceWindowStart,
		MaintenanceWindowStart: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), MaintenanceWindowDuration: time.Hour})
	if err != nil || !res.Pending || res.Rebooted || strings.Join(res.Changed, ",") != "A,B" {
		t.Fatalf("ApplyBIOS: %+v %v", res, err)
	}
	sc, err := c.Storage(ctx, bmc)
	if err != nil || len(sc) != 1 || sc[0].Drives[0].VolumeIDs[0] != "v0" || sc[0].SupportedRAIDTypes[0] != "RAID1" {
		t.Fatalf("Storage: %+v %v", sc, err)
	}
	v, err := c.CreateVolume(ctx, bmc, engine.VolumeSpec{RAIDType: "RAID1", Name: "os", Selector: &engine.DriveSelector{MediaType: "SSD", Count: 2}})
	if err != nil || v.ID != "v1" || v.Name != "os" || v.DriveIDs[0] != "SSD" || v.DeviceHint == "" {
		t.Fatalf("CreateVolume: %+v %v", v, err)
	}
	if err := c.DeleteVolume(ctx, bmc, "RAID.Integrated.1-1", "v1"); err != nil {
		t.Fatal(err)
	}
	// Errors come back typed from the long-running operations too.
	fx2 := newFixture(t, &fakeEngine{err: &engine.TaskError{What: "creating volume", State: "Exception", Messages: []engine.TaskMessage{{Message: "boom"}}}})
	c2 := fx2.client(t, fx2.token)
	var te *engine.TaskError
	if _, err := c2.CreateVolume(ctx, bmc, engine.VolumeSpec{}); !errors.As(err, &te) || te.Messages[0].Message != "boom" {
		t.Fatalf("CreateVolume error: %v", err)
	}
	fx3 := newFixture(t, &fakeEngine{err: &engine.BIOSMismatchError{Mismatches: []engine.BIOSMismatch{{Attribute: "X", Wanted: "1", Actual: "0"}}}})
	var me *engine.BIOSMismatchError
	if _, err := fx3.client(t, fx3.token).ApplyBIOS(ctx, bmc, engine.BIOSProfile{}); !errors.As(err, &me) || me.Mismatches[0].Attribute != "X" {
		t.Fatalf("ApplyBIOS error: %v", err)
	}
}

// Every typed role error crosses the wire as itself.
func TestRoleErrorsRoundTrip(t *testing.T) {
	for _, err := range []error{
		&engine.RoleFailedError{MachineID: "m-1", Failed: []engine.RoleResult{{Role: "worker", Action: "applied", Status: "failed", Output: "exit 3"}}},
		&engine.CycleError{Path: []string{"a", "b", "a"}},
		&engine.MissingRoleError{Role: "base", RequiredBy: "app"},
		&engine.TemplateError{Role: "r", Field: "scripts[0]", Expr: ".params.x", Key: "x", Err: errors.New("map has no entry")},
		&engine.ConflictError{Path: "/etc/x", Roles: [2]string{"a", "b"}},
		&engine.ParameterError{Role: "r", Parameter: "p", Reason: "not a number"},
		&engine.RoleFieldError{Role: "r", Field: "files[0].mode", Reason: "bad"},
	} {
		w, status := encodeError(err)
		if status < 400 {
			t.Errorf("%T: status %d", err, status)
		}
		b, _ := json.Marshal(w)
		var back wireError
		if jerr := json.Unmarshal(b, &back); jerr != nil {
			t.Fatal(jerr)
		}
		got := decodeError(&back)
		if reflect.TypeOf(got) != reflect.TypeOf(err) || got.Error() != err.Error() {
			t.Errorf("%T: decoded %T %q, want %q", err, got, got, err)
		}
	}
	for _, sentinel := range []error{engine.ErrRoleNotFound, engine.ErrRoleInUse, engine.ErrNoAgent, engine.ErrAgentTimeout, engine.ErrRolesPending} {
		w, _ := encodeError(fmt.Errorf("context: %w", sentinel))
		if got := decodeError(w); !errors.Is(got, sentinel) {
			t.Errorf("%v did not survive the wire: %v", sentinel, got)
		}
	}
}
