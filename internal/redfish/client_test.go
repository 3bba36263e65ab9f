package redfish_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/redfish"
)

const (
	testUser     = "admin"
	testPassword = "password"
)

// startSim runs a TLS simulator for the test and returns a client config
// trusting its CA, with fast polling and retries.
func startSim(t *testing.T, opts bmcsim.Options) (*bmcsim.Simulator, redfish.Config) {
	t.Helper()
	sim := bmcsim.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, ca, err := sim.StartTLS(ctx)
	if err != nil {
		t.Fatalf("starting simulator: %v", err)
	}
	return sim, redfish.Config{
		Endpoint:      url,
		Username:      testUser,
		Password:      testPassword,
		CACertificate: string(ca),
		PollInterval:  10 * time.Millisecond,
		Retry:         redfish.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond},
	}
}

func open(t *testing.T, cfg redfish.Config) *redfish.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, err := redfish.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func onlySystem(t *testing.T, sim *bmcsim.Simulator, c *redfish.Client) (string, bmcsim.SystemState) {
	t.Helper()
	p, err := c.SystemPath()
	if err != nil {
		t.Fatalf("SystemPath: %v", err)
	}
	id := p[strings.LastIndex(p, "/")+1:]
	st, ok := sim.System(id)
	if !ok {
		t.Fatalf("simulator has no system %q", id)
	}
	return id, st
}

func TestSessionOpenAndLogout(t *testing.T) {
	t.Parallel()
	for _, vendor := range bmcsim.Vendors() {
		t.Run(string(vendor), func(t *testing.T) {
			t.Parallel()
			sim, cfg := startSim(t, bmcsim.Options{Vendor: vendor})
			c, err := redfish.Open(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := sim.ActiveSessions(); got != 1 {
				t.Fatalf("active sessions after open = %d, want 1", got)
			}
			if c.UsesBasicAuth() {
				t.Fatal("client fell back to basic auth although the BMC has a SessionService")
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := sim.ActiveSessions(); got != 0 {
				t.Fatalf("active sessions after close = %d, want 0 (session leaked)", got)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

func TestWrongPasswordIsUnauthorized(t *testing.T) {
	t.Parallel()
	for _, noSessions := range []bool{false, true} {
		_, cfg := startSim(t, bmcsim.Options{DisableSessionService: noSessions})
		cfg.Password = "not-the-password"
		_, err := redfish.Open(context.Background(), cfg)
		if !errors.Is(err, redfish.ErrUnauthorized) {
			t.Fatalf("sessions disabled=%v: Open with a wrong password: got %v, want ErrUnauthorized", noSessions, err)
		}
	}
}

func TestBasicAuthFallbackWithoutSessionService(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{DisableSessionService: true})
	c := open(t, cfg)
	if !c.UsesBasicAuth() {
		t.Fatal("expected basic auth on a BMC without SessionService")
	}
	inv, err := c.Inventory()
	if err != nil {
		t.Fatalf("Inventory over basic auth: %v", err)
	}
	if inv.SystemID == "" {
		t.Fatal("inventory has no system id")
	}
	for _, r := range sim.Requests() {
		if r.Auth == "session" {
			t.Fatalf("request %s %s used a session on a BMC without SessionService", r.Method, r.Path)
		}
	}
}

func TestExpiredSessionReLogsInOnce(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{})
	c := open(t, cfg)
	if _, err := c.Inventory(); err != nil {
		t.Fatalf("first Inventory: %v", err)
	}
	before := sim.Count(http.MethodPost, "/redfish/v1/SessionService/Sessions")
	sim.ExpireSessions()
	if _, err := c.Inventory(); err != nil {
		t.Fatalf("Inventory after session expiry: %v", err)
	}
	if got := sim.Count(http.MethodPost, "/redfish/v1/SessionService/Sessions") - before; got != 1 {
		t.Fatalf("re-logins after expiry = %d, want exactly 1", got)
	}
}

func TestTLSVerification(t *testing.T) {
	t.Parallel()
	_, cfg := startSim(t, bmcsim.Options{})

	untrusted := cfg
	untrusted.CACertificate = ""
	if _, err := redfish.Open(context.Background(), untrusted); !errors.Is(err, redfish.ErrTLS) {
		t.Fatalf("self-signed BMC without CA: got %v, want ErrTLS", err)
	}

	badPEM := cfg
	badPEM.CACertificate = "-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n"
	if _, err := redfish.Open(context.Background(), badPEM); !errors.Is(err, redfish.ErrTLS) {
		t.Fatalf("garbage CA PEM: got %v, want ErrTLS", err)
	}

	insecure := untrusted
	insecure.Insecure = true
	c, err := redfish.Open(context.Background(), insecure)
	if err != nil {
		t.Fatalf("insecure opt-in: %v", err)
	}
	_ = c.Close()

	open(t, cfg) // the CA PEM is trusted
}

func TestUnreachableEndpoint(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	_, err = redfish.Open(context.Background(), redfish.Config{
		Endpoint: "https://" + addr, Username: testUser, Password: testPassword,
		Retry: redfish.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
	})
	if !errors.Is(err, redfish.ErrUnreachable) {
		t.Fatalf("closed port: got %v, want ErrUnreachable", err)
	}
}

func TestInventory(t *testing.T) {
	t.Parallel()
	spec := bmcsim.SystemSpec{
		ID: "node-7", UUID: "4c4c4544-0042-3010-8053-b7c04f333231", Manufacturer: "Acme", Model: "R1",
		SerialNumber: "SN123", BIOSVersion: "2.19.1", CPUCount: 2, CPUModel: "Xeon Gold", MemoryGiB: 256,
		NICs: []bmcsim.NIC{
			{ID: "nic-a", MAC: "AA:BB:CC:00:00:01", LinkUp: false},
			{ID: "nic-b", MAC: "AA:BB:CC:00:00:02", LinkUp: true},
		},
		BootMode: "UEFI",
	}
	for _, vendor := range bmcsim.Vendors() {
		t.Run(string(vendor), func(t *testing.T) {
			t.Parallel()
			_, cfg := startSim(t, bmcsim.Options{Vendor: vendor, Systems: []bmcsim.SystemSpec{spec}})
			inv, err := open(t, cfg).Inventory()
			if err != nil {
				t.Fatalf("Inventory: %v", err)
			}
			if inv.SystemID != "node-7" || inv.UUID != spec.UUID || inv.Manufacturer != "Acme" || inv.Model != "R1" ||
				inv.SerialNumber != "SN123" || inv.BIOSVersion != "2.19.1" || inv.CPUCount != 2 ||
				inv.CPUModel != "Xeon Gold" || inv.MemoryGiB != 256 || inv.BootMode != "UEFI" || inv.PowerState != redfish.PowerOff {
				t.Fatalf("inventory mismatch: %+v", inv)
			}
			if len(inv.NICs) != 2 || inv.NICs[0].MAC != "aa:bb:cc:00:00:01" || inv.NICs[1].LinkUp != true || inv.NICs[0].LinkUp {
				t.Fatalf("NICs mismatch: %+v", inv.NICs)
			}
			if got := inv.FirstLinkedMAC(); got != "aa:bb:cc:00:00:02" {
				t.Fatalf("FirstLinkedMAC = %q, want the NIC with link", got)
			}
		})
	}
}

// The refresh budget from the issue: at most 3 requests on a BMC that
// supports $expand (session create, one expanded GET, session delete).
func TestRefreshRequestBudget(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{Vendor: bmcsim.Generic})
	c0 := open(t, cfg)
	id, _ := onlySystem(t, sim, c0)
	_ = c0.Close()

	cfg.SystemID = id // a refresh knows its system id from state
	c := open(t, cfg)
	if _, err := c.Inventory(); err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := c.Requests(); got > 3 {
		t.Fatalf("refresh used %d requests, budget is 3", got)
	}
}

// A power change plus boot override: at most 6 requests.
func TestPowerAndBootRequestBudget(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{Vendor: bmcsim.Generic})
	c0 := open(t, cfg)
	id, _ := onlySystem(t, sim, c0)
	_ = c0.Close()

	cfg.SystemID = id
	c := open(t, cfg)
	if err := c.BootOnceAndRestart(redfish.BootOverride{Target: redfish.BootPxe, Mode: redfish.BootModeUEFI}); err != nil {
		t.Fatalf("BootOnceAndRestart: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := c.Requests(); got > 6 {
		t.Fatalf("power change + boot override used %d requests, budget is 6", got)
	}
	st, _ := sim.System(id)
	if st.PowerState != "On" || st.BootTarget != "Pxe" {
		t.Fatalf("system state after boot+power: %+v", st)
	}
}

func TestMultipleSystemsNeedSystemID(t *testing.T) {
	t.Parallel()
	_, cfg := startSim(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{{ID: "blade-1"}, {ID: "blade-2"}}})
	_, err := open(t, cfg).Inventory()
	var amb *redfish.AmbiguousSystemError
	if !errors.Is(err, redfish.ErrAmbiguousSystem) || !errors.As(err, &amb) {
		t.Fatalf("got %v, want AmbiguousSystemError", err)
	}
	if !slices.Equal(amb.IDs, []string{"blade-1", "blade-2"}) || !strings.Contains(err.Error(), "blade-2") {
		t.Fatalf("error should list the ids found: %v", err)
	}

	cfg.SystemID = "blade-2"
	inv, err := open(t, cfg).Inventory()
	if err != nil || inv.SystemID != "blade-2" {
		t.Fatalf("with system_id: inv=%+v err=%v", inv, err)
	}

	byPath := cfg
	byPath.SystemID = ""
	byPath.Endpoint = cfg.Endpoint + "/redfish/v1/Systems/blade-1"
	inv, err = open(t, byPath).Inventory()
	if err != nil || inv.SystemID != "blade-1" {
		t.Fatalf("system in the endpoint path: inv=%+v err=%v", inv, err)
	}

	systems, err := open(t, cfg).Systems()
	if err != nil || len(systems) != 2 || systems[0].ID != "blade-1" {
		t.Fatalf("Systems: %+v, %v", systems, err)
	}
}

func TestRemovedSystemIsNotFound(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{})
	c := open(t, cfg)
	id, _ := onlySystem(t, sim, c)
	sim.RemoveSystem(id)
	if _, err := c.Inventory(); !errors.Is(err, redfish.ErrNotFound) {
		t.Fatalf("removed system: got %v, want ErrNotFound", err)
	}
}

func TestSetPowerIsIdempotent(t *testing.T) {
	t.Parallel()
	for _, vendor := range bmcsim.Vendors() {
		t.Run(string(vendor), func(t *testing.T) {
			t.Parallel()
			sim, cfg := startSim(t, bmcsim.Options{Vendor: vendor, PowerTransition: 30 * time.Millisecond})
			c := open(t, cfg)
			id, _ := onlySystem(t, sim, c)

			changed, err := c.SetPower(redfish.PowerOn, redfish.PowerOptions{})
			if err != nil || !changed {
				t.Fatalf("power on: changed=%v err=%v", changed, err)
			}
			if st, _ := sim.System(id); st.PowerState != "On" {
				t.Fatalf("SetPower returned before the BMC showed On: %s", st.PowerState)
			}
			changed, err = c.SetPower(redfish.PowerOn, redfish.PowerOptions{})
			if err != nil || changed {
				t.Fatalf("second power on: changed=%v err=%v (want no reset)", changed, err)
			}
			if st, _ := sim.System(id); len(st.Resets) != 1 {
				t.Fatalf("resets after idempotent on = %v, want exactly one", st.Resets)
			}

			if _, err := c.SetPower(redfish.PowerOff, redfish.PowerOptions{}); err != nil {
				t.Fatalf("power off: %v", err)
			}
			st, _ := sim.System(id)
			if st.PowerState != "Off" || st.Resets[len(st.Resets)-1] != "GracefulShutdown" {
				t.Fatalf("power off should shut down gracefully: %+v", st)
			}
			if changed, err := c.SetPower(redfish.PowerOff, redfish.PowerOptions{}); err != nil || changed {
				t.Fatalf("second power off: changed=%v err=%v", changed, err)
			}
		})
	}
}

func TestGracefulShutdownFallsBackToForceOff(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{
		PowerTransition: 2 * time.Second,
		Systems:         []bmcsim.SystemSpec{{ID: "1", PoweredOn: true}},
	})
	c := open(t, cfg)
	if _, err := c.SetPower(redfish.PowerOff, redfish.PowerOptions{GracefulTimeout: 50 * time.Millisecond}); err != nil {
		t.Fatalf("power off: %v", err)
	}
	st, _ := sim.System("1")
	if st.PowerState != "Off" || !slices.Equal(st.Resets, []string{"GracefulShutdown", "ForceOff"}) {
		t.Fatalf("want GracefulShutdown then ForceOff, got %+v", st)
	}
}

func TestPowerWaitHonoursContext(t *testing.T) {
	t.Parallel()
	_, cfg := startSim(t, bmcsim.Options{PowerTransition: time.Hour})
	c := open(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.WithContext(ctx).SetPower(redfish.PowerOn, redfish.PowerOptions{})
	if !errors.Is(err, redfish.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "PoweringOn") {
		t.Fatalf("timeout should say the last state seen: %v", err)
	}
}

func TestBootOverrideAcrossVendors(t *testing.T) {
	t.Parallel()
	for _, vendor := range bmcsim.Vendors() {
		t.Run(string(vendor), func(t *testing.T) {
			t.Parallel()
			sim, cfg := startSim(t, bmcsim.Options{Vendor: vendor})
			c := open(t, cfg)
			id, _ := onlySystem(t, sim, c)
			if err := c.SetBootOnce(redfish.BootOverride{Target: redfish.BootPxe, Mode: redfish.BootModeUEFI}); err != nil {
				t.Fatalf("SetBootOnce: %v", err)
			}
			st, _ := sim.System(id)
			if st.BootTarget != "Pxe" {
				t.Fatalf("boot target = %q, want Pxe (last PATCH %v)", st.BootTarget, st.LastPatch)
			}
			// Whatever the BMC reads back (Supermicro says Continuous), the
			// PATCH we sent asked for Once.
			boot, _ := st.LastPatch["Boot"].(map[string]any)
			if boot["BootSourceOverrideEnabled"] != "Once" {
				t.Fatalf("last PATCH did not ask for a one-time override: %v", st.LastPatch)
			}
		})
	}
}

func TestBootOverrideRejectsUnsupportedTarget(t *testing.T) {
	t.Parallel()
	_, cfg := startSim(t, bmcsim.Options{})
	err := open(t, cfg).SetBootOnce(redfish.BootOverride{Target: "Floppy"})
	if !errors.Is(err, redfish.ErrUnsupported) || !strings.Contains(err.Error(), "Pxe") {
		t.Fatalf("got %v, want ErrUnsupported listing the allowed targets", err)
	}
}

func TestBootOnceAndRestartRebootsARunningMachine(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{{ID: "1", PoweredOn: true}}})
	if err := open(t, cfg).BootOnceAndRestart(redfish.BootOverride{Target: redfish.BootPxe}); err != nil {
		t.Fatal(err)
	}
	st, _ := sim.System("1")
	if !slices.Equal(st.Resets, []string{"ForceRestart"}) {
		t.Fatalf("a running machine should be restarted, resets=%v", st.Resets)
	}
}

func TestRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		sim, cfg := startSim(t, bmcsim.Options{})
		c := open(t, cfg)
		sim.FailNext(2, status)
		if _, err := c.Inventory(); err != nil {
			t.Fatalf("%d twice then success: %v", status, err)
		}

		sim.FailNext(50, status)
		_, err := c.Inventory()
		var se *redfish.StatusError
		if !errors.As(err, &se) || se.Status != status {
			t.Fatalf("persistent %d: got %v", status, err)
		}
		sim.FailNext(0, 0)
	}
}

func TestRetriesDroppedConnections(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{})
	c := open(t, cfg)
	sim.DropNext(2)
	if _, err := c.Inventory(); err != nil {
		t.Fatalf("GET after two dropped connections: %v", err)
	}
}

func TestSlowBMCHitsTheDeadline(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{})
	c := open(t, cfg)
	sim.SetLatency(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.WithContext(ctx).Inventory(); !errors.Is(err, redfish.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	sim.SetLatency(0)

	sim.SetSlowBody(time.Second)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := c.WithContext(ctx2).Inventory(); err == nil {
		t.Fatal("a body stalled past the deadline should fail")
	}
}

// Nothing secret reaches the logs at any level.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sim, cfg := startSim(t, bmcsim.Options{Vendor: bmcsim.Supermicro})
	cfg.Logger = logger
	c := open(t, cfg)
	sim.ExpireSessions()
	sim.FailNext(1, http.StatusServiceUnavailable)
	if _, err := c.SetPower(redfish.PowerOn, redfish.PowerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBootOnce(redfish.BootOverride{Target: redfish.BootPxe, Mode: redfish.BootModeUEFI}); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	if !strings.Contains(logs, "BMC request") {
		t.Fatalf("expected debug request logs, got:\n%s", logs)
	}
	secrets := append([]string{testPassword}, sim.IssuedTokens()...)
	if len(secrets) < 3 {
		t.Fatalf("expected at least two issued session tokens, got %d", len(secrets)-1)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Fatalf("secret %q found in logs", s)
		}
	}
	if strings.Contains(strings.ToLower(logs), "authorization") || strings.Contains(strings.ToLower(logs), "x-auth-token") {
		t.Fatal("auth headers mentioned in logs")
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// What a BMC refused once is not asked again in this process: a Dell-shaped
// BMC rejects $levels=2 and BootSourceOverrideMode; the second session skips both.
func TestLearnedQuirksSaveRequests(t *testing.T) {
	t.Parallel()
	sim, cfg := startSim(t, bmcsim.Options{Vendor: bmcsim.Dell})
	cfg.SystemID = "System.Embedded.1"
	run := func(op func(*redfish.Client) error) int64 {
		c := open(t, cfg)
		if err := op(c); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		return c.Requests()
	}
	refresh := func(c *redfish.Client) error { _, err := c.Inventory(); return err }
	boot := func(c *redfish.Client) error {
		return c.BootOnceAndRestart(redfish.BootOverride{Target: redfish.BootPxe, Mode: redfish.BootModeUEFI})
	}
	first, second := run(refresh), run(refresh)
	if second != first-1 || second > 4 {
		t.Fatalf("refresh requests: first %d, second %d; want the second to skip the refused $levels=2", first, second)
	}
	patches := func() int { return sim.Count(http.MethodPatch, "/redfish/v1/Systems/System.Embedded.1") }
	if n := run(boot); n > 7 || patches() != 2 {
		t.Fatalf("first boot: %d requests, %d PATCHes; want the refused full PATCH then the minimal one", n, patches())
	}
	if n := run(boot); n > 6 || patches() != 3 {
		t.Fatalf("second boot: %d requests, %d PATCHes in all; want one minimal PATCH only", n, patches())
	}
	if got := sim.Count(http.MethodPost, "/redfish/v1/Systems/System.Embedded.1/Actions/ComputerSystem.Reset"); got != 2 {
		t.Fatalf("reset POSTs = %d, want 2 (no 412 retries from a stale ETag)", got)
	}
}
