package machinesim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/iana"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
)

// ErrFleetClosed is the error of boots that happen after Fleet.Close.
var ErrFleetClosed = errors.New("machinesim: fleet closed")

// FleetConfig is what every machine of a Fleet shares. The fields fill the
// Machine fields of the same name when those are zero.
type FleetConfig struct {
	DHCPServer  *net.UDPAddr
	ClientPort  int
	DHCPTimeout time.Duration
	HTTPClient  *http.Client
	Sleep       func(ctx context.Context, d time.Duration) error
	// BootTimeout bounds one boot (default 2 minutes).
	BootTimeout time.Duration
	Logger      *slog.Logger
}

// BootRecord is one boot of one system.
type BootRecord struct {
	Event bmcsim.BootEvent
	// Result is never nil.
	Result *Result
	// Err is the boot's error (NetBoot's, ErrNoOS, an unsupported target).
	Err        error
	Start, End time.Time
}

// Fleet plays the machines behind a bmcsim.Simulator. Its OnBoot method is
// the systems' SystemSpec.OnBoot:
//
//   - a boot that followed a "Pxe" override runs Machine.NetBoot;
//   - a boot with no override ("" target) or "Hdd" boots the disk
//     (Result.BootedFrom "disk"; ErrNoOS when nothing is installed);
//   - other targets are recorded as errors (not simulated).
//
// The machine of a system is the one registered with Add or, on its first
// boot, a new one on the system's first NIC with an empty disk. Each boot
// uses the firmware mode of the BootEvent: Legacy boots as BIOS
// (iana.INTEL_X86PC), UEFI as the machine's EFI Arch (default
// iana.EFI_X86_64). The disk persists across boots. Every boot is recorded
// (errors too; nothing panics) for the test to wait on.
type Fleet struct {
	cfg    FleetConfig
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	machines map[string]*Machine
	records  []BootRecord
	changed  chan struct{} // closed and replaced on every record
	closed   bool
}

// NewFleet returns an empty fleet. Close it when the test ends.
func NewFleet(cfg FleetConfig) *Fleet {
	if cfg.BootTimeout <= 0 {
		cfg.BootTimeout = 2 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Fleet{cfg: cfg, log: log, ctx: ctx, cancel: cancel, machines: map[string]*Machine{}, changed: make(chan struct{})}
}

// Add registers the machine behind a system (replacing any earlier one).
// Its MAC may be left nil to use the system's first NIC; a nil Disk gets an
// empty one.
func (f *Fleet) Add(systemID string, m *Machine) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.Disk == nil {
		m.Disk = &Disk{}
	}
	f.machines[systemID] = m
}

// Machine returns the machine of a system (nil before Add or its first
// boot). Its Disk shows what is installed.
func (f *Fleet) Machine(systemID string) *Machine {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.machines[systemID]
}

// OnBoot is a bmcsim.SystemSpec.OnBoot hook. It runs the boot to the end
// before returning (bmcsim calls it on a goroutine of its own, one boot at a
// time per system).
func (f *Fleet) OnBoot(ev bmcsim.BootEvent) {
	start := time.Now()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		f.record(BootRecord{Event: ev, Result: &Result{}, Err: ErrFleetClosed, Start: start, End: start})
		return
	}
	f.wg.Add(1)
	defer f.wg.Done()
	m := f.machines[ev.SystemID]
	if m == nil {
		m = &Machine{Disk: &Disk{}}
		f.machines[ev.SystemID] = m
	}
	mc := *m // this boot's view; the Disk is shared
	f.mu.Unlock()

	res, err := f.boot(&mc, ev)
	if res == nil {
		res = &Result{}
	}
	rec := BootRecord{Event: ev, Result: res, Err: err, Start: start, End: time.Now()}
	log := f.log.With(slog.String("system", ev.SystemID), slog.String("target", ev.Target), slog.Uint64("seq", ev.Seq))
	if err != nil {
		log.Info("simulated boot failed", slog.String("result", res.String()), slog.String("error", err.Error()))
	} else {
		log.Info("simulated boot", slog.String("result", res.String()))
	}
	f.record(rec)
}

func (f *Fleet) boot(m *Machine, ev bmcsim.BootEvent) (*Result, error) {
	if m.MAC == nil {
		if len(ev.MACs) == 0 {
			return nil, &StageError{Stage: StageDHCP, Err: errors.New("the system has no NIC")}
		}
		hw, err := net.ParseMAC(ev.MACs[0])
		if err != nil {
			return nil, &StageError{Stage: StageDHCP, Err: fmt.Errorf("NIC MAC %q: %w", ev.MACs[0], err)}
		}
		m.MAC = hw
	}
	switch {
	case ev.Mode == "Legacy":
		m.Arch = iana.INTEL_X86PC
	case !isEFI(m.Arch):
		m.Arch = iana.EFI_X86_64
	}
	if m.DHCPServer == nil {
		m.DHCPServer = f.cfg.DHCPServer
	}
	if m.ClientPort == 0 {
		m.ClientPort = f.cfg.ClientPort
	}
	if m.DHCPTimeout == 0 {
		m.DHCPTimeout = f.cfg.DHCPTimeout
	}
	if m.HTTPClient == nil {
		m.HTTPClient = f.cfg.HTTPClient
	}
	if m.Sleep == nil {
		m.Sleep = f.cfg.Sleep
	}
	if m.Logger == nil {
		m.Logger = f.log.With(slog.String("system", ev.SystemID))
	}
	switch ev.Target {
	case "Pxe":
		ctx, cancel := context.WithTimeout(f.ctx, f.cfg.BootTimeout)
		defer cancel()
		return m.NetBoot(ctx)
	case "", "None", "Hdd":
		return BootDisk(m.Disk)
	}
	return nil, fmt.Errorf("machinesim: boot target %q is not simulated", ev.Target)
}

// BootDisk is a boot from the local disk without the network (what the
// firmware does when it is not told to netboot).
func BootDisk(d *Disk) (*Result, error) {
	res := &Result{BootedFrom: BootedFromDisk, Stages: []string{StageDisk}}
	if _, ok := d.Installed(); !ok {
		return res, &StageError{Stage: StageDisk, Err: ErrNoOS}
	}
	d.booted()
	return res, nil
}

func (f *Fleet) record(rec BootRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = append(f.records, rec)
	close(f.changed)
	f.changed = make(chan struct{})
}

// Records returns the boots of a system in order ("" for every system).
func (f *Fleet) Records(systemID string) []BootRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recordsLocked(systemID)
}

func (f *Fleet) recordsLocked(systemID string) []BootRecord {
	if systemID == "" {
		return slices.Clone(f.records)
	}
	var out []BootRecord
	for _, r := range f.records {
		if r.Event.SystemID == systemID {
			out = append(out, r)
		}
	}
	return out
}

// WaitBoots waits until the system has at least n recorded boots and
// returns them all, or the context's error.
func (f *Fleet) WaitBoots(ctx context.Context, systemID string, n int) ([]BootRecord, error) {
	for {
		f.mu.Lock()
		recs := f.recordsLocked(systemID)
		ch := f.changed
		f.mu.Unlock()
		if len(recs) >= n {
			return recs, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return recs, fmt.Errorf("machinesim: waiting for boot %d of %s (have %d): %w", n, systemID, len(recs), ctx.Err())
		}
	}
}

// Close cancels boots in flight, waits for them to be recorded and makes
// later boots fail with ErrFleetClosed.
func (f *Fleet) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
}
