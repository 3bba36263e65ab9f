package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/api"
	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/daemon/daemontest"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
	"github.com/composable-metal/terraform-provider-metal/internal/machinesim"
)

func TestMain(m *testing.M) {
	if _, err := daemontest.Build(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	daemontest.Cleanup()
	os.Exit(code)
}

const mac = "52:54:00:aa:00:01"

func client(t *testing.T, d *daemontest.Daemon, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(api.Config{Endpoint: d.Endpoint, Token: token, TLSFingerprint: d.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func image(t *testing.T, c engine.Engine) []byte {
	t.Helper()
	dir := t.TempDir()
	kernel := []byte("a kernel that boots")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return "file://" + p
	}
	if _, err := c.EnsureImage(context.Background(), engine.ImageSpec{
		Name: "debian", Kind: "cloud-init",
		Kernel: engine.ArtifactSource{URL: write("vmlinuz", kernel)},
		Initrd: engine.ArtifactSource{URL: write("initrd.img", []byte("an initrd"))},
	}); err != nil {
		t.Fatalf("EnsureImage: %v", err)
	}
	return kernel
}

func TestServeTokensAndAPI(t *testing.T) {
	t.Parallel()
	d := daemontest.Start(t, daemontest.Options{})
	ctx := daemontest.Ctx(t, time.Minute)

	// The generated certificate persists in state_dir and is reused.
	if _, err := os.Stat(filepath.Join(d.StateDir, "api-tls.crt")); err != nil {
		t.Fatal(err)
	}
	if len(d.Fingerprint) != 64 {
		t.Fatalf("fingerprint %q", d.Fingerprint)
	}

	tok := d.Token("create", "ci")
	if !strings.HasPrefix(tok, "metal_") {
		t.Fatalf("token create printed %q", tok)
	}
	if list := d.Token("list"); !strings.Contains(list, "ci") || strings.Contains(list, tok) {
		t.Fatalf("token list: %s", list)
	}
	b, _ := os.ReadFile(filepath.Join(d.StateDir, api.TokensFile))
	sum := sha256.Sum256([]byte(tok))
	if strings.Contains(string(b), tok) || !strings.Contains(string(b), hex.EncodeToString(sum[:])) {
		t.Fatalf("the token file should hold only the hash: %s", b)
	}

	c := client(t, d, tok)
	if _, err := c.Image(ctx, "nope"); !errors.Is(err, engine.ErrImageNotFound) {
		t.Fatalf("Image(nope) = %v", err)
	}
	image(t, c)
	if info, err := c.Image(ctx, "debian"); err != nil || info.KernelSize == 0 {
		t.Fatalf("Image(debian) = %+v, %v", info, err)
	}
	if _, err := client(t, d, "metal_nope").Discovered(ctx); !errors.Is(err, api.ErrInvalidToken) {
		t.Fatalf("wrong token: %v", err)
	}

	// Rotation and revocation through the CLI take effect without a restart.
	fresh := d.Token("rotate", "ci")
	if _, err := c.Discovered(ctx); !errors.Is(err, api.ErrInvalidToken) {
		t.Fatalf("rotated-out token: %v", err)
	}
	if _, err := client(t, d, fresh).Discovered(ctx); err != nil {
		t.Fatalf("rotated token: %v", err)
	}
	d.Token("revoke", "ci")
	if _, err := client(t, d, fresh).Discovered(ctx); !errors.Is(err, api.ErrInvalidToken) {
		t.Fatalf("revoked token: %v", err)
	}

	// Unauthenticated endpoints.
	hc := &http.Client{Transport: insecure()}
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/v1/version": `"api_version":1`, "/metrics": "metal_api_requests_total"} {
		resp, err := hc.Get(d.Endpoint + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
	}

	// SIGTERM ends it cleanly.
	d.Stop()
	if exited, code := d.Exited(); !exited || code != 0 {
		t.Fatalf("after SIGTERM: exited %v code %d\n%s", exited, code, d.Logs())
	}
	// The same certificate after a restart.
	fp := d.Fingerprint
	d.Restart()
	if d.Fingerprint != fp {
		t.Fatal("the generated certificate changed across a restart")
	}
}

// kill -9 in the middle of a provisioning: the restarted daemon resumes
// the wait, the machine reaches provisioned, and the client that was
// waiting gets the result.
func TestKillMidProvisionResumes(t *testing.T) {
	t.Parallel()
	d := daemontest.Start(t, daemontest.Options{})
	ctx := daemontest.Ctx(t, 2*time.Minute)
	tok := d.Token("create", "ci")
	c := client(t, d, tok)
	kernel := image(t, c)

	// The BMC tells us when the machine is reset into PXE, but the
	// machine stays silent until the daemon has been killed.
	booted := make(chan bmcsim.BootEvent, 4)
	sim := bmcsim.New(bmcsim.Options{Systems: []bmcsim.SystemSpec{{
		ID: "node-1", NICs: []bmcsim.NIC{{ID: "eth0", MAC: mac, LinkUp: true}}, BootMode: "UEFI",
		OnBoot: func(ev bmcsim.BootEvent) { booted <- ev },
	}}})
	sctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, ca, err := sim.StartTLS(sctx)
	if err != nil {
		t.Fatal(err)
	}
	bmc := engine.BMC{Endpoint: url, Username: "admin", Password: "password", CACertificate: string(ca)}

	type result struct {
		res *engine.ProvisionResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.Provision(ctx, bmc, engine.ProvisionSpec{Image: "debian", Hostname: "node1", WaitFor: engine.WaitProvisioned})
		done <- result{res, err}
	}()
	select {
	case ev := <-booted:
		if ev.Target != "Pxe" {
			t.Fatalf("boot event %+v", ev)
		}
	case r := <-done:
		t.Fatalf("Provision returned before the machine booted: %+v %v", r.res, r.err)
	case <-ctx.Done():
		t.Fatal("the machine was never told to network-boot")
	}

	d.Kill()
	d.Restart()

	// The firmware keeps retrying DHCP until the boot service answers.
	m := &machinesim.Machine{MAC: mustMAC(mac), DHCPServer: d.DHCPAddr, DHCPTimeout: 2 * time.Second, Disk: &machinesim.Disk{}}
	var boot *machinesim.Result
	for {
		boot, err = m.NetBoot(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the machine never booted from the restarted daemon: %v\n%s", err, d.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	inst, ok := m.Disk.Installed()
	sum := sha256.Sum256(kernel)
	if !ok || inst.Hostname != "node1" || inst.KernelSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("installed %+v (%v), boot %+v", inst, ok, boot)
	}

	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Provision across the restart: %v\n%s", r.err, d.Logs())
		}
		stages := make([]string, 0, len(r.res.Timeline))
		for _, ev := range r.res.Timeline {
			stages = append(stages, ev.Source+"/"+ev.Stage)
		}
		got := strings.Join(stages, " ")
		for _, want := range []string{"engine/registered", "engine/pxe_boot_requested", "dhcp/ack", "http/provisioned"} {
			if !strings.Contains(got, want) {
				t.Fatalf("timeline %s lacks %s", got, want)
			}
		}
		if r.res.IPAddress != boot.LeaseIP.String() {
			t.Fatalf("result address %s, leased %s", r.res.IPAddress, boot.LeaseIP)
		}
	case <-ctx.Done():
		t.Fatalf("the waiting client never got the result\n%s", d.Logs())
	}
	if !strings.Contains(d.Logs(), "resuming an operation") {
		t.Fatalf("the daemon did not say it resumed:\n%s", d.Logs())
	}
	// Nothing lost: the image and the timeline survive, and the token too.
	if _, err := c.Image(ctx, "debian"); err != nil {
		t.Fatal(err)
	}
	tl, err := c.Timeline(ctx, engine.BMC{Endpoint: url, SystemID: "node-1"})
	if err != nil || len(tl) == 0 {
		t.Fatalf("timeline: %v %v", tl, err)
	}
}

func TestBadConfigurationFailsAtStart(t *testing.T) {
	t.Parallel()
	bin, _ := daemontest.Build()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "metal.yaml")
	_ = os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nboot:\n  address: 127.0.0.1\n  dhcp:\n    mode: authoritative\n  unknown_key: 1\n"), 0o600)
	out, err := runBin(bin, "serve", "--config", cfg, "--state-dir", dir)
	if err == nil || !strings.Contains(out, "unknown_key") {
		t.Fatalf("unknown key: %v %s", err, out)
	}
	_ = os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nboot:\n  dhcp:\n    mode: authoritative\n"), 0o600)
	out, err = runBin(bin, "serve", "--config", cfg, "--state-dir", dir)
	if err == nil || !strings.Contains(out, "boot.address is required") || !strings.Contains(out, "boot.dhcp.subnet is required") {
		t.Fatalf("missing fields: %v %s", err, out)
	}
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}
