// Package daemontest runs the provider binary's `serve` command as a real
// subprocess on loopback, for tests of the daemon and of the provider's
// remote mode.
package daemontest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

// Build compiles the provider binary once per test process and returns its
// path. Cleanup removes it.
func Build() (string, error) {
	buildOnce.Do(func() {
		out, err := exec.CommandContext(context.Background(), "go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		buildDir, buildErr = os.MkdirTemp("", "metal-daemon-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "terraform-provider-metal")
		cmd := exec.CommandContext(context.Background(), "go", "build", "-o", binPath, ".")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, b)
		}
	})
	return binPath, buildErr
}

// Cleanup removes the built binary (call from TestMain).
func Cleanup() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

// FreePort returns a loopback port free at the time of the call.
func FreePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := (&net.ListenConfig{}).ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		return int(netip.MustParseAddrPort(c.LocalAddr().String()).Port())
	}
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return int(netip.MustParseAddrPort(l.Addr().String()).Port())
}

// Daemon is a running `serve` subprocess.
type Daemon struct {
	t        testing.TB
	Bin      string
	StateDir string
	Config   string
	// Endpoint is https://127.0.0.1:port; Fingerprint the certificate's.
	Endpoint    string
	Fingerprint string
	// DHCPAddr is the loopback DHCP address machines boot from.
	DHCPAddr *net.UDPAddr

	cmd    *exec.Cmd
	stderr *syncBuffer
	waited chan struct{}
}

// Options of Start.
type Options struct {
	// ExtraYAML is appended to the generated metal.yaml.
	ExtraYAML string
	// DHCPPort is the loopback DHCP port (default: a free one).
	DHCPPort int
}

// Start writes a metal.yaml for loopback (API, HTTP and DHCP on free
// ports, DHCP authoritative on 127.0.0.0/8, no TFTP) and starts the daemon.
func Start(t testing.TB, opts Options) *Daemon {
	t.Helper()
	bin, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := &Daemon{t: t, Bin: bin, StateDir: filepath.Join(dir, "state"), Config: filepath.Join(dir, "metal.yaml")}
	dhcpPort := opts.DHCPPort
	if dhcpPort == 0 {
		dhcpPort = FreePort(t, "udp")
	}
	d.DHCPAddr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: dhcpPort}
	d.Endpoint = fmt.Sprintf("https://127.0.0.1:%d", FreePort(t, "tcp"))
	yaml := fmt.Sprintf(`listen: %s
state_dir: %s
log_level: debug
boot:
  address: 127.0.0.1
  http_listen: 127.0.0.1:%d
  ipxe_dir: %s
  dhcp:
    mode: authoritative
    listen: 127.0.0.1:%d
    subnet: 127.0.0.0/8
    range_start: 127.0.0.100
    range_end: 127.0.0.200
  tftp:
    enabled: false
bmc:
  poll_interval: 20ms
%s`, strings.TrimPrefix(d.Endpoint, "https://"), d.StateDir, FreePort(t, "tcp"), filepath.Join(dir, "no-ipxe"), dhcpPort, opts.ExtraYAML)
	if err := os.WriteFile(d.Config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	t.Cleanup(d.Stop)
	return d
}

// Restart starts the daemon (again) and waits for it to print its
// fingerprint.
func (d *Daemon) Restart() {
	d.t.Helper()
	cmd := exec.CommandContext(context.Background(), d.Bin, "serve", "--config", d.Config)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	d.stderr = &syncBuffer{}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.cmd, d.waited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(d.waited) }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				d.t.Fatalf("the daemon exited before it was ready:\n%s", d.stderr.String())
			}
			if _, fp, ok := strings.Cut(l, "SHA-256 fingerprint: "); ok {
				d.Fingerprint = strings.TrimSpace(fp)
				go func() {
					for range lines {
					}
				}()
				return
			}
		case <-deadline:
			d.t.Fatalf("the daemon did not start in 30s:\n%s", d.stderr.String())
		}
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (d *Daemon) Kill() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Kill()
	<-d.waited
}

// Stop sends SIGTERM and waits (SIGKILL after 10s).
func (d *Daemon) Stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.waited:
	case <-time.After(10 * time.Second):
		d.Kill()
	}
}

// Exited reports whether the process ended, and its exit code.
func (d *Daemon) Exited() (bool, int) {
	select {
	case <-d.waited:
		return true, d.cmd.ProcessState.ExitCode()
	default:
		return false, 0
	}
}

// Logs is what the daemon wrote to stderr.
func (d *Daemon) Logs() string { return d.stderr.String() }

// Token runs `token <args...> --state-dir <dir>` and returns its stdout.
func (d *Daemon) Token(args ...string) string {
	d.t.Helper()
	cmd := exec.CommandContext(context.Background(), d.Bin, append(append([]string{"token"}, args...), "--state-dir", d.StateDir)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("token %v: %v\n%s", args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// Ctx is a context bounded by the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

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
