package httpboot

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
)

func TestScript(t *testing.T) {
	f := newFixture(t)
	rec := f.do("GET", f.path(f.token, "script.ipxe"), nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	v := machineVars(render.KindCloudInit, f.kernel, f.initrd, f.image)
	v.Token, v.BaseURL = f.token, "http://boot.test:8080"
	want, err := render.IPXEScript(v)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Body.Bytes(), want) {
		t.Errorf("script differs from render.IPXEScript:\n%s", rec.Body)
	}
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store (the script carries the token)", got)
	}
	if rec.Header().Get("Content-Length") != strconv.Itoa(len(want)) {
		t.Errorf("Content-Length = %q", rec.Header().Get("Content-Length"))
	}
	ev := f.backend.eventsOf("m1")
	if len(ev) != 1 || ev[0].Stage != StageScript || ev[0].Bytes != int64(len(want)) || ev[0].Status != 200 || ev[0].Reported || ev[0].Remote != "192.0.2.11:40000" {
		t.Errorf("events = %+v", ev)
	}

	// HEAD: headers, no body.
	rec = f.do("HEAD", f.path(f.token, "script.ipxe"), nil)
	if rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != strconv.Itoa(len(want)) {
		t.Errorf("HEAD: %d %q len=%d", rec.Code, rec.Header().Get("Content-Length"), rec.Body.Len())
	}
}

func TestWipeScript(t *testing.T) {
	f := newFixture(t)
	tok, _ := NewToken()
	f.backend.add(tok, &Machine{ID: "w1", Action: ActionWipe, Vars: machineVars(render.KindImage, f.kernel, f.initrd, f.image)})
	rec := f.do("GET", f.path(tok, "script.ipxe"), nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "metal.action=wipe") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestConfigs(t *testing.T) {
	f := newFixture(t)
	for _, name := range render.ConfigNames(render.KindCloudInit) {
		rec := f.do("GET", f.path(f.token, "config/"+name), nil)
		if rec.Code != 200 || rec.Body.Len() == 0 {
			t.Errorf("%s: %d", name, rec.Code)
		}
	}
	if body := f.do("GET", f.path(f.token, "config/user-data"), nil).Body.String(); !strings.Contains(body, f.token+"/provisioned") {
		t.Errorf("user-data has no callback URL: %s", body)
	}
	// A config the machine's kind does not have: 404 (authenticated, so no leak).
	if rec := f.do("GET", f.path(f.token, "config/kickstart"), nil); rec.Code != http.StatusNotFound {
		t.Errorf("kickstart for a cloud-init machine: %d", rec.Code)
	}
	want := []string{"config/user-data", "config/meta-data", "config/network-config", "config/user-data"}
	if got := f.backend.stages("m1"); !slices.Equal(got, want) {
		t.Errorf("stages = %v, want %v", got, want)
	}
}

func TestArtifacts(t *testing.T) {
	f := newFixture(t)
	for stage, want := range map[string][]byte{"kernel": f.kernel, "initrd": f.initrd, "image": f.image} {
		rec := f.do("GET", f.path(f.token, stage), nil)
		if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), want) {
			t.Errorf("%s: status %d, %d bytes", stage, rec.Code, rec.Body.Len())
		}
		if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(len(want)) {
			t.Errorf("%s: Content-Length %q, want %d", stage, cl, len(want))
		}
		if et := rec.Header().Get("ETag"); et != `"sha256:`+sum(want)+`"` {
			t.Errorf("%s: ETag %q", stage, et)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("%s: Content-Type %q", stage, ct)
		}
	}
	ev := f.backend.eventsOf("m1")
	if len(ev) != 3 {
		t.Fatalf("events = %+v", ev)
	}
	for _, e := range ev {
		want := map[string]int{"kernel": len(f.kernel), "initrd": len(f.initrd), "image": len(f.image)}[e.Stage]
		if e.Bytes != int64(want) || e.Status != 200 {
			t.Errorf("event %+v, want %d bytes", e, want)
		}
	}
}

func TestArtifactRangeHeadConditional(t *testing.T) {
	f := newFixture(t)
	p := f.path(f.token, "initrd")

	rec := f.do("GET", p, nil, "Range", "bytes=1000-1999")
	if rec.Code != http.StatusPartialContent {
		t.Fatalf("Range: status %d", rec.Code)
	}
	if !bytes.Equal(rec.Body.Bytes(), f.initrd[1000:2000]) {
		t.Error("Range: wrong bytes")
	}
	if cr := rec.Header().Get("Content-Range"); cr != "bytes 1000-1999/"+strconv.Itoa(len(f.initrd)) {
		t.Errorf("Content-Range = %q", cr)
	}
	if cl := rec.Header().Get("Content-Length"); cl != "1000" {
		t.Errorf("Content-Length = %q", cl)
	}
	rec = f.do("GET", p, nil, "Range", "bytes=-10")
	if rec.Code != 206 || !bytes.Equal(rec.Body.Bytes(), f.initrd[len(f.initrd)-10:]) {
		t.Errorf("suffix range: %d", rec.Code)
	}
	rec = f.do("GET", p, nil, "Range", "bytes=99999999-")
	if rec.Code != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("unsatisfiable range: %d", rec.Code)
	}

	rec = f.do("HEAD", p, nil)
	if rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != strconv.Itoa(len(f.initrd)) {
		t.Errorf("HEAD: %d len=%d CL=%q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
	lm := rec.Header().Get("Last-Modified")
	if lm == "" {
		t.Fatal("no Last-Modified")
	}
	if rec := f.do("GET", p, nil, "If-Modified-Since", lm); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Errorf("If-Modified-Since: %d", rec.Code)
	}
	if rec := f.do("GET", p, nil, "If-None-Match", `"sha256:`+sum(f.initrd)+`"`); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", rec.Code)
	}
	// If-Range with a stale validator: the whole file.
	if rec := f.do("GET", p, nil, "Range", "bytes=0-9", "If-Range", `"sha256:stale"`); rec.Code != 200 || rec.Body.Len() != len(f.initrd) {
		t.Errorf("stale If-Range: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	for _, e := range f.backend.eventsOf("m1") {
		if e.Stage != StageInitrd {
			t.Errorf("stage %q", e.Stage)
		}
	}
	if ev := f.backend.eventsOf("m1"); ev[0].Bytes != 1000 || ev[0].Status != 206 {
		t.Errorf("range event = %+v", ev[0])
	}
}

func TestArtifactMissing(t *testing.T) {
	f := newFixture(t)
	tok, _ := NewToken()
	v := machineVars(render.KindCloudInit, f.kernel, []byte("never cached"), nil)
	v.Image.ImageSHA256 = ""
	f.backend.add(tok, &Machine{ID: "m2", Vars: v})
	if rec := f.do("GET", f.path(tok, "initrd"), nil); rec.Code != http.StatusNotFound || rec.Body.Len() != 0 {
		t.Errorf("uncached initrd: %d", rec.Code)
	}
	if rec := f.do("GET", f.path(tok, "image"), nil); rec.Code != http.StatusNotFound {
		t.Errorf("no image: %d", rec.Code)
	}
}

// forbidden asserts the one and only shape of a refusal: 403, empty body,
// no header but Cache-Control (and Content-Length: 0 where set).
func forbidden(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusForbidden {
		t.Errorf("%s: status %d, want 403", what, rec.Code)
		return
	}
	if rec.Body.Len() != 0 {
		t.Errorf("%s: body %q, want empty", what, rec.Body)
	}
	for k := range rec.Header() {
		if k != "Cache-Control" && k != "Content-Length" {
			t.Errorf("%s: unexpected header %s: %q", what, k, rec.Header().Get(k))
		}
	}
}

// TestBadTokensAreOpaque: every per-machine route refuses missing,
// malformed, unknown, expired and used tokens with the same bare 403, and
// records nothing.
func TestBadTokensAreOpaque(t *testing.T) {
	f := newFixture(t)
	unknown, _ := NewToken()
	expired, _ := NewToken()
	f.backend.add(expired, &Machine{ID: "m-expired", Vars: machineVars(render.KindCloudInit, f.kernel, f.initrd, f.image)})
	f.backend.expire(expired)
	used, _ := NewToken()
	f.backend.add(used, &Machine{ID: "m-used", Provisioned: true, Vars: machineVars(render.KindCloudInit, f.kernel, f.initrd, f.image)})

	bad := map[string]string{
		"unknown":       unknown,
		"expired":       expired,
		"used":          used,
		"malformed":     "not-a-token!",
		"short":         "abc",
		"traversal":     "..",
		"case-changed":  strings.ToUpper(f.token[:1]) + strings.ToLower(f.token[1:]),
		"prefix":        f.token[:len(f.token)-1],
		"encoded-slash": "a%2Fb%2Fc%2Fdddddddddddddddddddd",
	}
	for reason, tok := range bad {
		for _, r := range tokenRoutes {
			forbidden(t, reason+" "+r.method+" "+r.rest, f.do(r.method, f.path(tok, r.rest), bodyReader(r.body)))
		}
	}
	// Malformed tokens never reach the backend.
	before := f.backend.lookups.Load()
	for _, tok := range []string{"not-a-token!", "abc", "..", strings.Repeat("a", 129)} {
		forbidden(t, "malformed "+tok, f.do("GET", f.path(tok, "script.ipxe"), nil))
	}
	if f.backend.lookups.Load() != before {
		t.Error("a malformed token was passed to the backend")
	}
	// Missing token and unknown routes in the token tree: the same 403.
	for _, p := range []string{"/boot/script.ipxe", "/boot//script.ipxe", "/boot/kernel", "/boot/" + unknown, "/boot/" + unknown + "/nope", "/boot/" + f.token + "/nope", "/boot/" + f.token + "/config/"} {
		forbidden(t, "GET "+p, f.do("GET", p, nil))
	}
	// Wrong method on a real route: the same 403 (no Allow header hint).
	forbidden(t, "GET events", f.do("GET", f.path(f.token, "events"), nil))
	forbidden(t, "DELETE kernel", f.do("DELETE", f.path(f.token, "kernel"), nil))

	for _, id := range []string{"m1", "m-expired", "m-used"} {
		if ev := f.backend.eventsOf(id); len(ev) != 0 {
			t.Errorf("%s: refused requests were recorded: %+v", id, ev)
		}
	}
	// And the valid token still works.
	if rec := f.do("GET", f.path(f.token, "kernel"), nil); rec.Code != 200 {
		t.Errorf("valid token: %d", rec.Code)
	}
}

// TestProvisionedRevokesToken: after POST provisioned every route of the
// token answers 403, whether or not the backend itself revokes it.
func TestProvisionedRevokesToken(t *testing.T) {
	for _, revoke := range []bool{false, true} {
		t.Run("backend revokes="+strconv.FormatBool(revoke), func(t *testing.T) {
			f := newFixture(t)
			f.backend.revoke = revoke
			rec := f.do("POST", f.path(f.token, "provisioned"), strings.NewReader("instance_id=m1&hostname=node1"), "Content-Type", "application/x-www-form-urlencoded")
			if rec.Code != http.StatusNoContent {
				t.Fatalf("provisioned: %d", rec.Code)
			}
			for _, r := range tokenRoutes {
				forbidden(t, "after provisioned "+r.method+" "+r.rest, f.do(r.method, f.path(f.token, r.rest), bodyReader(r.body)))
			}
			if n := f.backend.provided.Load(); n != 1 {
				t.Errorf("MarkProvisioned called %d times, want 1", n)
			}
			if got := f.backend.stages("m1"); !slices.Equal(got, []string{StageProvisioned}) {
				t.Errorf("stages = %v", got)
			}
		})
	}
}

func TestAllowedSources(t *testing.T) {
	f := newFixture(t)
	tok, _ := NewToken()
	f.backend.add(tok, &Machine{ID: "bound", Vars: machineVars(render.KindCloudInit, f.kernel, f.initrd, f.image),
		AllowedSources: []netip.Prefix{netip.MustParsePrefix("192.0.2.11/32")}})
	if rec := f.do("GET", f.path(tok, "script.ipxe"), nil); rec.Code != 200 { // fixture requests come from 192.0.2.11
		t.Fatalf("allowed source: %d", rec.Code)
	}
	for _, remote := range []string{"192.0.2.12:40000", "[::ffff:192.0.2.13]:1", "garbage"} {
		req := httptest.NewRequest("GET", f.path(tok, "kernel"), nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		forbidden(t, "from "+remote, rec)
	}
	if ev := f.backend.eventsOf("bound"); len(ev) != 1 {
		t.Errorf("events = %+v", ev)
	}
}

func TestConcurrentProvisionedOnlyOnce(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	for range 8 {
		wg.Go(func() { codes <- f.do("POST", f.path(f.token, "provisioned"), nil).Code })
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		switch c {
		case http.StatusNoContent:
			ok++
		case http.StatusForbidden:
		default:
			t.Errorf("status %d", c)
		}
	}
	if ok != 1 {
		t.Errorf("%d callers succeeded, want exactly 1", ok)
	}
}

// TestLocalBootRoutes: the non-secret routes the DHCP layer hands out after
// provisioning return one constant script for everyone, never consulting
// the backend.
func TestLocalBootRoutes(t *testing.T) {
	f := newFixture(t)
	f.do("POST", f.path(f.token, "provisioned"), nil)
	lookups := f.backend.lookups.Load()

	want := render.LocalBootScript()
	var first http.Header
	for _, p := range []string{
		"/boot/local.ipxe",
		"/boot/by-mac/52:54:00:00:00:01/script.ipxe", // the provisioned machine
		"/boot/by-mac/52-54-00-00-00-01/script.ipxe", // iPXE ${mac:hexhyp}
		"/boot/by-mac/02:00:00:ff:ff:ff/script.ipxe", // nobody
	} {
		rec := f.do("GET", p, nil)
		if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), want) {
			t.Errorf("%s: %d %q", p, rec.Code, rec.Body)
		}
		h := rec.Header().Clone()
		if first == nil {
			first = h
		} else if !headersEqual(first, h) {
			t.Errorf("%s: headers differ: %v vs %v", p, h, first)
		}
	}
	for _, p := range []string{"/boot/by-mac/not-a-mac/script.ipxe", "/boot/by-mac/52:54:00:00:00:01/kernel", "/boot/by-mac/00:11:22:33:44:55:66:77/script.ipxe"} {
		if rec := f.do("GET", p, nil); rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d", p, rec.Code)
		}
	}
	if f.backend.lookups.Load() != lookups {
		t.Error("local-boot routes consulted the backend")
	}
	if !strings.Contains(string(want), "sanboot --no-describe --drive 0x80") || !strings.Contains(string(want), "exit 1") {
		t.Errorf("local boot script: %s", want)
	}
	if got := ByMACScriptURL("http://x/", "${mac:hexhyp}"); got != "http://x/boot/by-mac/${mac:hexhyp}/script.ipxe" {
		t.Errorf("ByMACScriptURL = %s", got)
	}
	if got := LocalBootURL("http://x"); got != "http://x/boot/local.ipxe" {
		t.Errorf("LocalBootURL = %s", got)
	}
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestEvents(t *testing.T) {
	f := newFixture(t)
	p := f.path(f.token, "events")
	if rec := f.do("POST", p, strings.NewReader(`{"stage":"partitioning","message":"wiping /dev/sda","extra":1}`)); rec.Code != http.StatusNoContent {
		t.Errorf("valid event: %d", rec.Code)
	}
	for name, body := range map[string]string{
		"not json":    "stage=x",
		"no stage":    `{"message":"x"}`,
		"bad stage":   `{"stage":"../x"}`,
		"long stage":  `{"stage":"` + strings.Repeat("a", 65) + `"}`,
		"upper stage": `{"stage":"Booting"}`,
	} {
		if rec := f.do("POST", p, strings.NewReader(body)); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d", name, rec.Code)
		}
	}
	big := `{"stage":"x","message":"` + strings.Repeat("a", DefaultMaxBodyBytes) + `"}`
	if rec := f.do("POST", p, strings.NewReader(big)); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d", rec.Code)
	}
	long := `{"stage":"x","message":"` + strings.Repeat("é", MaxMessageBytes) + `"}`
	if rec := f.do("POST", p, strings.NewReader(long)); rec.Code != http.StatusNoContent {
		t.Errorf("long message: %d", rec.Code)
	}
	if rec := f.do("GET", f.path(f.token, "progress/booting"), nil); rec.Code != 200 {
		t.Errorf("progress: %d", rec.Code)
	}
	if rec := f.do("GET", f.path(f.token, "progress/Bad%20Stage"), nil); rec.Code != http.StatusBadRequest {
		t.Errorf("bad progress stage: %d", rec.Code)
	}
	ev := f.backend.eventsOf("m1")
	if len(ev) != 3 {
		t.Fatalf("events = %+v", ev)
	}
	if ev[0].Stage != "partitioning" || ev[0].Message != "wiping /dev/sda" || !ev[0].Reported || ev[0].Status != 204 {
		t.Errorf("event 0 = %+v", ev[0])
	}
	if m := ev[1].Message; len(m) > MaxMessageBytes || !strings.HasPrefix(m, "éé") || strings.ToValidUTF8(m, "?") != m {
		t.Errorf("long message not truncated cleanly: %d bytes", len(m))
	}
	if ev[2].Stage != "booting" || !ev[2].Reported {
		t.Errorf("event 2 = %+v", ev[2])
	}
}

// TestTimeline: a whole provisioning, in order.
func TestTimeline(t *testing.T) {
	f := newFixture(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.h.now = func() time.Time { now = now.Add(time.Second); return now }
	steps := []struct{ method, rest, body string }{
		{"GET", "script.ipxe", ""},
		{"GET", "kernel", ""},
		{"GET", "initrd", ""},
		{"GET", "progress/booting", ""},
		{"GET", "config/meta-data", ""},
		{"GET", "config/user-data", ""},
		{"GET", "config/network-config", ""},
		{"POST", "events", `{"stage":"installing"}`},
		{"GET", "image", ""},
		{"POST", "provisioned", ""},
	}
	for _, s := range steps {
		if rec := f.do(s.method, f.path(f.token, s.rest), bodyReader(s.body)); rec.Code >= 300 {
			t.Fatalf("%s %s: %d", s.method, s.rest, rec.Code)
		}
	}
	want := []string{"script", "kernel", "initrd", "booting", "config/meta-data", "config/user-data", "config/network-config", "installing", "image", "provisioned"}
	if got := f.backend.stages("m1"); !slices.Equal(got, want) {
		t.Errorf("timeline = %v\nwant       %v", got, want)
	}
	ev := f.backend.eventsOf("m1")
	for i := 1; i < len(ev); i++ {
		if !ev[i].Time.After(ev[i-1].Time) {
			t.Errorf("event %d not after %d", i, i-1)
		}
	}
	if ev[1].Bytes != int64(len(f.kernel)) || ev[8].Bytes != int64(len(f.image)) {
		t.Errorf("bytes: kernel %d image %d", ev[1].Bytes, ev[8].Bytes)
	}
}

func TestBackendFailure(t *testing.T) {
	f := newFixture(t)
	f.backend.fail = errors.New("database on fire")
	rec := f.do("GET", f.path(f.token, "script.ipxe"), nil)
	if rec.Code != http.StatusServiceUnavailable || rec.Body.Len() != 0 {
		t.Errorf("%d %q", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "fire") {
		t.Error("backend error leaked")
	}
}

// TestNoTokenInLogs: nothing the handler logs, for any route and outcome,
// contains a token; the fingerprint stands in for it.
func TestNoTokenInLogs(t *testing.T) {
	f := newFixture(t)
	unknown, _ := NewToken()
	for _, tok := range []string{f.token, unknown} {
		for _, r := range tokenRoutes {
			f.do(r.method, f.path(tok, r.rest), bodyReader(r.body))
		}
	}
	f.do("GET", f.path(f.token, "script.ipxe"), nil) // after provisioned: denied
	f.backend.fail = errors.New("boom")
	f.do("GET", f.path(unknown, "script.ipxe"), nil)
	logs := f.logs.String()
	if logs == "" {
		t.Fatal("nothing logged")
	}
	for _, tok := range []string{f.token, unknown} {
		if strings.Contains(logs, tok) {
			t.Errorf("a token appears in the logs:\n%s", logs)
		}
		if !strings.Contains(logs, "token_fp="+TokenFingerprint(tok)) {
			t.Errorf("fingerprint of a token is missing from the logs")
		}
	}
}

// TestPathTraversal: artifacts come only from the machine's sums, binaries
// only from the allow-list inside the directory.
func TestPathTraversal(t *testing.T) {
	f := newFixture(t)
	secret := filepath.Join(filepath.Dir(f.binaries), "secret")
	if err := os.WriteFile(secret, []byte("SECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An allow-listed name that is a symlink out of the directory.
	if err := os.Symlink(secret, filepath.Join(f.binaries, "snponly.efi")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"/boot/binaries/../secret",
		"/boot/binaries/..%2fsecret",
		"/boot/binaries/%2e%2e%2fsecret",
		"/boot/binaries/snponly.efi",
		"/boot/binaries/secret",
		"/boot/binaries/",
		"/boot/binaries/ipxe.efi/../../secret",
		"/boot/" + f.token + "/config/..%2f..%2fsecret",
		"/boot/" + f.token + "/../binaries/../secret",
	} {
		req := httptest.NewRequest("GET", "http://boot.test/", nil)
		req.URL.RawPath, req.URL.Path = p, mustUnescape(t, p)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code == 200 || strings.Contains(rec.Body.String(), "SECRET") {
			t.Errorf("%s: %d %q", p, rec.Code, rec.Body)
		}
	}
	// A machine whose sum is not a sum is refused before the cache is asked.
	tok, _ := NewToken()
	v := machineVars(render.KindCloudInit, f.kernel, f.initrd, f.image)
	v.Image.KernelSHA256 = "../../../../secret"
	f.backend.add(tok, &Machine{ID: "evil", Vars: v})
	if rec := f.do("GET", f.path(tok, "kernel"), nil); rec.Code == 200 || strings.Contains(rec.Body.String(), "SECRET") {
		t.Errorf("bad sum: %d", rec.Code)
	}
}

func mustUnescape(t *testing.T, p string) string {
	t.Helper()
	r := httptest.NewRequest("GET", "http://x"+p, nil)
	return r.URL.Path
}

func TestBinaries(t *testing.T) {
	f := newFixture(t)
	rec := f.do("GET", "/boot/binaries/ipxe.efi", nil)
	if rec.Code != 200 || rec.Body.String() != "MZ-fake-ipxe-efi" || rec.Header().Get("Content-Length") != "16" {
		t.Errorf("ipxe.efi: %d %q", rec.Code, rec.Body)
	}
	if rec := f.do("HEAD", "/boot/binaries/ipxe.efi", nil); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d", rec.Code)
	}
	if err := os.WriteFile(filepath.Join(f.binaries, "notes.txt"), []byte("private"), 0o644); err != nil {
		t.Fatal(err)
	}
	if rec := f.do("GET", "/boot/binaries/notes.txt", nil); rec.Code != 404 {
		t.Errorf("file not on the allow-list: %d", rec.Code)
	}
	if rec := f.do("GET", "/boot/binaries/undionly.kpxe", nil); rec.Code != 404 {
		t.Errorf("allowed but absent: %d", rec.Code)
	}
	if rec := f.do("POST", "/boot/binaries/ipxe.efi", nil); rec.Code == 200 {
		t.Errorf("POST: %d", rec.Code)
	}
	h, err := New(Config{Backend: f.backend, Artifacts: f.cache})
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boot/binaries/ipxe.efi", nil))
	if rec.Code != 404 {
		t.Errorf("no directory configured: %d", rec.Code)
	}
	if _, err := New(Config{Backend: f.backend, Artifacts: f.cache, Binaries: []string{"../x"}}); err == nil {
		t.Error("allow-list entry with a path accepted")
	}
}

func TestTokenHelpers(t *testing.T) {
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || !ValidTokenSyntax(a) || len(a) != 43 {
		t.Errorf("tokens %q %q", a, b)
	}
	v := machineVars(render.KindCloudInit, nil, nil, nil)
	v.Token, v.BaseURL = a, "http://x"
	if err := v.Validate(); err != nil {
		t.Errorf("render rejects a NewToken token: %v", err)
	}
	if !TokensEqual(a, a) || TokensEqual(a, b) || TokensEqual(a, a+"x") {
		t.Error("TokensEqual")
	}
	if fp := TokenFingerprint(a); len(fp) != 6 || strings.Contains(a, fp) && len(a) < 6 {
		t.Errorf("fingerprint %q", fp)
	}
	if _, err := New(Config{Artifacts: nil, Backend: newFakeBackend()}); err == nil {
		t.Error("missing Artifacts accepted")
	}
}

// TestLoopbackConcurrent fetches artifacts and scripts from a real server
// over loopback, concurrently, with and without ranges.
func TestLoopbackConcurrent(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	client := srv.Client()

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 32 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+f.path(f.token, "image"), nil)
			want := f.image
			if i%2 == 1 {
				lo := i * 1000
				req.Header.Set("Range", "bytes="+strconv.Itoa(lo)+"-"+strconv.Itoa(lo+65535))
				want = f.image[lo : lo+65536]
			}
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = resp.Body.Close() }()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, want) {
				errs <- errors.New("request " + strconv.Itoa(i) + ": wrong bytes, status " + resp.Status)
			}
		})
	}
	for range 16 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+f.path(f.token, "script.ipxe"), nil)
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = resp.Body.Close() }()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !bytes.HasPrefix(b, []byte("#!ipxe")) {
				errs <- errors.New("script: " + resp.Status)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(f.backend.eventsOf("m1")); n != 48 {
		t.Errorf("%d events, want 48", n)
	}
}
