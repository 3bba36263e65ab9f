package redfish

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/stmcginnis/gofish/schemas"
)

// PowerOptions tune SetPower.
type PowerOptions struct {
	// GracefulTimeout bounds GracefulShutdown before ForceOff (default 2m).
	GracefulTimeout time.Duration
	// ForceOff skips the graceful attempt.
	ForceOff bool
}

// SetPower brings the system to want (PowerOn or PowerOff) and waits until
// the BMC reports it. It sends no reset when the system is already there.
// changed reports whether a reset was requested.
func (c *Client) SetPower(want PowerState, opts PowerOptions) (changed bool, err error) {
	if want != PowerOn && want != PowerOff {
		return false, fmt.Errorf("power state %q is not On or Off", want)
	}
	p, err := c.SystemPath()
	if err != nil {
		return false, err
	}
	snap, err := c.fetchSystem(p, "")
	if err != nil {
		return false, err
	}
	return c.setPower(p, snap, want, opts)
}

func (c *Client) setPower(p string, snap *snapshot, want PowerState, opts PowerOptions) (bool, error) {
	switch state := snap.power(); {
	case state == want:
		return false, nil
	case want == PowerOn && state == PowerPoweringOn, want == PowerOff && state == PowerPoweringOff:
		return false, c.waitPower(p, want)
	case want == PowerOn && state == PowerPoweringOff:
		// Pressing On mid-shutdown is refused by most BMCs: let it finish.
		if err := c.waitPower(p, PowerOff); err != nil {
			return false, err
		}
	case want == PowerOff && state == PowerPoweringOn:
		if err := c.waitPower(p, PowerOn); err != nil {
			return false, err
		}
	}
	if want == PowerOn {
		if err := c.reset(snap, schemas.OnResetType, schemas.PushPowerButtonResetType); err != nil {
			return true, err
		}
		return true, c.waitPower(p, PowerOn)
	}
	return true, c.powerOff(p, snap, opts)
}

func (c *Client) powerOff(p string, snap *snapshot, opts PowerOptions) error {
	if !opts.ForceOff && c.allows(snap, schemas.GracefulShutdownResetType) {
		if err := c.reset(snap, schemas.GracefulShutdownResetType); err != nil {
			return err
		}
		timeout := opts.GracefulTimeout
		if timeout <= 0 {
			timeout = 2 * time.Minute
		}
		err := c.waitPowerFor(p, PowerOff, timeout)
		if err == nil || !errors.Is(err, errGraceExpired) {
			return err
		}
		c.s.log.InfoContext(c.ctx, "graceful shutdown did not finish in time; forcing off", "timeout", timeout)
	}
	if err := c.reset(snap, schemas.ForceOffResetType); err != nil {
		return err
	}
	return c.waitPower(p, PowerOff)
}

// Restart reboots a running system (ForceRestart, else PowerCycle) or
// powers on a stopped one, so the next boot happens now either way.
func (c *Client) Restart() error {
	p, err := c.SystemPath()
	if err != nil {
		return err
	}
	snap, err := c.fetchSystem(p, "")
	if err != nil {
		return err
	}
	return c.restart(p, snap)
}

func (c *Client) restart(p string, snap *snapshot) error {
	switch snap.power() {
	case PowerOff, PowerPoweringOff:
		_, err := c.setPower(p, snap, PowerOn, PowerOptions{})
		return err
	}
	return c.reset(snap, schemas.ForceRestartResetType, schemas.PowerCycleResetType, schemas.GracefulRestartResetType)
}

// reset posts the first of types the system allows.
func (c *Client) reset(snap *snapshot, types ...schemas.ResetType) error {
	choice := types[0]
	for _, t := range types {
		if c.allows(snap, t) {
			choice = t
			break
		}
	}
	if !c.allows(snap, choice) {
		return &opError{kind: ErrUnsupported, msg: fmt.Sprintf("system %s allows none of the reset types %v", snap.doc.ID, types)}
	}
	c.s.log.DebugContext(c.ctx, "resetting system", "system_id", snap.doc.ID, "reset_type", string(choice))
	if _, err := snap.sys.Reset(choice); err != nil {
		return fmt.Errorf("reset %s of system %s: %w", choice, snap.doc.ID, err)
	}
	return nil
}

// allows is true when the BMC lists t, or lists nothing (then we try).
func (c *Client) allows(snap *snapshot, t schemas.ResetType) bool {
	allowed, err := snap.sys.GetSupportedResetTypes()
	if err != nil || len(allowed) == 0 {
		return true
	}
	return slices.Contains(allowed, t)
}

var errGraceExpired = errors.New("graceful wait expired")

func (c *Client) waitPower(p string, want PowerState) error {
	return c.waitPowerFor(p, want, 0)
}

// waitPowerFor polls PowerState under the client's context, at most for
// limit when limit > 0 (then expiry is errGraceExpired, not a failure).
func (c *Client) waitPowerFor(p string, want PowerState, limit time.Duration) error {
	var deadline <-chan time.Time
	if limit > 0 {
		t := time.NewTimer(limit)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(c.s.cfg.PollInterval)
	defer tick.Stop()
	last := PowerState("unknown")
	timedOut := func() error {
		return &opError{kind: ErrTimeout, msg: fmt.Sprintf("waiting for system %s to be %s (last seen %s)", path.Base(p), want, last), err: c.ctx.Err()}
	}
	for {
		snap, err := c.fetchSystem(p, "")
		if err != nil {
			if c.ctx.Err() != nil {
				return timedOut()
			}
			return err
		}
		last = snap.power()
		if last == want {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline:
			return errGraceExpired
		case <-c.ctx.Done():
			return timedOut()
		}
	}
}
