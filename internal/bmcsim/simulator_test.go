package bmcsim

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestServiceRootIsPublic(t *testing.T) {
	t.Parallel()
	for _, v := range Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, Options{Vendor: v})
			e.auth = "none"
			for _, p := range []string{"/redfish/v1", "/redfish/v1/"} {
				r := e.get(p).mustStatus(t, http.StatusOK)
				for _, k := range []string{"RedfishVersion", "UUID", "Systems", "Managers", "Chassis", "SessionService"} {
					if r.body[k] == nil {
						t.Fatalf("%s: service root lacks %s: %s", p, k, r.raw)
					}
				}
				if str(r.body, "Links", "Sessions", "@odata.id") == "" {
					t.Fatalf("service root lacks Links.Sessions: %s", r.raw)
				}
				if r.header.Get("OData-Version") != "4.0" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
					t.Fatalf("headers: %v", r.header)
				}
			}
			if r := e.get("/redfish").mustStatus(t, http.StatusOK); r.body["v1"] != "/redfish/v1/" {
				t.Fatalf("version document: %s", r.raw)
			}
			e.get("/redfish/v1/odata").mustStatus(t, http.StatusOK)
		})
	}
}

func TestAuthenticationRequired(t *testing.T) {
	t.Parallel()
	for _, v := range Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, Options{Vendor: v, Username: "root", Password: "calvin"})
			sys := e.systemPath()
			e.auth = "none"
			for _, p := range []string{"/redfish/v1/Systems", sys, "/redfish/v1/SessionService", "/redfish/v1/Nope"} {
				r := e.get(p)
				r.mustError(t, http.StatusUnauthorized, "")
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic realm=") {
					t.Fatalf("401 without a Basic challenge: %v", r.header)
				}
			}
			e.get(sys).mustError(t, http.StatusUnauthorized, "AccessDenied")
			// Default credentials do not work when others are configured.
			e.auth = "basic"
			e.get(sys).mustStatus(t, http.StatusUnauthorized)
			e.auth = "none"
			r := e.do(http.MethodGet, sys, nil, map[string]string{"Authorization": "Basic cm9vdDpjYWx2aW4="}) // root:calvin
			r.mustStatus(t, http.StatusOK)
			reqs := e.sim.Requests()
			if last := reqs[len(reqs)-1]; last.Auth != "basic" || last.Status != http.StatusOK {
				t.Fatalf("last request recorded as %+v", last)
			}
			// An unknown token is a 401 NoValidSession.
			e.auth = "0123456789abcdef"
			e.get(sys).mustError(t, http.StatusUnauthorized, "NoValidSession")
		})
	}
}

func createSession(t *testing.T, e *env, user, pass string) reply {
	t.Helper()
	return e.doAs("none", http.MethodPost, "/redfish/v1/SessionService/Sessions", map[string]any{"UserName": user, "Password": pass}, nil)
}

func TestSessionLifecycle(t *testing.T) {
	t.Parallel()
	for _, v := range Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, Options{Vendor: v})
			r := createSession(t, e, "admin", "password").mustStatus(t, http.StatusCreated)
			tok, loc := r.header.Get("X-Auth-Token"), r.header.Get("Location")
			if tok == "" || !strings.HasPrefix(loc, "/redfish/v1/SessionService/Sessions/") {
				t.Fatalf("session headers: token=%q location=%q", tok, loc)
			}
			if r.body["UserName"] != "admin" || r.body["Password"] != nil || strings.Contains(string(r.raw), "password") {
				t.Fatalf("session body: %s", r.raw)
			}
			if e.sim.ActiveSessions() != 1 || !slices.Contains(e.sim.IssuedTokens(), tok) {
				t.Fatal("session not registered")
			}
			e.auth = tok
			coll := e.get("/redfish/v1/SessionService/Sessions").mustStatus(t, http.StatusOK)
			if n, _ := coll.body["Members@odata.count"].(float64); n != 1 {
				t.Fatalf("sessions collection: %s", coll.raw)
			}
			e.get(loc).mustStatus(t, http.StatusOK)
			if reqs := e.sim.Requests(); reqs[len(reqs)-1].Auth != "session" {
				t.Fatalf("token request recorded as %+v", reqs[len(reqs)-1])
			}
			okWrite(t, e.do(http.MethodDelete, loc, nil, nil))
			e.get(e.systemPath()).mustError(t, http.StatusUnauthorized, "NoValidSession")
			if n := e.sim.ActiveSessions(); n != 0 {
				t.Fatalf("active sessions after logout = %d", n)
			}
		})
	}
}

func TestSessionGenericDeleteIs204(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	r := createSession(t, e, "admin", "password").mustStatus(t, http.StatusCreated)
	e.auth = r.header.Get("X-Auth-Token")
	e.do(http.MethodDelete, r.header.Get("Location"), nil, nil).mustStatus(t, http.StatusNoContent)
}

func TestSessionCreateFailures(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	createSession(t, e, "admin", "wrong").mustError(t, http.StatusUnauthorized, "AccessDenied")
	createSession(t, e, "someone", "password").mustStatus(t, http.StatusUnauthorized)
	e.auth = "none"
	e.do(http.MethodPost, "/redfish/v1/SessionService/Sessions", map[string]any{"UserName": "admin"}, nil).
		mustError(t, http.StatusBadRequest, "CreateFailedMissingReqProperties")
	e.do(http.MethodPost, "/redfish/v1/SessionService/Sessions", "{not json", nil).mustError(t, http.StatusBadRequest, "MalformedJSON")
	if e.sim.ActiveSessions() != 0 {
		t.Fatal("a failed login created a session")
	}
}

func TestSessionIdleTimeout(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	e := startEnvClock(t, Options{SessionTimeout: 10 * time.Minute}, clk)
	tok := createSession(t, e, "admin", "password").mustStatus(t, http.StatusCreated).header.Get("X-Auth-Token")
	if got, _ := e.get("/redfish/v1/SessionService").body["SessionTimeout"].(float64); got != 600 {
		t.Fatalf("SessionService.SessionTimeout = %v, want 600 seconds", got)
	}
	// Use keeps a session alive; idleness expires it.
	for range 3 {
		clk.Advance(9 * time.Minute)
		e.doAs(tok, http.MethodGet, e.systemPath(), nil, nil).mustStatus(t, http.StatusOK)
	}
	clk.Advance(10*time.Minute + time.Second)
	if n := e.sim.ActiveSessions(); n != 0 {
		t.Fatalf("idle session still active (%d)", n)
	}
	e.doAs(tok, http.MethodGet, e.systemPath(), nil, nil).mustError(t, http.StatusUnauthorized, "NoValidSession")
}

func TestExpireSessions(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	var toks []string
	for range 2 {
		toks = append(toks, createSession(t, e, "admin", "password").mustStatus(t, http.StatusCreated).header.Get("X-Auth-Token"))
	}
	e.sim.ExpireSessions()
	for _, tok := range toks {
		e.auth = tok
		e.get("/redfish/v1/Systems").mustStatus(t, http.StatusUnauthorized)
	}
	e.auth = "basic"
	e.get("/redfish/v1/Systems").mustStatus(t, http.StatusOK)
	if got := e.sim.IssuedTokens(); len(got) != 2 {
		t.Fatalf("IssuedTokens = %d, want 2", len(got))
	}
}

func TestWithoutSessionService(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{DisableSessionService: true})
	e.auth = "none"
	r := e.get("/redfish/v1/").mustStatus(t, http.StatusOK)
	if r.body["SessionService"] != nil || path(r.body, "Links", "Sessions") != nil {
		t.Fatalf("root still advertises sessions: %s", r.raw)
	}
	createSession(t, e, "admin", "password").mustError(t, http.StatusNotFound, "ResourceMissingAtURI")
	e.auth = "basic"
	e.get("/redfish/v1/SessionService").mustStatus(t, http.StatusNotFound)
	e.get(e.systemPath()).mustStatus(t, http.StatusOK)
	e.auth = "deadbeef"
	e.get(e.systemPath()).mustStatus(t, http.StatusUnauthorized)
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	r := e.do(http.MethodDelete, e.systemPath(), nil, nil)
	r.mustError(t, http.StatusMethodNotAllowed, "OperationNotAllowed")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "PATCH") {
		t.Fatalf("Allow = %q", allow)
	}
	e.get(e.systemPath()+"/Actions/ComputerSystem.Reset").mustStatus(t, http.StatusMethodNotAllowed)
	e.do(http.MethodPatch, "/redfish/v1/Managers/BMC", map[string]any{}, nil).mustStatus(t, http.StatusMethodNotAllowed)
	e.do(http.MethodPost, "/redfish/v1/", map[string]any{}, nil).mustStatus(t, http.StatusMethodNotAllowed)
}

func TestRemovedSystemIs404(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Systems: []SystemSpec{{ID: "a"}, {ID: "b"}}})
	e.sim.RemoveSystem("a")
	for _, p := range []string{"/redfish/v1/Systems/a", "/redfish/v1/Systems/a/EthernetInterfaces"} {
		e.get(p).mustError(t, http.StatusNotFound, "ResourceMissingAtURI")
	}
	e.reset("/redfish/v1/Systems/a", "On").mustError(t, http.StatusNotFound, "ResourceMissingAtURI")
	e.do(http.MethodPatch, "/redfish/v1/Systems/a", map[string]any{"AssetTag": "x"}, nil).mustStatus(t, http.StatusNotFound)
	coll := e.get("/redfish/v1/Systems").mustStatus(t, http.StatusOK)
	if n, _ := coll.body["Members@odata.count"].(float64); n != 1 {
		t.Fatalf("collection after removal: %s", coll.raw)
	}
	if _, ok := e.sim.System("a"); ok {
		t.Fatal("System() still knows the removed system")
	}
	e.sim.AddSystem(SystemSpec{ID: "a"})
	e.get("/redfish/v1/Systems/a").mustStatus(t, http.StatusOK)
	e.get("/redfish/v1/Nothing/Here").mustError(t, http.StatusNotFound, "ResourceMissingAtURI")
}

func TestSystemDefaults(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Systems: []SystemSpec{{}, {}}})
	ids := e.sim.SystemIDs()
	if !slices.Equal(ids, []string{"437XR1138R2", "437XR1138R3"}) {
		t.Fatalf("default ids %v", ids)
	}
	for _, id := range ids {
		r := e.get("/redfish/v1/Systems/"+id+"/EthernetInterfaces?$expand=.").mustStatus(t, http.StatusOK)
		members, _ := r.body["Members"].([]any)
		if len(members) != 2 || str(members[0], "LinkStatus") != "LinkUp" || str(members[1], "LinkStatus") != "LinkDown" {
			t.Fatalf("default NICs: %s", r.raw)
		}
		if mac := str(members[0], "MACAddress"); mac != derivedMAC(id, 0) || mac == str(members[1], "MACAddress") {
			t.Fatalf("MACs not derived from the id: %s", r.raw)
		}
	}
	a, b := e.get("/redfish/v1/Systems/"+ids[0]).body, e.get("/redfish/v1/Systems/"+ids[1]).body
	if a["UUID"] == b["UUID"] || str(a, "Boot", "BootSourceOverrideMode") != "UEFI" || a["PowerState"] != "Off" {
		t.Fatalf("defaults: %v / %v", a, b)
	}
	// Deterministic across simulators.
	if New(Options{}).findLocked("437XR1138R2").spec.UUID != str(a, "UUID") {
		t.Fatal("UUIDs are not deterministic")
	}
}

func TestInventoryResources(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Systems: []SystemSpec{{ID: "n1", CPUCount: 2, CPUModel: "Xeon", MemoryGiB: 128.5, BIOSVersion: "9.9"}}})
	sys := e.get("/redfish/v1/Systems/n1").mustStatus(t, http.StatusOK)
	if path(sys.body, "ProcessorSummary", "Count") != 2.0 || str(sys.body, "ProcessorSummary", "Model") != "Xeon" ||
		path(sys.body, "MemorySummary", "TotalSystemMemoryGiB") != 128.5 || sys.body["BiosVersion"] != "9.9" {
		t.Fatalf("summaries: %s", sys.raw)
	}
	for _, c := range []string{"Processors", "Memory", "EthernetInterfaces"} {
		coll := e.get(str(sys.body, c, "@odata.id")).mustStatus(t, http.StatusOK)
		members, _ := coll.body["Members"].([]any)
		if len(members) == 0 {
			t.Fatalf("%s is empty", c)
		}
		for _, m := range members {
			e.get(str(m, "@odata.id")).mustStatus(t, http.StatusOK)
		}
	}
	for _, l := range []string{"Chassis", "ManagedBy"} {
		links, _ := path(sys.body, "Links", l).([]any)
		if len(links) != 1 {
			t.Fatalf("Links.%s: %s", l, sys.raw)
		}
		e.get(str(links[0], "@odata.id")).mustStatus(t, http.StatusOK)
	}
	e.get(str(sys.body, "Bios", "@odata.id")).mustStatus(t, http.StatusOK)
	if sys.header.Get("ETag") == "" || sys.body["@odata.etag"] != sys.header.Get("ETag") {
		t.Fatalf("ETag header %q vs body %v", sys.header.Get("ETag"), sys.body["@odata.etag"])
	}
}

func TestConditionalGet(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	sp := e.systemPath()
	etag := e.get(sp).header.Get("ETag")
	r := e.do(http.MethodGet, sp, nil, map[string]string{"If-None-Match": etag}).mustStatus(t, http.StatusNotModified)
	if len(r.raw) != 0 || r.header.Get("ETag") != etag {
		t.Fatalf("304 with body or without ETag: %v %s", r.header, r.raw)
	}
	okWrite(t, e.do(http.MethodPatch, sp, map[string]any{"AssetTag": "rack-4"}, nil))
	e.do(http.MethodGet, sp, nil, map[string]string{"If-None-Match": etag}).mustStatus(t, http.StatusOK)
}

func TestRequestCounting(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{Vendor: HPE})
	e.get("/redfish/v1/Systems/1/")
	e.get("/redfish/v1/Systems/1?$select=Id")
	e.auth = "none"
	e.get("/redfish/v1/Systems/1")
	if n := e.sim.Count(http.MethodGet, "/redfish/v1/Systems/1"); n != 3 {
		t.Fatalf("Count = %d, want 3 (trailing slash and query ignored)", n)
	}
	if n := e.sim.Count(http.MethodGet, "/redfish/v1/Systems/1/"); n != 3 {
		t.Fatalf("Count with slash = %d", n)
	}
	reqs := e.sim.Requests()
	if len(reqs) != 3 || reqs[0].Path != "/redfish/v1/Systems/1/" || reqs[1].RawQuery != "$select=Id" ||
		reqs[1].Status != http.StatusNotImplemented || reqs[2].Auth != "none" || reqs[2].Status != http.StatusUnauthorized {
		t.Fatalf("requests %+v", reqs)
	}
	e.sim.ResetRequests()
	if len(e.sim.Requests()) != 0 || e.sim.Count(http.MethodGet, "/redfish/v1/Systems/1") != 0 {
		t.Fatal("ResetRequests did not clear the log")
	}
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInternalServerError} {
		e.sim.FailNext(2, status)
		for range 2 {
			r := e.get("/redfish/v1/Systems")
			r.mustError(t, status, "")
			retry := r.header.Get("Retry-After")
			if (status == http.StatusInternalServerError) != (retry == "") || (retry != "" && retry != "0") {
				t.Fatalf("%d: Retry-After %q", status, retry)
			}
		}
		e.get("/redfish/v1/Systems").mustStatus(t, http.StatusOK)
	}
	// Failures apply to unauthenticated requests too, and are counted.
	e.sim.ResetRequests()
	e.sim.FailNext(1, http.StatusServiceUnavailable)
	e.auth = "none"
	e.get("/redfish/v1/").mustStatus(t, http.StatusServiceUnavailable)
	if reqs := e.sim.Requests(); len(reqs) != 1 || reqs[0].Status != http.StatusServiceUnavailable {
		t.Fatalf("requests %+v", reqs)
	}
	e.sim.FailNext(5, http.StatusServiceUnavailable)
	e.sim.FailNext(0, 0)
	e.get("/redfish/v1/").mustStatus(t, http.StatusOK)
}

func TestDropNext(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	// A fresh connection per request, so the transport cannot silently
	// retry on another one.
	e.hc = newClient(t, e.ca, true)
	e.sim.DropNext(2)
	for range 2 {
		req, err := e.request(http.MethodGet, "/redfish/v1/Systems", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.hc.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			t.Fatalf("dropped request got a response: %d", resp.StatusCode)
		}
		if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("unexpected error for a dropped connection: %v", err)
		}
	}
	e.get("/redfish/v1/Systems").mustStatus(t, http.StatusOK)
	reqs := e.sim.Requests()
	if len(reqs) != 3 || reqs[0].Status != 0 || reqs[1].Status != 0 || reqs[2].Status != http.StatusOK {
		t.Fatalf("requests %+v", reqs)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	const lat = 500 * time.Millisecond
	e := startEnv(t, Options{})
	e.get("/redfish/v1/").mustStatus(t, http.StatusOK) // warm the connection
	e.sim.SetLatency(lat)
	start := time.Now()
	e.get("/redfish/v1/").mustStatus(t, http.StatusOK)
	if d := time.Since(start); d < lat {
		t.Fatalf("response after %v, want >= %v", d, lat)
	}
	// A client deadline shorter than the latency fails.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req, _ := e.request(http.MethodGet, "/redfish/v1/", nil, nil)
	if resp, err := e.hc.Do(req.WithContext(ctx)); err == nil {
		_ = resp.Body.Close()
		t.Fatal("request beat its deadline despite the latency")
	}
	e.sim.SetLatency(0)
	start = time.Now()
	e.get("/redfish/v1/").mustStatus(t, http.StatusOK)
	if d := time.Since(start); d >= lat*4/5 {
		t.Fatalf("latency not cleared: %v", d)
	}
}

func TestSlowBody(t *testing.T) {
	t.Parallel()
	const stall = 300 * time.Millisecond
	e := startEnv(t, Options{})
	e.sim.SetSlowBody(stall)
	req, _ := e.request(http.MethodGet, "/redfish/v1/Systems", nil, nil)
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	headersAt := time.Now()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	// The headers came first, the body a stall later.
	if d := time.Since(headersAt); d < stall/2 {
		t.Fatalf("body arrived %v after the headers, want about %v", d, stall)
	}

	// A deadline during the stall aborts the body read.
	ctx, cancel := context.WithTimeout(context.Background(), stall/3)
	defer cancel()
	req2, _ := e.request(http.MethodGet, "/redfish/v1/Systems", nil, nil)
	resp2, err := e.hc.Do(req2.WithContext(ctx))
	if err == nil {
		_, err = io.ReadAll(resp2.Body)
		_ = resp2.Body.Close()
	}
	if err == nil {
		t.Fatal("stalled body read past the deadline")
	}
}

func TestServeInjectedListenerAndShutdown(t *testing.T) {
	t.Parallel()
	sim := New(Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, ln) }()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+ln.Addr().String()+"/redfish/v1/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	// A request stalled by latency must not keep the server alive.
	sim.SetLatency(time.Hour)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+ln.Addr().String()+"/redfish/v1/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v after ctx ended", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after ctx ended")
	}
}

func TestStartPlainHTTP(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, err := New(Options{}).Start(ctx)
	if err != nil || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("Start: %q %v", url, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/redfish/v1/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestTLSCertificateCoversLocalhost(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	if !strings.HasPrefix(e.base, "https://127.0.0.1:") {
		t.Fatalf("URL %q", e.base)
	}
	port := e.base[strings.LastIndex(e.base, ":")+1:]
	for _, host := range []string{"127.0.0.1", "localhost"} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://"+host+":"+port+"/redfish/v1/", nil)
		resp, err := e.hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		_ = resp.Body.Close()
		if resp.ProtoMajor != 1 {
			t.Fatalf("%s: negotiated %s, BMCs speak HTTP/1.1", host, resp.Proto)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{PowerTransition: time.Millisecond})
	sp := e.systemPath()
	id := e.sim.SystemIDs()[0]
	send := func(method, p string, body any) error {
		req, err := e.request(method, p, body, nil)
		if err != nil {
			return err
		}
		resp, err := e.hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				var err error
				switch (i + j) % 5 {
				case 0:
					err = send(http.MethodGet, sp+"?$expand=*($levels=2)", nil)
				case 1:
					err = send(http.MethodPost, sp+"/Actions/ComputerSystem.Reset", map[string]any{"ResetType": "PushPowerButton"})
				case 2:
					err = send(http.MethodPatch, sp, map[string]any{"Boot": map[string]any{"BootSourceOverrideTarget": "Pxe"}})
				case 3:
					e.sim.SetPowerState(id, j%2 == 0)
					e.sim.System(id)
				case 4:
					err = send(http.MethodPost, "/redfish/v1/SessionService/Sessions", map[string]any{"UserName": "admin", "Password": "password"})
					e.sim.ActiveSessions()
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if e.sim.Count(http.MethodGet, sp) == 0 {
		t.Fatal("no GETs counted")
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLogsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := startEnv(t, Options{Logger: logger})
	tok := createSession(t, e, "admin", "password").mustStatus(t, http.StatusCreated).header.Get("X-Auth-Token")
	e.doAs(tok, http.MethodGet, e.systemPath()+"?$expand=.", nil, nil).mustStatus(t, http.StatusOK)
	createSession(t, e, "admin", "guess-123").mustStatus(t, http.StatusUnauthorized)
	e.get(e.systemPath()).mustStatus(t, http.StatusOK) // basic auth
	text := logs.String()
	if !strings.Contains(text, "redfish request") || !strings.Contains(text, "auth=session") {
		t.Fatalf("expected request logs:\n%s", text)
	}
	for _, secret := range []string{"password", "guess-123", tok, "Authorization", "X-Auth-Token"} {
		if strings.Contains(text, secret) {
			t.Fatalf("logs contain %q:\n%s", secret, text)
		}
	}
}

func TestHead(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Options{})
	r := e.do(http.MethodHead, e.systemPath(), nil, nil).mustStatus(t, http.StatusOK)
	if len(r.raw) != 0 || r.header.Get("ETag") == "" || r.header.Get("Content-Length") == "" {
		t.Fatalf("HEAD: %v %q", r.header, r.raw)
	}
}
