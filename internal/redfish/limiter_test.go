package redfish

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimiterSerialisesMutationsPerBMC(t *testing.T) {
	t.Parallel()
	l := NewLimiter(8)
	var inFlight, peak atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := l.Acquire(context.Background(), "bmc-a:443", true)
			if err != nil {
				t.Error(err)
				return
			}
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			inFlight.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if peak.Load() != 1 {
		t.Fatalf("peak concurrent mutations on one BMC = %d, want 1", peak.Load())
	}
}

func TestLimiterCapsOperationsProviderWide(t *testing.T) {
	t.Parallel()
	l := NewLimiter(2)
	r1, _ := l.Acquire(context.Background(), "a", false)
	r2, _ := l.Acquire(context.Background(), "b", false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx, "c", false); !errors.Is(err, ErrTimeout) {
		t.Fatalf("third operation with cap 2: got %v, want ErrTimeout", err)
	}
	r1()
	r1() // release is idempotent
	r3, err := l.Acquire(context.Background(), "c", false)
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	r2()
	r3()
}

func TestLimiterReadsDoNotWaitForMutations(t *testing.T) {
	t.Parallel()
	l := NewLimiter(4)
	release, _ := l.Acquire(context.Background(), "a", true)
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := l.Acquire(ctx, "a", false)
	if err != nil {
		t.Fatalf("a read blocked behind a mutation: %v", err)
	}
	r()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := l.Acquire(ctx2, "a", true); !errors.Is(err, ErrTimeout) {
		t.Fatalf("second mutation on one BMC: got %v, want ErrTimeout", err)
	}
}
