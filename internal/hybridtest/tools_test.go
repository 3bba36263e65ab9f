package hybridtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// awsProviderVersion is the hashicorp/aws release the test runs, from a
// filesystem mirror.
const awsProviderVersion = "5.100.0"

// mirrorEnv names a filesystem mirror to use before the usual places.
const mirrorEnv = "METAL_AWS_PROVIDER_MIRROR"

// tools are the external programs the test drives.
type tools struct {
	terraform string
	// moto is the command that runs moto's server, before its flags.
	moto []string
	// awsMirror is a filesystem mirror directory holding hashicorp/aws.
	awsMirror string
}

// requireTools finds the tools, or skips the test saying what is missing;
// with CI=true a missing tool fails the test instead, so CI cannot pass
// without running it.
func requireTools(t *testing.T) tools {
	t.Helper()
	var tl tools
	var missing []string
	if p := os.Getenv("TF_ACC_TERRAFORM_PATH"); p != "" {
		tl.terraform = p
	} else if p, err := exec.LookPath("terraform"); err == nil {
		tl.terraform = p
	} else {
		missing = append(missing, "terraform (not on PATH, TF_ACC_TERRAFORM_PATH unset)")
	}
	if m := findMoto(); m != nil {
		tl.moto = m
	} else {
		missing = append(missing, "moto_server (not on PATH, and python3 cannot import moto.server; moto 5.2 with its server extras provides it)")
	}
	if dir, err := findAWSMirror(); err == nil {
		tl.awsMirror = dir
	} else {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		msg := "the hybrid AWS test needs:\n  - " + strings.Join(missing, "\n  - ")
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "\nCI=true: failing instead of skipping (.ci/run must provide them)")
		}
		t.Skip(msg)
	}
	return tl
}

func findMoto() []string {
	if p, err := exec.LookPath("moto_server"); err == nil {
		return []string{p}
	}
	for _, py := range []string{"python3", "python"} {
		p, err := exec.LookPath(py)
		if err != nil {
			continue
		}
		if exec.Command(p, "-c", "import moto.server").Run() == nil { //nolint:noctx // a short local probe
			return []string{p, "-m", "moto.server"}
		}
	}
	return nil
}

// findAWSMirror returns a filesystem mirror directory with hashicorp/aws
// awsProviderVersion for this platform, in either mirror layout.
func findAWSMirror() (string, error) {
	var candidates []string
	if d := os.Getenv(mirrorEnv); d != "" {
		candidates = append(candidates, d)
	}
	home, _ := os.UserHomeDir()
	if home != "" {
		candidates = append(candidates, filepath.Join(home, ".terraform.d", "plugins"))
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		candidates = append(candidates, filepath.Join(x, "terraform", "plugins"))
	} else if home != "" {
		candidates = append(candidates, filepath.Join(home, ".local", "share", "terraform", "plugins"))
	}
	candidates = append(candidates, "/usr/local/share/terraform/plugins", "/usr/share/terraform/plugins", "/opt/tf-plugins")
	platform := runtime.GOOS + "_" + runtime.GOARCH
	for _, dir := range candidates {
		base := filepath.Join(dir, "registry.terraform.io", "hashicorp", "aws")
		if m, _ := filepath.Glob(filepath.Join(base, awsProviderVersion, platform, "terraform-provider-aws_*")); len(m) > 0 {
			return dir, nil
		}
		if _, err := os.Stat(filepath.Join(base, "terraform-provider-aws_"+awsProviderVersion+"_"+platform+".zip")); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("hashicorp/aws %s for %s in a Terraform filesystem mirror (looked in $%s and %s)",
		awsProviderVersion, platform, mirrorEnv, strings.Join(candidates, ", "))
}

// repoRoot is the module root (the test runs in internal/hybridtest).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

// buildBinaries builds the provider and metal-bmcsim into dir.
func buildBinaries(ctx context.Context, t *testing.T, root, dir string) (provider, bmcsim string) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(os.Getenv("GOROOT"), "bin", "go") // go test sets GOROOT
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", dir+string(filepath.Separator), ".", "./cmd/metal-bmcsim")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "terraform-provider-metal"), filepath.Join(dir, "metal-bmcsim")
}

// freePort returns a loopback port nothing listens on for network ("tcp4"
// or "udp4"). Another process may take it before it is used; the callers
// retry or fail with a clear error.
func freePort(t *testing.T, network string) int {
	t.Helper()
	switch network {
	case "udp4":
		c, err := net.ListenPacket(network, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		return c.LocalAddr().(*net.UDPAddr).Port
	default:
		ln, err := net.Listen(network, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = ln.Close() }()
		return ln.Addr().(*net.TCPAddr).Port
	}
}

// proc is a background process of the test, in a process group of its
// own so that stopping it also stops what it started.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu    sync.Mutex
	b     strings.Builder
	lines chan string // every complete line, when not nil (dropped when full)
	part  string
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	if s.lines != nil {
		s.part += string(p)
		for {
			i := strings.IndexByte(s.part, '\n')
			if i < 0 {
				break
			}
			select {
			case s.lines <- s.part[:i]:
			default:
			}
			s.part = s.part[i+1:]
		}
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProc starts a process whose output is kept (and logged when the
// test fails); it is stopped when the test ends.
func startProc(t *testing.T, name string, lines chan string, argv ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{lines: lines}, done: make(chan struct{})}
	// Not CommandContext: stop() ends it, by its process group id.
	p.cmd = exec.Command(argv[0], argv[1:]...) //nolint:noctx // stopped by stop(), which t.Cleanup runs
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, tail(p.out.String(), 12000))
		}
	})
	return p
}

// stop interrupts the process group and kills it if it has not exited
// after 10 seconds.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return fmt.Errorf("%s exited", p.name)
		}
		return fmt.Errorf("%s exited: %w", p.name, p.err)
	default:
		return nil
	}
}

// poll calls check every interval until it returns nil, the process
// exits, or ctx ends.
func poll(ctx context.Context, p *proc, interval time.Duration, check func(context.Context) error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		if perr := p.exited(); perr != nil {
			return errors.Join(perr, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-p.done:
		case <-tick.C:
		}
	}
}

// startMoto runs moto's server on a free loopback port and returns its URL.
func startMoto(ctx context.Context, t *testing.T, tl tools) string {
	t.Helper()
	var lastErr error
	for range 3 {
		port := freePort(t, "tcp4")
		argv := append(append([]string{}, tl.moto...), "-H", "127.0.0.1", "-p", fmt.Sprint(port))
		p := startProc(t, "moto_server", nil, argv...)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		lastErr = poll(wctx, p, 100*time.Millisecond, func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/moto-api/", nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /moto-api/: %s", resp.Status)
			}
			return nil
		})
		cancel()
		if lastErr == nil {
			return url
		}
		p.stop() // the port was taken: try another
	}
	t.Fatalf("moto_server did not come up: %v", lastErr)
	return ""
}

// simulator is a running metal-bmcsim with simulated machines.
type simulator struct {
	url, caFile, username, password string
	dhcpPort                        int
	proc                            *proc
}

// startSimulator runs metal-bmcsim with the systems, whose machines DHCP
// to the boot service on dhcpPort.
func startSimulator(ctx context.Context, t *testing.T, bin, dir string, dhcpPort int, systems []string) simulator {
	t.Helper()
	s := simulator{caFile: filepath.Join(dir, "bmc-ca.pem"), username: "admin", password: "hybrid-Passw0rd", dhcpPort: dhcpPort}
	lines := make(chan string, 256)
	s.proc = startProc(t, "metal-bmcsim", lines, bin,
		"-listen", "127.0.0.1:0",
		"-system-ids", strings.Join(systems, ","),
		"-netboot-dhcp", fmt.Sprintf("127.0.0.1:%d", dhcpPort),
		"-power-transition", "100ms",
		"-password", s.password,
		"-ca-out", s.caFile)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for s.url == "" || !strings.Contains(s.proc.out.String(), "Stop with Ctrl-C.") {
		select {
		case line := <-lines:
			if _, u, ok := strings.Cut(line, "listening on "); ok {
				s.url = strings.TrimSpace(u)
			}
		case <-s.proc.done:
			t.Fatalf("metal-bmcsim exited: %v\n%s", s.proc.err, s.proc.out.String())
		case <-wctx.Done():
			t.Fatalf("metal-bmcsim did not start: %v\n%s", wctx.Err(), s.proc.out.String())
		}
	}
	return s
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}
