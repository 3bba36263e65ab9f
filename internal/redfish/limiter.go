package redfish

import (
	"context"
	"sync"
)

// Limiter caps concurrent BMC operations provider-wide and allows one
// in-flight mutation per BMC, so two resources never reset one server at once.
type Limiter struct {
	slots chan struct{}
	mu    sync.Mutex
	locks map[string]chan struct{}
}

// NewLimiter allows limit concurrent operations (limit <= 0 means 16).
func NewLimiter(limit int) *Limiter {
	if limit <= 0 {
		limit = 16
	}
	return &Limiter{slots: make(chan struct{}, limit), locks: map[string]chan struct{}{}}
}

// Acquire takes a slot, and the BMC's mutation lock when mutate is set. It
// honours ctx while waiting. Call release exactly once.
func (l *Limiter) Acquire(ctx context.Context, bmcHost string, mutate bool) (release func(), err error) {
	var lock chan struct{}
	if mutate {
		l.mu.Lock()
		lock = l.locks[bmcHost]
		if lock == nil {
			lock = make(chan struct{}, 1)
			l.locks[bmcHost] = lock
		}
		l.mu.Unlock()
		select {
		case lock <- struct{}{}:
		case <-ctx.Done():
			return nil, &opError{kind: ErrTimeout, msg: "waiting for another operation on BMC " + bmcHost, err: ctx.Err()}
		}
	}
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		if lock != nil {
			<-lock
		}
		return nil, &opError{kind: ErrTimeout, msg: "waiting for a free BMC operation slot (max_concurrent_bmc_operations)", err: ctx.Err()}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-l.slots
			if lock != nil {
				<-lock
			}
		})
	}, nil
}
