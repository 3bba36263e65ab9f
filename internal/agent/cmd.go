package agent

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

// Main is `terraform-provider-metal agent [flags]`: args are the flags (a
// leading "agent" is skipped). It runs until ctx ends or SIGTERM/SIGINT
// (with -once: one fetch, apply and report) and returns the exit code: 0,
// 1 on error (with -once also when a role failed), 2 for bad usage. Logs
// go to stderr; with -once the report, if any, is printed to stdout as JSON.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "agent" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: terraform-provider-metal agent [flags]")
		fmt.Fprintln(stderr, "Applies the machine's roles from the boot service and reports the results.")
		fs.PrintDefaults()
	}
	configPath := fs.String("config", roles.DefaultConfigPath, "agent configuration file (JSON: server, machine_id, credential)")
	root := fs.String("root", "/", "directory the roles' file paths are relative to")
	statePath := fs.String("state", roles.DefaultStatePath, "state file recording the applied roles")
	once := fs.Bool("once", false, "fetch the desired roles once without waiting, apply, report and exit")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agent takes no arguments, got %q\n", fs.Args())
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ac, err := LoadConfig(*configPath)
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	if fi, err := os.Stat(*configPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the agent configuration holds the machine credential but group or others can read it: chmod 0600 it",
			"path", *configPath, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	cfg := Config{
		Server: ac.Server, MachineID: ac.MachineID, Credential: ac.Credential,
		Root: *root, StatePath: *statePath, Logger: log,
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if !*once {
		if err := Run(ctx, cfg); err != nil {
			log.Error(err.Error())
			return 1
		}
		return 0
	}
	rep, err := Once(ctx, cfg)
	if rep != nil {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintln(stdout, string(b))
	}
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	if rep != nil {
		for _, r := range rep.Results {
			if r.Status != roles.StatusOK {
				return 1
			}
		}
	}
	return 0
}
