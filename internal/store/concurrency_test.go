package store

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// testMAC and testIP give unique, valid addresses for (a, b, i).
func testMAC(a, b, i int) string {
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", a&0xff, b&0xff, (i>>16)&0xff, (i>>8)&0xff, i&0xff)
}

func testIP(a, b, i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfd, 10: byte(a), 11: byte(b), 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
}

// TestConcurrentWriters hammers every write path from many goroutines (run
// with -race) and checks nothing is lost or duplicated.
func TestConcurrentWriters(t *testing.T) {
	s := newStore(t, Options{MaxEventsPerMachine: -1})
	const workers, perWorker = 16, 150
	exp := time.Now().Add(time.Hour)

	var g errgroup.Group
	for w := range workers {
		g.Go(func() error {
			for i := range perWorker {
				if _, err := s.PutLease(Lease{MAC: testMAC(1, w, i), IP: testIP(1, w, i), Expiry: exp}); err != nil {
					return err
				}
				if _, err := s.AppendEvent(Event{MachineID: "m" + strconv.Itoa(w%4), Type: "t", Message: fmt.Sprint(w, i)}); err != nil {
					return err
				}
				if i%10 == 0 {
					if _, err := s.PutMachine(Machine{ID: fmt.Sprintf("w%d-%d", w, i), MACs: []string{testMAC(2, w, i)}}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		// Readers run alongside.
		g.Go(func() error {
			for i := range perWorker {
				if _, err := s.ListEvents("m"+strconv.Itoa(w%4), uint64(i)); err != nil {
					return err
				}
				if _, err := s.GetLease(testMAC(1, w, i)); err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
			}
			return nil
		})
	}
	must(t, g.Wait())

	leases, err := s.ListLeases()
	must(t, err)
	if len(leases) != workers*perWorker {
		t.Fatalf("%d leases, want %d", len(leases), workers*perWorker)
	}
	machines, err := s.ListMachines()
	must(t, err)
	if len(machines) != workers*perWorker/10 {
		t.Fatalf("%d machines", len(machines))
	}
	total := 0
	for m := range 4 {
		evs, err := s.ListEvents("m"+strconv.Itoa(m), 0)
		must(t, err)
		seen := map[string]bool{}
		for i, e := range evs {
			if e.Seq != uint64(i+1) {
				t.Fatalf("m%d: event %d has seq %d (gap or duplicate)", m, i, e.Seq)
			}
			if seen[e.Message] {
				t.Fatalf("duplicate event %q", e.Message)
			}
			seen[e.Message] = true
		}
		total += len(evs)
	}
	if total != workers*perWorker {
		t.Fatalf("%d events, want %d", total, workers*perWorker)
	}
	if c := s.gc.commits.Load(); c >= uint64(2*workers*perWorker) {
		t.Logf("no batching happened: %d commits for %d writes", c, 2*workers*perWorker)
	} else {
		t.Logf("%d group commits for %d lease/event writes", c, 2*workers*perWorker)
	}
	must(t, s.Check())
}

// TestConcurrentIPConflict: many MACs race for one IP in the same batches;
// exactly one wins and the failures don't disturb the others' commits.
func TestConcurrentIPConflict(t *testing.T) {
	s := newStore(t, Options{})
	exp := time.Now().Add(time.Hour)
	const n = 40
	errs := make([]error, n)
	var g errgroup.Group
	for i := range n {
		g.Go(func() error {
			// Half contend for one IP; half write their own (must all succeed).
			ip := testIP(9, 9, 9)
			if i%2 == 1 {
				ip = testIP(3, 3, i)
			}
			_, errs[i] = s.PutLease(Lease{MAC: testMAC(3, 3, i), IP: ip, Expiry: exp})
			return nil
		})
	}
	must(t, g.Wait())
	winners := 0
	for i, err := range errs {
		switch {
		case err == nil && i%2 == 0:
			winners++
		case err == nil:
		case i%2 == 0 && errors.Is(err, ErrConflict):
		default:
			t.Fatalf("lease %d: %v", i, err)
		}
	}
	if winners != 1 {
		t.Fatalf("%d winners for one IP", winners)
	}
	l, err := s.GetLeaseByIP(testIP(9, 9, 9))
	must(t, err)
	if got, err := s.GetLease(l.MAC); err != nil || got.IP != testIP(9, 9, 9) {
		t.Fatalf("winner lease %v %v", got, err)
	}
	all, _ := s.ListLeases()
	if len(all) != n/2+1 {
		t.Fatalf("%d leases", len(all))
	}
}

// TestConcurrentUpdateMachine: read-modify-write loses no updates.
func TestConcurrentUpdateMachine(t *testing.T) {
	s := newStore(t, Options{})
	_, err := s.PutMachine(Machine{ID: "m", InstallInputs: map[string]string{"n": "0"}})
	must(t, err)
	var g errgroup.Group
	for range 20 {
		g.Go(func() error {
			for range 10 {
				_, err := s.UpdateMachine("m", func(m *Machine) error {
					n, _ := strconv.Atoi(m.InstallInputs["n"])
					m.InstallInputs["n"] = strconv.Itoa(n + 1)
					return nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	must(t, g.Wait())
	m, err := s.GetMachine("m")
	must(t, err)
	if m.InstallInputs["n"] != "200" {
		t.Fatalf("n = %s, want 200", m.InstallInputs["n"])
	}
}

// TestGroupCommitPanic: a panicking transaction function fails alone.
func TestGroupCommitPanic(t *testing.T) {
	s := newStore(t, Options{})
	var g errgroup.Group
	for i := range 10 {
		g.Go(func() error {
			if i == 5 {
				err := s.gc.do(func(*boltTx) error { panic("boom") })
				if err == nil {
					return errors.New("panic not reported")
				}
				return nil
			}
			_, err := s.AppendEvent(Event{MachineID: "m", Type: "x"})
			return err
		})
	}
	must(t, g.Wait())
	evs, _ := s.ListEvents("m", 0)
	if len(evs) != 9 {
		t.Fatalf("%d events", len(evs))
	}
}
