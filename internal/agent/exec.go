package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// tail keeps the last roles.MaxOutput bytes written to it.
type tail struct {
	mu      sync.Mutex
	buf     []byte
	dropped bool
}

const truncatedMarker = "[output truncated]\n"

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*roles.MaxOutput {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-roles.MaxOutput:]...)
		t.dropped = true
	}
	return len(p), nil
}

// String is the tail, at most roles.MaxOutput bytes of valid UTF-8.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if t.dropped || len(b) > roles.MaxOutput {
		if keep := roles.MaxOutput - len(truncatedMarker); len(b) > keep {
			b = b[len(b)-keep:]
		}
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
		return truncatedMarker + strings.ToValidUTF8(string(b), "?")
	}
	return strings.ToValidUTF8(string(b), "?")
}

// note writes a line of the agent's own (an error, a command) to the output.
func (t *tail) note(format string, args ...any) {
	t.mu.Lock()
	needNL := len(t.buf) > 0 && t.buf[len(t.buf)-1] != '\n'
	t.mu.Unlock()
	if needNL {
		_, _ = t.Write([]byte("\n"))
	}
	_, _ = fmt.Fprintf(t, format+"\n", args...)
}

// waitDelay bounds how long a finished script's leftover children (a
// daemon it started in the background) may hold its output open.
const waitDelay = 5 * time.Second

// run runs cmd with combined output to out. A script just written may
// briefly be busy (ETXTBSY) while another goroutine forks: starting is
// retried a few times.
func run(ctx context.Context, cmd *exec.Cmd, out *tail) error {
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = waitDelay
	setProcessGroup(cmd)
	var err error
	for attempt := 0; ; attempt++ {
		if err = cmd.Start(); err == nil || !isTextBusy(err) || attempt == 5 {
			break
		}
		if !sleep(ctx, time.Duration(attempt+1)*10*time.Millisecond) {
			return ctx.Err()
		}
		c := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
		c.Dir, c.Env, c.Stdout, c.Stderr, c.WaitDelay = cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr, cmd.WaitDelay
		setProcessGroup(c)
		cmd = c
	}
	if err != nil {
		return err
	}
	return cmd.Wait()
}

// scriptEnv is the environment of a role's scripts.
func (ap *applier) scriptEnv(role string) []string {
	return append(os.Environ(),
		"METAL_ROLE="+role,
		"METAL_ROOT="+ap.cfg.Root,
		"METAL_MACHINE_ID="+ap.cfg.MachineID,
		"DEBIAN_FRONTEND=noninteractive",
	)
}

// runScript writes script to a private temporary file and runs it: directly
// (mode 0700) when it starts with #!, else with the configured shell. The
// working directory is Root; stdin is /dev/null.
func (ap *applier) runScript(ctx context.Context, role, script string, out *tail) error {
	dir, err := os.MkdirTemp(ap.scratch, "metal-agent-script-")
	if err != nil {
		return fmt.Errorf("script file: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	p := filepath.Join(dir, "script")
	if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
		return fmt.Errorf("script file: %w", err)
	}
	var cmd *exec.Cmd
	if strings.HasPrefix(script, "#!") {
		cmd = exec.CommandContext(ctx, p)
	} else {
		cmd = exec.CommandContext(ctx, ap.cfg.Shell, p)
	}
	cmd.Dir = ap.cfg.Root
	cmd.Env = ap.scriptEnv(role)
	return run(ctx, cmd, out)
}

// packageManager is the resolved package installer.
type packageManager struct {
	path, kind string
}

var knownManagers = []string{"apt-get", "dnf", "yum", "zypper", "apk"}

func findPackageManager(configured string) (packageManager, error) {
	if configured != "" {
		p, err := exec.LookPath(configured)
		if err != nil {
			return packageManager{}, fmt.Errorf("package manager %s: %w", configured, err)
		}
		kind := filepath.Base(p)
		for _, k := range knownManagers {
			if kind == k {
				return packageManager{path: p, kind: kind}, nil
			}
		}
		return packageManager{}, fmt.Errorf("package manager %s: unsupported (want one of %s)", configured, strings.Join(knownManagers, ", "))
	}
	for _, k := range knownManagers {
		if p, err := exec.LookPath(k); err == nil {
			return packageManager{path: p, kind: k}, nil
		}
	}
	return packageManager{}, fmt.Errorf("no package manager found on PATH (looked for %s)", strings.Join(knownManagers, ", "))
}

// installArgs is the non-interactive install command line of each kind.
func (pm packageManager) installArgs(pkgs []string) []string {
	switch pm.kind {
	case "apt-get":
		// Files a role wrote before its packages (the order cloud-init uses)
		// win over the packages' default configuration files.
		return append([]string{"-q", "-y",
			"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
			"install"}, pkgs...)
	case "dnf", "yum":
		return append([]string{"install", "-y"}, pkgs...)
	case "zypper":
		return append([]string{"--non-interactive", "install"}, pkgs...)
	default: // apk
		return append([]string{"add", "--no-progress"}, pkgs...)
	}
}

func (ap *applier) runCommand(ctx context.Context, out *tail, name string, args ...string) error {
	out.note("+ %s %s", filepath.Base(name), strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = ap.cfg.Root
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return run(ctx, cmd, out)
}

// validatePackages refuses names a package manager would take for options.
func validatePackages(pkgs []string) error {
	for _, p := range pkgs {
		if p == "" || strings.HasPrefix(p, "-") || strings.ContainsAny(p, " \t\n\x00") {
			return fmt.Errorf("package name %q is not valid", p)
		}
	}
	return nil
}

// installPackages installs pkgs with the package manager. apt-get, whose
// package lists are often stale on a fresh install, is retried once after
// `apt-get update`.
func (ap *applier) installPackages(ctx context.Context, pkgs []string, out *tail) error {
	if err := validatePackages(pkgs); err != nil {
		return err
	}
	if !ap.pmResolved {
		ap.pm, ap.pmErr = findPackageManager(ap.cfg.PackageManager)
		ap.pmResolved = true
	}
	if ap.pmErr != nil {
		return fmt.Errorf("installing %s: %w", strings.Join(pkgs, ", "), ap.pmErr)
	}
	err := ap.runCommand(ctx, out, ap.pm.path, ap.pm.installArgs(pkgs)...)
	if err != nil && ap.pm.kind == "apt-get" && ctx.Err() == nil {
		if uerr := ap.runCommand(ctx, out, ap.pm.path, "-q", "update"); uerr == nil {
			err = ap.runCommand(ctx, out, ap.pm.path, ap.pm.installArgs(pkgs)...)
		}
	}
	if err != nil {
		return fmt.Errorf("installing %s with %s: %w", strings.Join(pkgs, ", "), ap.pm.kind, err)
	}
	return nil
}

// exitText describes a command's failure.
func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.String()
	}
	return err.Error()
}
