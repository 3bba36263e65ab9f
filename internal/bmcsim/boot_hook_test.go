package bmcsim

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// bootRecorder is an OnBoot hook that forwards events to a channel. It
// reads the simulator from inside the hook, which deadlocks if the hook is
// called with the simulator's lock held.
type bootRecorder struct {
	sim *Simulator
	ch  chan BootEvent
}

func (r *bootRecorder) hook(ev BootEvent) {
	if r.sim != nil {
		r.sim.System(ev.SystemID)
	}
	r.ch <- ev
}

func (r *bootRecorder) next(t *testing.T) BootEvent {
	t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no boot event")
	}
	return BootEvent{}
}

func (r *bootRecorder) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case ev := <-r.ch:
		t.Fatalf("unexpected boot event %+v", ev)
	case <-time.After(wait):
	}
}

// startHooked runs a simulator whose systems report boots to a recorder.
// Nothing in the tests reads the system's state while waiting for an event:
// the simulator must notice the boot on its own.
func startHooked(t *testing.T, opts Options) (*env, *bootRecorder) {
	t.Helper()
	rec := &bootRecorder{ch: make(chan BootEvent, 16)}
	for i := range opts.Systems {
		opts.Systems[i].OnBoot = rec.hook
	}
	e := startEnv(t, opts)
	rec.sim = e.sim
	return e, rec
}

func TestOnBootReportsTheOverrideTarget(t *testing.T) {
	t.Parallel()
	for _, v := range Vendors() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			e, rec := startHooked(t, Options{Vendor: v, PowerTransition: 20 * time.Millisecond, Systems: []SystemSpec{{}}})
			sp := e.systemPath()
			id := e.sim.SystemIDs()[0]
			var macs []string
			for i := range 2 {
				macs = append(macs, derivedMAC(id, i))
			}
			etag := e.get(sp).header.Get("ETag")
			okWrite(t, e.do(http.MethodPatch, sp, map[string]any{"Boot": map[string]any{
				"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
			}}, map[string]string{"If-Match": etag}))
			okWrite(t, e.reset(sp, "On"))

			ev := rec.next(t)
			wantMode := "UEFI"
			if v == Supermicro {
				wantMode = "Legacy" // the Boot PATCH omitted the mode
			}
			if ev.SystemID != id || ev.Target != "Pxe" || ev.Mode != wantMode || ev.Seq != 1 || !slices.Equal(ev.MACs, macs) {
				t.Fatalf("first boot: %+v (system %s, MACs %v, mode %s)", ev, id, macs, wantMode)
			}
			if st, _ := e.sim.System(id); st.BootEnabled != "Disabled" || st.PowerState != PowerOn {
				t.Fatalf("after the first boot: %+v", st)
			}

			// The override was consumed: the next boot follows the boot order.
			okWrite(t, e.reset(sp, "ForceRestart"))
			if ev := rec.next(t); ev.Target != "" || ev.Seq != 2 || ev.Mode != "UEFI" {
				t.Fatalf("second boot: %+v", ev)
			}
			rec.none(t, 50*time.Millisecond)
		})
	}
}

func TestOnBootEveryPath(t *testing.T) {
	t.Parallel()
	for _, tr := range []time.Duration{0, 15 * time.Millisecond} {
		t.Run(tr.String(), func(t *testing.T) {
			t.Parallel()
			e, rec := startHooked(t, Options{PowerTransition: tr, Systems: []SystemSpec{{ID: "s", BootMode: "Legacy"}}})
			sp := "/redfish/v1/Systems/s"

			// Out-of-band power on: the firmware boot mode, no target.
			e.sim.SetPowerState("s", true)
			if ev := rec.next(t); ev.Target != "" || ev.Mode != "Legacy" || ev.Seq != 1 {
				t.Fatalf("power button: %+v", ev)
			}
			// A graceful restart first waits for the OS (power stays On,
			// not in POST), then boots.
			okWrite(t, e.do(http.MethodPatch, sp, map[string]any{"Boot": map[string]any{
				"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideMode": "UEFI",
			}}, nil))
			okWrite(t, e.reset(sp, "GracefulRestart"))
			if ev := rec.next(t); ev.Target != "Hdd" || ev.Mode != "UEFI" || ev.Seq != 2 {
				t.Fatalf("graceful restart: %+v", ev)
			}
			// Continuous stays.
			okWrite(t, e.reset(sp, "PowerCycle"))
			if ev := rec.next(t); ev.Target != "Hdd" || ev.Seq != 3 {
				t.Fatalf("power cycle: %+v", ev)
			}
			// Shutting down is not a boot.
			okWrite(t, e.reset(sp, "ForceOff"))
			e.waitPower("s", PowerOff)
			rec.none(t, 3*tr+30*time.Millisecond)
		})
	}
}

// Boots are delivered one at a time, in order, even when the hook is slow
// and the system restarts meanwhile; a panicking hook does not stop
// delivery.
func TestOnBootOrderedDelivery(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seqs []uint64
		busy bool
		bad  bool
	)
	release := make(chan struct{})
	done := make(chan struct{}, 8)
	hook := func(ev BootEvent) {
		mu.Lock()
		if busy {
			bad = true
		}
		busy = true
		seqs = append(seqs, ev.Seq)
		mu.Unlock()
		defer func() {
			mu.Lock()
			busy = false
			mu.Unlock()
			done <- struct{}{}
		}()
		if ev.Seq == 1 {
			<-release
		}
		if ev.Seq == 2 {
			panic("hook bug")
		}
	}
	e := startEnv(t, Options{Systems: []SystemSpec{{ID: "s", OnBoot: hook}}})
	sp := "/redfish/v1/Systems/s"
	okWrite(t, e.reset(sp, "On"))
	okWrite(t, e.reset(sp, "ForceRestart"))
	okWrite(t, e.reset(sp, "ForceRestart"))
	close(release)
	for range 3 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("hook not called")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if bad || !slices.Equal(seqs, []uint64{1, 2, 3}) {
		t.Fatalf("deliveries %v (overlapping: %v)", seqs, bad)
	}
}

// slowBootPower is a custom backend whose boots complete some time after
// the request, as a VM's would.
type slowBootPower struct {
	mu     sync.Mutex
	on     bool
	bootAt time.Time
	boots  uint64
}

func (p *slowBootPower) Status() PowerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.bootAt.IsZero() {
		if time.Now().Before(p.bootAt) {
			return PowerStatus{State: PowerOn, InPOST: true, Boots: p.boots}
		}
		p.bootAt = time.Time{}
		p.boots++
	}
	if p.on {
		return PowerStatus{State: PowerOn, Boots: p.boots}
	}
	return PowerStatus{State: PowerOff, Boots: p.boots}
}

func (p *slowBootPower) Reset(_ context.Context, rt string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch rt {
	case "On", "ForceOn", "ForceRestart", "GracefulRestart", "PowerCycle":
		p.on = true
		p.bootAt = time.Now().Add(40 * time.Millisecond)
	default:
		p.on = false
	}
	return nil
}

func (p *slowBootPower) SetPower(on bool) {
	rt := "ForceOff"
	if on {
		rt = "On"
	}
	_ = p.Reset(context.Background(), rt)
}

func TestOnBootCustomBackendIsPolled(t *testing.T) {
	t.Parallel()
	e, rec := startHooked(t, Options{Systems: []SystemSpec{{ID: "vm", Power: &slowBootPower{}}}})
	sp := "/redfish/v1/Systems/vm"
	okWrite(t, e.do(http.MethodPatch, sp, map[string]any{"Boot": map[string]any{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
	}}, nil))
	okWrite(t, e.reset(sp, "On"))
	if ev := rec.next(t); ev.Target != "Pxe" || ev.SystemID != "vm" {
		t.Fatalf("first boot: %+v", ev)
	}
	okWrite(t, e.reset(sp, "ForceRestart"))
	if ev := rec.next(t); ev.Target != "" || ev.Seq != 2 {
		t.Fatalf("second boot: %+v", ev)
	}
}

// Without OnBoot nothing changes: the override is consumed lazily.
func TestNoHookNoTimers(t *testing.T) {
	t.Parallel()
	sim := New(Options{Systems: []SystemSpec{{ID: "s"}}})
	sim.SetPowerState("s", true)
	sim.mu.Lock()
	defer sim.mu.Unlock()
	if sys := sim.findLocked("s"); sys.watching || sys.delivering || len(sys.pending) != 0 {
		t.Fatalf("hook machinery ran without a hook: %+v", sys)
	}
}
