package engine

import (
	"context"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/store"
)

// Hooks for the daemon (internal/api): it keeps its operations in the boot
// service's store and resumes waits after a restart.

// Store returns the boot service's store, opening the boot service if needed.
func (e *Embedded) Store() (*store.Store, error) {
	svc, err := e.bootSvc()
	if err != nil {
		return nil, err
	}
	return svc.store, nil
}

// ResolveMachineID returns the boot service's id of bmc's system, asking the
// BMC only when neither bmc nor its endpoint names the system.
func (e *Embedded) ResolveMachineID(ctx context.Context, bmc BMC) (string, BMC, error) {
	return e.machineIDOf(ctx, bmc)
}

// AwaitMachine re-issues the wait of a provisioning already registered and
// booted (a daemon restarted in the middle of it) and returns what
// Provision would have returned.
func (e *Embedded) AwaitMachine(ctx context.Context, id, want string) (*ProvisionResult, error) {
	svc, err := e.bootServing()
	if err != nil {
		return nil, err
	}
	if want == "" {
		want = WaitProvisioned
	}
	if want != WaitNone {
		if err := svc.wait(ctx, id, want); err != nil {
			return nil, &ProvisionError{MachineID: id, Want: want, Timeline: svc.timeline(id), Err: err}
		}
	}
	res := &ProvisionResult{MachineID: id, Timeline: svc.timeline(id)}
	if ip := svc.leasedIP(id); ip.IsValid() {
		res.IPAddress = ip.String()
	}
	return res, nil
}

// ReachedStage reports whether machine id recorded source/stage at or after since.
func (e *Embedded) ReachedStage(id, source, stage string, since time.Time) bool {
	svc, err := e.bootSvc()
	if err != nil {
		return false
	}
	for _, ev := range svc.timeline(id) {
		if ev.Source == source && ev.Stage == stage && !ev.Time.Before(since) {
			return true
		}
	}
	return false
}

// OnBMCRequests sets a function told how many HTTP requests each BMC
// session made (for metrics). Call it before the engine is used.
func (e *Embedded) OnBMCRequests(fn func(int64)) { e.requests = fn }
