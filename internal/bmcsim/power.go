package bmcsim

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Redfish PowerState values.
const (
	PowerOn          = "On"
	PowerOff         = "Off"
	PowerPoweringOn  = "PoweringOn"
	PowerPoweringOff = "PoweringOff"
)

// PowerStatus is a snapshot of one system's power as seen by its backend.
type PowerStatus struct {
	// State is one of PowerOn, PowerOff, PowerPoweringOn, PowerPoweringOff.
	State string
	// InPOST is true while the host is powered but still in firmware
	// (power-on self test), including during a warm restart when State
	// stays PowerOn.
	InPOST bool
	// Boots counts completed host boots. The simulator consumes a one-time
	// boot override whenever it sees this number change.
	Boots uint64
}

// PowerBackend drives the power of one simulated system. The default is an
// in-memory, time-based model; a backend that starts and stops a real VM can
// be plugged in through SystemSpec.Power.
//
// The simulator validates a ResetType against the vendor's allowable values
// and power-state rules before calling Reset, so a backend only has to carry
// it out. Implementations must be safe for concurrent use. Reset is called
// with the simulator's state lock held, so it should return promptly and let
// the transition proceed in the background (reported through Status).
type PowerBackend interface {
	Status() PowerStatus
	Reset(ctx context.Context, resetType string) error
	// SetPower is the out-of-band power button: true powers on, false
	// removes power.
	SetPower(on bool)
}

// BootOverride is a system's boot source override as a power backend is
// told it (see BootOverrideAware).
type BootOverride struct {
	// Target is the BootSourceOverrideTarget ("Pxe", "Hdd", "UefiHttp",
	// ...), or "" when no override is enabled: the normal boot order.
	Target string
	// Enabled is "Once" or "Continuous", or "" when no override is enabled.
	Enabled string
	// Mode is the firmware mode the boot asks for, "UEFI" or "Legacy": the
	// BootSourceOverrideMode, else SystemSpec.BootMode.
	Mode string
}

// BootOverrideAware is an optional PowerBackend extension for backends that
// pick the boot device themselves, such as one that starts a VM with a boot
// order. The simulator calls SetBootOverride with the system's current
// override immediately before every Reset and SetPower, so the backend
// knows what the boot that request starts must follow. It is called with
// the simulator's state lock held: it must return promptly and must not
// call back into the simulator.
//
// A Once override is consumed by the simulator when the backend's Boots
// counter next changes, as for any backend; a backend that boots the VM
// more than once per request (a guest-initiated reboot) should follow a
// Once override for the first of those boots only.
type BootOverrideAware interface {
	SetBootOverride(BootOverride)
}

// phase is one timed step of a power sequence.
type phase struct {
	state  string
	inPOST bool
	until  time.Time
	boot   bool // a host boot completes at the end of this phase
}

// step describes a phase before it is placed on the timeline.
type step struct {
	state  string
	inPOST bool
	d      time.Duration
	boot   bool
}

// memoryPower is the default PowerBackend. It needs no goroutines: pending
// phases carry deadlines and are settled lazily whenever Status is read.
type memoryPower struct {
	transition time.Duration
	graceful   time.Duration // extra time the OS takes to shut down gracefully
	now        func() time.Time

	mu      sync.Mutex
	settled string  // state once all phases have elapsed
	phases  []phase // pending, in order
	boots   uint64
}

func newMemoryPower(on bool, transition, graceful time.Duration) *memoryPower {
	m := &memoryPower{transition: transition, graceful: graceful, now: time.Now, settled: PowerOff}
	if on {
		m.settled = PowerOn
	}
	return m
}

// advance drops elapsed phases, counting boots. Caller holds m.mu.
func (m *memoryPower) advance(now time.Time) {
	for len(m.phases) > 0 && !now.Before(m.phases[0].until) {
		if m.phases[0].boot {
			m.boots++
		}
		m.phases = m.phases[1:]
	}
}

func (m *memoryPower) statusLocked(now time.Time) PowerStatus {
	m.advance(now)
	if len(m.phases) > 0 {
		p := m.phases[0]
		return PowerStatus{State: p.state, InPOST: p.inPOST, Boots: m.boots}
	}
	return PowerStatus{State: m.settled, Boots: m.boots}
}

func (m *memoryPower) Status() PowerStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.statusLocked(m.now())
}

// run replaces any pending sequence with steps ending in final. Zero-length
// steps take effect at once. Caller holds m.mu.
func (m *memoryPower) run(now time.Time, final string, steps ...step) {
	m.phases = m.phases[:0]
	at := now
	for _, s := range steps {
		if s.d <= 0 {
			if s.boot {
				m.boots++
			}
			continue
		}
		at = at.Add(s.d)
		m.phases = append(m.phases, phase{state: s.state, inPOST: s.inPOST, until: at, boot: s.boot})
	}
	m.settled = final
}

func isOnState(state string) bool { return state == PowerOn || state == PowerPoweringOn }

func (m *memoryPower) Reset(_ context.Context, resetType string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	state := m.statusLocked(now).State
	on := isOnState(state)
	t := m.transition
	powerOn := func() { m.run(now, PowerOn, step{state: PowerPoweringOn, inPOST: true, d: t, boot: true}) }
	shutdown := func() {
		// The OS shuts down (power still on), then power goes off.
		m.run(now, PowerOff, step{state: PowerOn, d: m.graceful}, step{state: PowerPoweringOff, d: t})
	}
	switch resetType {
	case "On", "ForceOn":
		if !on {
			powerOn()
		}
	case "ForceOff":
		switch {
		case on:
			m.run(now, PowerOff, step{state: PowerPoweringOff, d: t})
		case state == PowerPoweringOff:
			// Already losing power: cancel whatever was to follow (a power
			// cycle's power-on) and let the current phase finish.
			m.phases = m.phases[:1]
			m.settled = PowerOff
		}
	case "GracefulShutdown":
		if on {
			shutdown()
		}
	case "PushPowerButton":
		// A short press: ACPI shutdown when on, power on when off.
		if on {
			shutdown()
		} else {
			powerOn()
		}
	case "ForceRestart":
		if !on {
			powerOn()
			break
		}
		// Warm reset: power stays on, the host goes back through POST.
		m.run(now, PowerOn, step{state: PowerOn, inPOST: true, d: t, boot: true})
	case "GracefulRestart":
		if !on {
			powerOn()
			break
		}
		m.run(now, PowerOn, step{state: PowerOn, d: m.graceful}, step{state: PowerOn, inPOST: true, d: t, boot: true})
	case "PowerCycle":
		if !on {
			powerOn()
			break
		}
		m.run(now, PowerOn, step{state: PowerPoweringOff, d: t}, step{state: PowerPoweringOn, inPOST: true, d: t, boot: true})
	case "Nmi":
		// A diagnostic interrupt; power is unaffected.
	default:
		return fmt.Errorf("bmcsim: unsupported reset type %q", resetType)
	}
	return nil
}

// untilBoot implements untilBooter. Elapsed phases are not advanced here:
// the boots they complete are counted by the next Status.
func (m *memoryPower) untilBoot() (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for _, p := range m.phases {
		if p.boot {
			return max(p.until.Sub(now), 0), true
		}
	}
	return 0, false
}

func (m *memoryPower) SetPower(on bool) {
	rt := "ForceOff"
	if on {
		rt = "On"
	}
	_ = m.Reset(context.Background(), rt)
}
