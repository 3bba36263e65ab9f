// Command metal-bmcsim runs the Redfish BMC simulator (internal/bmcsim) as a
// standalone server on loopback, for the README quickstart and manual tests.
//
//	metal-bmcsim -listen 127.0.0.1:8443 -vendor dell -systems 2 -ca-out .dev/bmc-ca.pem
//
// With -netboot-dhcp, simulated network-booting machines (internal/machinesim)
// sit behind the systems, so that the provider's boot service can install
// them over loopback without VMs or root:
//
//	metal-bmcsim -system-ids node1,node2,node3 -netboot-dhcp 127.0.0.1:6767
//
// A boot after a one-time "Pxe" override then DHCPs that address (the
// provider's boot_service.dhcp.listen), fetches its iPXE script, kernel,
// initrd and install config, and reports "provisioned"; other boots start
// what is installed on the machine's disk. GET /simulator/machines (with the
// BMC credentials) shows each machine's boots and installation as JSON.
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
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/machinesim"
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
	systemIDs       []string

	// Simulated network-booting machines (nil netbootDHCP: none).
	netbootDHCP        *net.UDPAddr
	netbootDHCPTimeout time.Duration
	netbootTimeout     time.Duration
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
	var systemIDs, netbootDHCP string
	fs.StringVar(&systemIDs, "system-ids", "", "comma-separated system ids (sets -systems; NIC MACs derive from the ids, so distinct ids give distinct MACs)")
	fs.StringVar(&netbootDHCP, "netboot-dhcp", "", "simulate network-booting machines that DHCP to this boot service address (host:port, the provider's boot_service.dhcp.listen; loopback only unless -allow-remote)")
	fs.DurationVar(&c.netbootDHCPTimeout, "netboot-dhcp-timeout", time.Second, "how long a simulated machine waits for one DHCP answer (it tries three times)")
	fs.DurationVar(&c.netbootTimeout, "netboot-timeout", 2*time.Minute, "how long one simulated network boot may take")
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
	if systemIDs != "" {
		seen := map[string]bool{}
		for id := range strings.SplitSeq(systemIDs, ",") {
			id = strings.TrimSpace(id)
			if id == "" || strings.ContainsAny(id, "/?#% ") {
				return c, fmt.Errorf("-system-ids: %q is not a usable system id (non-empty, no '/', '?', '#', '%%' or spaces)", id)
			}
			if seen[id] {
				return c, fmt.Errorf("-system-ids: %q appears twice", id)
			}
			seen[id] = true
			c.systemIDs = append(c.systemIDs, id)
		}
		c.systems = len(c.systemIDs)
	}
	if c.systems < 1 {
		return c, fmt.Errorf("-systems must be at least 1, got %d", c.systems)
	}
	if netbootDHCP != "" {
		addr, err := parseDHCPAddr(netbootDHCP, c.allowRemote)
		if err != nil {
			return c, err
		}
		c.netbootDHCP = addr
	}
	if c.netbootDHCPTimeout <= 0 || c.netbootTimeout <= 0 {
		return c, fmt.Errorf("-netboot-dhcp-timeout and -netboot-timeout must be positive")
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

// parseDHCPAddr parses -netboot-dhcp: an IPv4 host and a port, loopback
// unless remote is allowed (the machines would send DHCP onto the network).
func parseDHCPAddr(s string, allowRemote bool) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, fmt.Errorf("-netboot-dhcp %q: %w", s, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return nil, fmt.Errorf("-netboot-dhcp %q: the host must be an IPv4 address", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("-netboot-dhcp %q: bad port", s)
	}
	if !ip.IsLoopback() && !allowRemote {
		return nil, fmt.Errorf("-netboot-dhcp %q is not a loopback address; pass -allow-remote to send the simulated machines' DHCP there anyway", s)
	}
	return &net.UDPAddr{IP: ip, Port: p}, nil
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
	for i, id := range c.systemIDs {
		systems[i].ID = id
	}
	var fleet *machinesim.Fleet
	if c.netbootDHCP != nil {
		fleet = machinesim.NewFleet(machinesim.FleetConfig{
			DHCPServer:  c.netbootDHCP,
			DHCPTimeout: c.netbootDHCPTimeout,
			BootTimeout: c.netbootTimeout,
			Logger:      logger,
		})
		defer fleet.Close()
		for i := range systems {
			systems[i].OnBoot = fleet.OnBoot
		}
	}
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
	var handler http.Handler = sim
	if fleet != nil {
		say("  network boot: simulated machines DHCP to %s; their state: %s%s\n", c.netbootDHCP, url, machinesPath)
		mux := http.NewServeMux()
		mux.Handle("/", sim)
		user, password := c.username, c.password
		if user == "" {
			user = "admin" // bmcsim's defaults
		}
		if password == "" {
			password = "password"
		}
		mux.Handle(machinesPath, machinesHandler(sim, fleet, user, password))
		handler = mux
	}
	say("Stop with Ctrl-C.\n")

	if fleet == nil {
		err = sim.Serve(ctx, ln)
	} else {
		err = serve(ctx, ln, handler, logger)
	}
	say("simulator stopped\n")
	return err
}

// serve is bmcsim.Simulator.Serve with another handler: HTTP/1.1 only, and
// closed (not shut down) when ctx ends.
func serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
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
