package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestFlagValidation(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-listen", "0.0.0.0:8443"},
		{"-listen", ":8443"},
		{"-listen", "192.0.2.1:8443"},
		{"-listen", "example.com:8443"},
		{"-listen", "nonsense"},
		{"-vendor", "ibm"},
		{"-systems", "0"},
		{"-tls=false", "-ca-out", "x.pem"},
		{"extra"},
	} {
		if _, err := parseFlags(args, noEnv, io.Discard); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	for _, args := range [][]string{
		{},
		{"-listen", "localhost:0"},
		{"-listen", "[::1]:0"},
		{"-listen", "0.0.0.0:0", "-allow-remote"},
		{"-vendor", "supermicro", "-systems", "3", "-power-transition", "0s"},
	} {
		if _, err := parseFlags(args, noEnv, io.Discard); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	c, err := parseFlags(nil, func(k string) string {
		if k == passwordEnv {
			return "from-env"
		}
		return ""
	}, io.Discard)
	if err != nil || c.password != "from-env" {
		t.Fatalf("password from env: %q %v", c.password, err)
	}
	c, _ = parseFlags([]string{"-password", "flag"}, func(string) string { return "env" }, io.Discard)
	if c.password != "flag" {
		t.Fatalf("-password should win over the environment, got %q", c.password)
	}
}

// lineWriter collects output and signals when a line with a prefix appears.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan string
	once  sync.Once
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, _ := w.buf.Write(p)
	// Ready once the banner is complete; report the URL from it.
	text := w.buf.String()
	if !strings.Contains(text, "Stop with Ctrl-C.") {
		return n, nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if _, url, ok := strings.Cut(sc.Text(), "listening on "); ok {
			w.once.Do(func() { w.ready <- url })
		}
	}
	return n, nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestRunServesUntilCancelled(t *testing.T) {
	t.Parallel()
	caOut := filepath.Join(t.TempDir(), "sub", "ca.pem")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{ready: make(chan string, 1)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-vendor", "dell", "-systems", "2", "-ca-out", caOut, "-password", "s3cret"},
			noEnv, out, io.Discard)
	}()
	var url string
	select {
	case url = <-out.ready:
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("simulator did not start")
	}
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("URL %q", url)
	}
	text := out.String()
	for _, want := range []string{"/redfish/v1/Systems/System.Embedded.1", "/redfish/v1/Systems/System.Embedded.2", caOut} {
		if !strings.Contains(text, want) {
			t.Fatalf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "s3cret") {
		t.Fatal("password printed")
	}

	pem, err := os.ReadFile(caOut)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("ca-out is not a PEM certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/redfish/v1/Systems", nil)
	req.SetBasicAuth("admin", "s3cret")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancellation")
	}
}

func TestRunPlainHTTP(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{ready: make(chan string, 1)}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-tls=false"}, noEnv, out, io.Discard) }()
	select {
	case url := <-out.ready:
		if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.Contains(out.String(), `"password" (default)`) {
			t.Fatalf("output:\n%s", out.String())
		}
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunReportsListenErrors(t *testing.T) {
	t.Parallel()
	if err := run(context.Background(), []string{"-listen", "127.0.0.1:99999"}, noEnv, io.Discard, io.Discard); err == nil {
		t.Fatal("bad port accepted")
	}
}

func TestNetbootFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-netboot-dhcp", "192.0.2.1:67"},
		{"-netboot-dhcp", "127.0.0.1"},
		{"-netboot-dhcp", "[::1]:67"},
		{"-netboot-dhcp", "127.0.0.1:0"},
		{"-netboot-dhcp", "127.0.0.1:6767", "-netboot-timeout", "0s"},
		{"-system-ids", "a,a"},
		{"-system-ids", "a,,b"},
		{"-system-ids", "a/b"},
	} {
		if _, err := parseFlags(args, noEnv, io.Discard); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	c, err := parseFlags([]string{"-system-ids", "node1, node2", "-netboot-dhcp", "localhost:6767"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.systems != 2 || strings.Join(c.systemIDs, ",") != "node1,node2" || c.netbootDHCP.String() != "127.0.0.1:6767" {
		t.Fatalf("parsed %+v", c)
	}
	if _, err := parseFlags([]string{"-netboot-dhcp", "192.0.2.1:67", "-allow-remote"}, noEnv, io.Discard); err != nil {
		t.Fatalf("-allow-remote: %v", err)
	}
}

// A Pxe boot of a system reaches its simulated machine, which asks the
// -netboot-dhcp address for DHCP (nothing answers here), and
// /simulator/machines reports it.
func TestRunNetbootMachines(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &lineWriter{ready: make(chan string, 1)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-tls=false", "-system-ids", "rack1-a,rack1-b",
			"-netboot-dhcp", "127.0.0.1:9", "-netboot-dhcp-timeout", "20ms", "-power-transition", "0s"}, noEnv, out, io.Discard)
	}()
	var url string
	select {
	case url = <-out.ready:
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	case <-ctx.Done():
		t.Fatal("simulator did not start")
	}
	if !strings.Contains(out.String(), "network boot: simulated machines DHCP to 127.0.0.1:9") {
		t.Fatalf("banner:\n%s", out.String())
	}
	do := func(method, path, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("admin", "password")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, r := range []struct{ method, path, body string }{
		{http.MethodPatch, "/redfish/v1/Systems/rack1-b", `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}`},
		{http.MethodPost, "/redfish/v1/Systems/rack1-b/Actions/ComputerSystem.Reset", `{"ResetType":"On"}`},
	} {
		resp := do(r.method, r.path, r.body)
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %s", r.method, r.path, resp.Status)
		}
	}

	var rep machinesReport
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp := do(http.MethodGet, machinesPath, "")
		rep = machinesReport{}
		err := json.NewDecoder(resp.Body).Decode(&rep)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Machines) == 2 && len(rep.Machines[1].Boots) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no boot reported: %+v", rep)
		case <-tick.C:
		}
	}
	a, b := rep.Machines[0], rep.Machines[1]
	if a.SystemID != "rack1-a" || len(a.Boots) != 0 || a.PowerState != "Off" || a.Installed != nil {
		t.Errorf("rack1-a: %+v", a)
	}
	boot := b.Boots[0]
	if b.SystemID != "rack1-b" || b.PowerState != "On" || b.Installed != nil || boot.Target != "Pxe" || boot.Provisioned ||
		!strings.Contains(boot.Error, "dhcp") || b.BootMAC == "" || b.BootMAC != strings.ToLower(b.BootMAC) {
		t.Errorf("rack1-b: %+v", b)
	}

	// The report is behind the BMC credentials.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+machinesPath, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without credentials: %s", resp.Status)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
