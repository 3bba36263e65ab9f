// Command metal-bmcsim runs the Redfish BMC simulator (internal/bmcsim) as a
// standalone server on loopback, for the README quickstart and manual tests.
//
//	metal-bmcsim -listen 127.0.0.1:8443 -vendor dell -systems 2 -ca-out .dev/bmc-ca.pem
//
// It prints the endpoint URL and the system ids, and stops on SIGINT/SIGTERM.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
)

// passwordEnv names the environment variable that can carry the password, so
// it need not appear in the process list.
const passwordEnv = "METAL_BMCSIM_PASSWORD"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "metal-bmcsim:", err)
		os.Exit(2)
	}
}

type config struct {
	listen          string
	allowRemote     bool
	vendor          string
	username        string
	password        string
	systems         int
	useTLS          bool
	caOut           string
	powerTransition time.Duration
	sessionTimeout  time.Duration
	noSessions      bool
	verbose         bool
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("metal-bmcsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vendors := make([]string, 0, len(bmcsim.Vendors()))
	for _, v := range bmcsim.Vendors() {
		vendors = append(vendors, string(v))
	}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8443", "address to listen on (loopback only unless -allow-remote)")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow a non-loopback -listen address")
	fs.StringVar(&c.vendor, "vendor", string(bmcsim.Generic), "BMC flavour: "+strings.Join(vendors, ", "))
	fs.StringVar(&c.username, "username", "admin", "BMC user name")
	fs.StringVar(&c.password, "password", "", "BMC password (default: $"+passwordEnv+", else \"password\")")
	fs.IntVar(&c.systems, "systems", 1, "number of simulated systems")
	fs.BoolVar(&c.useTLS, "tls", true, "serve HTTPS with a fresh self-signed certificate")
	fs.StringVar(&c.caOut, "ca-out", "", "write the certificate (PEM, to trust as CA) to this file")
	fs.DurationVar(&c.powerTransition, "power-transition", 2*time.Second, "how long power changes take")
	fs.DurationVar(&c.sessionTimeout, "session-timeout", 30*time.Minute, "idle session timeout")
	fs.BoolVar(&c.noSessions, "no-sessions", false, "simulate a BMC without SessionService (basic auth only)")
	fs.BoolVar(&c.verbose, "v", false, "log every request (never credentials)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if _, err := bmcsim.ParseVendor(c.vendor); err != nil {
		return c, err
	}
	if c.password == "" {
		c.password = getenv(passwordEnv)
	}
	if c.systems < 1 {
		return c, fmt.Errorf("-systems must be at least 1, got %d", c.systems)
	}
	if c.powerTransition < 0 {
		return c, fmt.Errorf("-power-transition must not be negative")
	}
	if !c.useTLS && c.caOut != "" {
		return c, fmt.Errorf("-ca-out needs -tls")
	}
	if !c.allowRemote {
		if err := checkLoopback(c.listen); err != nil {
			return c, err
		}
	}
	return c, nil
}

// checkLoopback refuses listen addresses that are reachable from other hosts.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-listen %q is not a loopback address; the simulator accepts any client with the configured credentials, pass -allow-remote to expose it anyway", addr)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	systems := make([]bmcsim.SystemSpec, c.systems)
	sim := bmcsim.New(bmcsim.Options{
		Vendor:                bmcsim.Vendor(c.vendor),
		Username:              c.username,
		Password:              c.password,
		Systems:               systems,
		PowerTransition:       c.powerTransition,
		DisableSessionService: c.noSessions,
		SessionTimeout:        c.sessionTimeout,
		Logger:                logger,
	})

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", c.listen)
	if err != nil {
		return err
	}
	scheme := "http"
	if c.useTLS {
		scheme = "https"
		cert, caPEM, err := bmcsim.SelfSignedCert(365 * 24 * time.Hour)
		if err != nil {
			_ = ln.Close()
			return err
		}
		if c.caOut != "" {
			if err := writeAtomic(c.caOut, caPEM); err != nil {
				_ = ln.Close()
				return fmt.Errorf("writing -ca-out: %w", err)
			}
		}
		ln = tls.NewListener(ln, bmcsim.TLSConfig(cert))
	}

	say := func(format string, a ...any) { _, _ = fmt.Fprintf(stdout, format, a...) }
	url := scheme + "://" + ln.Addr().String()
	say("Redfish BMC simulator (%s) listening on %s\n", c.vendor, url)
	if c.caOut != "" {
		say("  CA certificate: %s\n", c.caOut)
	}
	pw := "set via -password or $" + passwordEnv
	if c.password == "" {
		pw = `"password" (default)`
	}
	say("  user: %s, password: %s\n", c.username, pw)
	for _, id := range sim.SystemIDs() {
		say("  system: %s/redfish/v1/Systems/%s\n", url, id)
	}
	say("Stop with Ctrl-C.\n")

	err = sim.Serve(ctx, ln)
	say("simulator stopped\n")
	return err
}

// writeAtomic writes data so that readers never see a partial file (the
// quickstart polls for it).
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".bmc-ca-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(f.Name()) }() // no-op after the rename
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
