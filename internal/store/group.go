package store

import (
	"fmt"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// groupCommitter merges concurrent writes into shared transactions without
// the fixed delay of bolt.DB.Batch (which waits up to MaxBatchDelay, 10ms by
// default, before committing, capping a lone sequential writer at about
// 100 writes/s). Here a write commits at once if nothing is committing;
// writes arriving during a commit queue up and go together in the next one,
// so one fsync is amortised over everything that arrived meanwhile.
//
// Failure isolation is as in bolt.DB.Batch: if a function fails, the shared
// transaction is rolled back, that function is re-run alone to get its own
// result, and the rest are retried together.
type groupCommitter struct {
	db  *bolt.DB
	max int

	mu      sync.Mutex
	pending []*gcCall
	running bool

	commits atomic.Uint64 // transactions run (for tests and benchmarks)
}

type gcCall struct {
	fn   func(*bolt.Tx) error
	done chan error
}

func (g *groupCommitter) do(fn func(*bolt.Tx) error) error {
	c := &gcCall{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, c)
	if !g.running {
		g.running = true
		go g.loop()
	}
	g.mu.Unlock()
	return <-c.done
}

// loop commits queued calls until the queue is empty.
func (g *groupCommitter) loop() {
	for {
		g.mu.Lock()
		n := min(len(g.pending), g.max)
		if n == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		calls := g.pending[:n:n]
		g.pending = append([]*gcCall(nil), g.pending[n:]...)
		g.mu.Unlock()
		g.run(calls)
	}
}

func (g *groupCommitter) run(calls []*gcCall) {
	for len(calls) > 0 {
		failed := -1
		g.commits.Add(1)
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, c := range calls {
				if err := safeCall(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			// Success, or a commit error every call shares.
			for _, c := range calls {
				c.done <- err
			}
			return
		}
		c := calls[failed]
		calls = append(calls[:failed:failed], calls[failed+1:]...)
		g.commits.Add(1)
		c.done <- g.db.Update(func(tx *bolt.Tx) error { return safeCall(c.fn, tx) })
	}
}

func safeCall(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: panic in transaction: %v", p)
		}
	}()
	return fn(tx)
}
