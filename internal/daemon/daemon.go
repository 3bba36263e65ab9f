// Package daemon is the `serve` and `token` commands of the provider
// binary: the boot service as a long-lived site service behind the API of
// internal/api.
package daemon

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
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/api"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// Main runs `serve` or `token` (args[0]) and returns the exit code.
func Main(args []string, stdout, stderr io.Writer, version string) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: terraform-provider-metal serve|token ...")
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		err = Serve(ctx, args[1:], stdout, stderr, version)
	case "token":
		err = Token(args[1:], stdout, stderr)
	default:
		err = fmt.Errorf("unknown command %q: want serve or token", args[0])
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "terraform-provider-metal:", err)
		return 1
	}
	return 0
}

// Serve runs the daemon until ctx ends (SIGTERM), then shuts down
// gracefully: unfinished operations stay in the store and resume at the
// next start.
func Serve(ctx context.Context, args []string, stdout, stderr io.Writer, version string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration file (see the running-the-boot-service guide)")
	listen := fs.String("listen", "", "host:port of the HTTPS API (overrides listen; default "+DefaultListen+")")
	stateDir := fs.String("state-dir", "", "state directory (overrides state_dir; default "+DefaultStateDir+")")
	address := fs.String("address", "", "this host's IPv4 address on the provisioning network (overrides boot.address)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate of the API (overrides tls.cert)")
	tlsKey := fs.String("tls-key", "", "PEM private key of the API (overrides tls.key)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	cfg, err := LoadConfig(*configPath)
	if err != nil {
		return err
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.Listen, *listen)
	set(&cfg.StateDir, *stateDir)
	set(&cfg.Boot.Address, *address)
	set(&cfg.TLS.Cert, *tlsCert)
	set(&cfg.TLS.Key, *tlsKey)
	engCfg, err := cfg.engineConfig()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(orDefault(cfg.LogLevel, "info"))); err != nil {
		return fmt.Errorf("log_level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	engCfg.Logger = log

	cert, generated, err := loadCertificate(cfg, append([]string{cfg.Boot.Address}, cfg.TLS.Hosts...))
	if err != nil {
		return err
	}
	eng := engine.NewEmbedded(engCfg)
	defer func() { _ = eng.Close() }()
	if err := eng.ServeBoot(); err != nil {
		return err
	}

	tokens := api.OpenTokens(filepath.Join(cfg.StateDir, api.TokensFile))
	if list, err := tokens.List(); err != nil {
		return err
	} else if len(list) == 0 {
		log.Warn("no API tokens exist yet: create one with `terraform-provider-metal token create --state-dir " + cfg.StateDir + " <name>`")
	}
	srv := api.NewServer(eng, api.Config{
		Tokens: tokens, Logger: log.With("subsystem", "api"), ServerVersion: version, Boot: engCfg.Boot,
	})
	defer srv.Close()

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("API listen on %s: %w", cfg.Listen, err)
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	fp := api.Fingerprint(cert.Certificate[0])
	origin := "configured"
	if generated {
		origin = "self-signed, " + filepath.Join(cfg.StateDir, selfSignedCert)
	}
	fmt.Fprintf(stdout, "metal boot service %s: API listening on https://%s\n", version, ln.Addr())
	fmt.Fprintf(stdout, "TLS certificate (%s) SHA-256 fingerprint: %s\n", origin, fp)
	log.Info("API started", "listen", ln.Addr().String(), "tls_fingerprint", fp, "state_dir", cfg.StateDir)

	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Long polls end with the server: clients reconnect after the restart.
	srv.Close()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	return nil
}

// Token manages API tokens: create|rotate|revoke|list.
func Token(args []string, stdout, stderr io.Writer) error {
	usage := "usage: terraform-provider-metal token create|rotate|revoke|list [--state-dir DIR | --config FILE] [NAME]"
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd := args[0]
	fs := flag.NewFlagSet("token "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", "", "the daemon's state directory (default: state_dir of --config, else "+DefaultStateDir+")")
	configPath := fs.String("config", "", "the daemon's YAML configuration, for its state_dir")
	// Flags may come before or after the name.
	var pos []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	dir := *stateDir
	if dir == "" {
		cfg, err := LoadConfig(*configPath)
		if err != nil {
			return err
		}
		dir = orDefault(cfg.StateDir, DefaultStateDir)
	}
	tokens := api.OpenTokens(filepath.Join(dir, api.TokensFile))
	name := func() (string, error) {
		if len(pos) != 1 {
			return "", fmt.Errorf("token %s needs exactly one NAME\n%s", cmd, usage)
		}
		return pos[0], nil
	}
	switch cmd {
	case "create", "rotate":
		n, err := name()
		if err != nil {
			return err
		}
		var tok string
		if cmd == "create" {
			tok, err = tokens.Create(n)
		} else {
			tok, err = tokens.Rotate(n)
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		fmt.Fprintf(stderr, "token %q %sd; it is shown only this once (the daemon keeps its SHA-256 in %s)\n", n, cmd, tokens.Path())
		return nil
	case "revoke":
		n, err := name()
		if err != nil {
			return err
		}
		if err := tokens.Revoke(n); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "token %q revoked\n", n)
		return nil
	case "list":
		list, err := tokens.List()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-24s %-20s %s\n", "NAME", "CREATED", "SHA256")
		for _, t := range list {
			fmt.Fprintf(stdout, "%-24s %-20s %s…\n", t.Name, t.CreatedAt.Format(time.DateTime), t.SHA256[:12])
		}
		return nil
	}
	return fmt.Errorf("unknown token command %q\n%s", cmd, usage)
}
