package bmcsim

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
)

// overridePower records the boot override it is told before each power
// request, and boots at once.
type overridePower struct {
	mu    sync.Mutex
	on    bool
	boots uint64
	log   []string // "override:<target>/<enabled>/<mode>" and "reset:<type>"
}

func (p *overridePower) SetBootOverride(o BootOverride) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, "override:"+o.Target+"/"+o.Enabled+"/"+o.Mode)
}

func (p *overridePower) Status() PowerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on {
		return PowerStatus{State: PowerOn, Boots: p.boots}
	}
	return PowerStatus{State: PowerOff, Boots: p.boots}
}

func (p *overridePower) Reset(_ context.Context, rt string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, "reset:"+rt)
	switch rt {
	case "ForceOff", "GracefulShutdown":
		p.on = false
	default:
		p.on = true
		p.boots++
	}
	return nil
}

func (p *overridePower) SetPower(on bool) {
	p.mu.Lock()
	p.log = append(p.log, "power")
	p.mu.Unlock()
	rt := "ForceOff"
	if on {
		rt = "On"
	}
	_ = p.Reset(context.Background(), rt)
	p.mu.Lock()
	p.log = p.log[:len(p.log)-1] // SetPower is logged as "power", not as its reset
	p.mu.Unlock()
}

func (p *overridePower) calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// The backend learns the pending override right before each power request,
// and a consumed Once override is no longer passed on.
func TestBootOverrideAwareBackend(t *testing.T) {
	t.Parallel()
	p := &overridePower{}
	e := startEnv(t, Options{Systems: []SystemSpec{{ID: "vm", BootMode: "Legacy", Power: p}}})
	sp := "/redfish/v1/Systems/vm"
	okWrite(t, e.do(http.MethodPatch, sp, map[string]any{"Boot": map[string]any{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
	}}, nil))
	okWrite(t, e.reset(sp, "On"))
	// The boot completed (Boots changed): reading the system consumes the
	// Once override, so the next restart follows the normal boot order.
	if st, _ := e.sim.System("vm"); st.BootEnabled != "Disabled" {
		t.Fatalf("override not consumed: %+v", st)
	}
	okWrite(t, e.reset(sp, "ForceRestart"))
	okWrite(t, e.do(http.MethodPatch, sp, map[string]any{"Boot": map[string]any{
		"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideMode": "UEFI",
	}}, nil))
	e.sim.SetPowerState("vm", false)
	want := []string{
		"override:Pxe/Once/Legacy", "reset:On",
		"override://Legacy", "reset:ForceRestart",
		"override:Hdd/Continuous/UEFI", "power",
	}
	if got := p.calls(); !slices.Equal(got, want) {
		t.Fatalf("backend calls:\n got %q\nwant %q", got, want)
	}
}
