package engine_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

func startBMC(t testing.TB, opts bmcsim.Options) (*bmcsim.Simulator, engine.BMC) {
	t.Helper()
	sim := bmcsim.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, ca, err := sim.StartTLS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return sim, engine.BMC{Endpoint: url, Username: "admin", Password: "password", CACertificate: string(ca)}
}

func newEngine(limit int) *engine.Embedded {
	return engine.NewEmbedded(engine.Config{MaxConcurrentBMCOperations: limit, PollInterval: 5 * time.Millisecond})
}

func TestMachineLifecycle(t *testing.T) {
	t.Parallel()
	sim, bmc := startBMC(t, bmcsim.Options{Vendor: bmcsim.Dell, PowerTransition: 20 * time.Millisecond})
	e := newEngine(4)
	ctx := context.Background()

	inv, err := e.Machine(ctx, bmc)
	if err != nil {
		t.Fatal(err)
	}
	if inv.SystemID != "System.Embedded.1" || inv.PowerState != engine.PowerOff || len(inv.NICs) == 0 {
		t.Fatalf("unexpected inventory: %+v", inv)
	}
	inv, err = e.SetPower(ctx, bmc, engine.PowerOn, engine.PowerOptions{})
	if err != nil || inv.PowerState != engine.PowerOn {
		t.Fatalf("SetPower on: %+v %v", inv, err)
	}
	if err := e.BootOnce(ctx, bmc, engine.BootOverride{Target: engine.BootPxe, Mode: engine.BootModeUEFI}); err != nil {
		t.Fatal(err)
	}
	st, _ := sim.System("System.Embedded.1")
	if st.BootTarget != "Pxe" || !slices.Equal(st.Resets, []string{"On", "ForceRestart"}) {
		t.Fatalf("after BootOnce: %+v", st)
	}
	if _, err := e.SetPower(ctx, bmc, engine.PowerOff, engine.PowerOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := sim.ActiveSessions(); got != 0 {
		t.Fatalf("engine leaked %d BMC sessions", got)
	}
	if err := e.BootOnce(ctx, bmc, engine.BootOverride{}); err == nil {
		t.Fatal("a boot override without a target must be refused")
	}
}

func TestSystemsAndAmbiguity(t *testing.T) {
	t.Parallel()
	_, bmc := startBMC(t, bmcsim.Options{Systems: []bmcsim.SystemSpec{{ID: "a"}, {ID: "b"}}})
	e := newEngine(4)
	systems, err := e.Systems(context.Background(), bmc)
	if err != nil || len(systems) != 2 {
		t.Fatalf("Systems: %+v %v", systems, err)
	}
	_, err = e.Machine(context.Background(), bmc)
	var amb *engine.AmbiguousSystemError
	if !errors.As(err, &amb) || !errors.Is(err, engine.ErrAmbiguousSystem) {
		t.Fatalf("want AmbiguousSystemError, got %v", err)
	}
	bmc.SystemID = "b"
	if inv, err := e.Machine(context.Background(), bmc); err != nil || inv.SystemID != "b" {
		t.Fatalf("with system id: %+v %v", inv, err)
	}
}

func TestInvalidEndpointFailsBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	_, err := newEngine(1).Machine(context.Background(), engine.BMC{Endpoint: "bmc.example", Username: "u"})
	if !errors.Is(err, engine.ErrInvalidEndpoint) {
		t.Fatalf("got %v", err)
	}
}

// Two mutations on one BMC never overlap; the simulator sees the resets of
// one operation complete before the next operation's begin.
func TestMutationsOnOneBMCAreSerialised(t *testing.T) {
	t.Parallel()
	sim, bmc := startBMC(t, bmcsim.Options{PowerTransition: 30 * time.Millisecond})
	e := newEngine(8)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := engine.PowerOn
			if i%2 == 1 {
				want = engine.PowerOff
			}
			inv, err := e.SetPower(context.Background(), bmc, want, engine.PowerOptions{ForceOff: true})
			if err == nil && inv.PowerState != want {
				err = errors.New("returned inventory does not show the state just set: " + string(inv.PowerState))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Interleaved operations would have hit a transition in progress and
	// waited or been refused; serialised ones each issue exactly one reset
	// or none.
	st, _ := sim.System(sim.SystemIDs()[0])
	if len(st.Resets) > 6 {
		t.Fatalf("resets = %v: more than one per operation", st.Resets)
	}
}

func TestOperationHonoursDeadline(t *testing.T) {
	t.Parallel()
	sim, bmc := startBMC(t, bmcsim.Options{})
	sim.SetLatency(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := newEngine(1).Machine(ctx, bmc); !errors.Is(err, engine.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
}
