//go:build unix

package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	helperDBEnv    = "STORE_CRASH_HELPER_DB"
	helperRoundEnv = "STORE_CRASH_HELPER_ROUND"
	crashWorkers   = 4
)

// TestHelperProcess is the child of TestKillAndRestart: it writes machines,
// leases and events from several goroutines as fast as it can and prints
// one line per write *after* the call returned, i.e. after the commit was
// fsynced. It never exits by itself before being killed (it is capped only
// as a safety net).
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperDBEnv)
	if path == "" {
		t.Skip("helper process for TestKillAndRestart")
	}
	round, _ := strconv.Atoi(os.Getenv(helperRoundEnv))
	s, err := Open(path, Options{MaxEventsPerMachine: -1, LockTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriterSize(os.Stdout, 0) // unbuffered: each ack hits the pipe at once
	ack := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := range crashWorkers {
		wg.Go(func() {
			exp := time.Now().Add(time.Hour)
			for i := range 300000 {
				switch i % 3 {
				case 0:
					id := fmt.Sprintf("r%d-w%d-%d", round, w, i)
					if _, err := s.PutMachine(Machine{ID: id, MACs: []string{testMAC(100+round, w, i)}, Status: "registered"}); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(3)
					}
					ack("M %s %s", id, testMAC(100+round, w, i))
				case 1:
					mac, ip := testMAC(round, w, i), testIP(round, w, i)
					if _, err := s.PutLease(Lease{MAC: mac, IP: ip, Expiry: exp}); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(3)
					}
					ack("L %s %s", mac, ip)
				case 2:
					e, err := s.AppendEvent(Event{MachineID: fmt.Sprintf("w%d", w), Type: "write", Message: fmt.Sprintf("%d/%d", round, i)})
					if err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(3)
					}
					ack("E %s %d", e.MachineID, e.Seq)
				}
			}
		})
	}
	wg.Wait()
	fmt.Fprintln(os.Stderr, "helper finished without being killed")
	os.Exit(4)
}

// TestKillAndRestart SIGKILLs a writer process mid-stream, several times on
// the same file, and checks after each crash that the file opens and passes
// bbolt's consistency check, and that every write the child reported as
// committed is there (event sequences without gaps).
//
// This is a process crash: the kernel still flushes the page cache, so it
// proves transaction atomicity and "acknowledged = committed", not
// power-loss durability (that rests on bbolt's fdatasync).
func TestKillAndRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	machines := map[string]string{} // id -> MAC
	leases := map[string]string{}   // MAC -> IP
	events := map[string]uint64{}   // worker machine -> highest acked seq

	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperDBEnv+"="+path, helperRoundEnv+"="+strconv.Itoa(round))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())

		target := 200 + 150*round
		acks, killed := 0, false
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 {
				continue // test framework chatter
			}
			switch f[0] {
			case "M":
				machines[f[1]] = f[2]
			case "L":
				leases[f[1]] = f[2]
			case "E":
				seq, _ := strconv.ParseUint(f[2], 10, 64)
				events[f[1]] = max(events[f[1]], seq)
			default:
				continue
			}
			acks++
			// Lines still in the pipe after the kill were committed too;
			// keep reading them.
			if !killed && acks >= target {
				must(t, cmd.Process.Signal(syscall.SIGKILL))
				killed = true
			}
		}
		err = cmd.Wait()
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !killed || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child not killed as planned (acks %d, wait %v): %s", round, acks, err, stderr.String())
		}
		t.Logf("round %d: killed after %d acknowledged writes", round, acks)

		s, err := Open(path, Options{MaxEventsPerMachine: -1})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		if err := s.Check(); err != nil {
			t.Fatalf("round %d: consistency check: %v", round, err)
		}
		for id, mac := range machines {
			m, err := s.GetMachineByMAC(mac)
			if err != nil || m.ID != id {
				t.Fatalf("round %d: committed machine %s (%s) lost: %v", round, id, mac, err)
			}
		}
		for mac, ip := range leases {
			l, err := s.GetLease(mac)
			if err != nil || l.IP.String() != ip {
				t.Fatalf("round %d: committed lease %s lost: %v", round, mac, err)
			}
			if byIP, err := s.GetLeaseByIP(l.IP); err != nil || byIP.MAC != mac {
				t.Fatalf("round %d: IP index for %s: %v", round, ip, err)
			}
		}
		for id, top := range events {
			evs, err := s.ListEvents(id, 0)
			must(t, err)
			seqs := make([]uint64, len(evs))
			for i, e := range evs {
				seqs[i] = e.Seq
				if e.Seq != uint64(i+1) {
					t.Fatalf("round %d: %s timeline has a gap at %d: %v", round, id, i, seqs[max(0, i-3):i+1])
				}
			}
			if !slices.Contains(seqs, top) {
				t.Fatalf("round %d: %s lost committed event %d (have %d)", round, id, top, len(seqs))
			}
		}
		must(t, s.Close())
	}
	t.Logf("verified %d machines, %d leases, %d timelines", len(machines), len(leases), len(events))
}
