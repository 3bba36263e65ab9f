package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/redfish"
)

// Config tunes the embedded engine.
type Config struct {
	Logger *slog.Logger
	// MaxConcurrentBMCOperations caps BMC operations in flight (default 16).
	MaxConcurrentBMCOperations int
	// PollInterval is how often BMC state is re-read while waiting (default 2s).
	PollInterval time.Duration
	Retry        redfish.RetryPolicy
	// Boot configures the boot service; nil means provisioning is off.
	Boot *BootConfig
}

// Embedded runs every operation in this process.
type Embedded struct {
	cfg     Config
	log     *slog.Logger
	limiter *redfish.Limiter
	// requests counts BMC HTTP requests across operations, for benchmarks.
	requests func(int64)

	bootMu sync.Mutex
	boot   *bootService
}

var _ Engine = (*Embedded)(nil)

// NewEmbedded returns an in-process engine.
func NewEmbedded(cfg Config) *Embedded {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Embedded{cfg: cfg, log: log, limiter: redfish.NewLimiter(cfg.MaxConcurrentBMCOperations)}
}

// withBMC opens a session for one operation and always logs it out.
func (e *Embedded) withBMC(ctx context.Context, bmc BMC, mutate bool, fn func(*redfish.Client) error) (err error) {
	ep, err := redfish.ParseEndpoint(bmc.Endpoint)
	if err != nil {
		return err
	}
	release, err := e.limiter.Acquire(ctx, ep.Host, mutate)
	if err != nil {
		return err
	}
	defer release()
	c, err := redfish.Open(ctx, redfish.Config{
		Endpoint:      bmc.Endpoint,
		Username:      bmc.Username,
		Password:      bmc.Password,
		SystemID:      bmc.SystemID,
		Insecure:      bmc.Insecure,
		CACertificate: bmc.CACertificate,
		Logger:        e.log,
		Retry:         e.cfg.Retry,
		PollInterval:  e.cfg.PollInterval,
	})
	if err != nil {
		return err
	}
	defer func() {
		cerr := c.Close()
		if e.requests != nil {
			e.requests(c.Requests())
		}
		if cerr != nil {
			e.log.WarnContext(ctx, "BMC logout failed", "bmc", ep.Host, "error", cerr.Error())
		}
	}()
	return fn(c)
}

func (e *Embedded) Systems(ctx context.Context, bmc BMC) (out []SystemSummary, err error) {
	err = e.withBMC(ctx, bmc, false, func(c *redfish.Client) error {
		out, err = c.Systems()
		return err
	})
	return out, err
}

func (e *Embedded) Machine(ctx context.Context, bmc BMC) (inv *Inventory, err error) {
	err = e.withBMC(ctx, bmc, false, func(c *redfish.Client) error {
		inv, err = c.Inventory()
		return err
	})
	return inv, err
}

func (e *Embedded) SetPower(ctx context.Context, bmc BMC, want PowerState, opts PowerOptions) (inv *Inventory, err error) {
	err = e.withBMC(ctx, bmc, true, func(c *redfish.Client) error {
		if _, err := c.SetPower(want, opts); err != nil {
			return err
		}
		inv, err = c.Inventory()
		return err
	})
	return inv, err
}

func (e *Embedded) BootOnce(ctx context.Context, bmc BMC, override BootOverride) error {
	if override.Target == "" {
		return errors.New("boot override has no target")
	}
	return e.withBMC(ctx, bmc, true, func(c *redfish.Client) error {
		return c.BootOnceAndRestart(override)
	})
}

// Close stops the boot service if it was started.
func (e *Embedded) Close() error {
	e.bootMu.Lock()
	defer e.bootMu.Unlock()
	if e.boot == nil {
		return nil
	}
	err := e.boot.Close()
	e.boot = nil
	return err
}
