package store

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func benchLease(n uint64, exp time.Time) Lease {
	return Lease{
		MAC:    fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n)),
		IP:     netip.AddrFrom16([16]byte{0: 0xfd, 11: byte(n >> 32), 12: byte(n >> 24), 13: byte(n >> 16), 14: byte(n >> 8), 15: byte(n)}),
		Expiry: exp, Hostname: "node", MachineID: "m",
	}
}

// BenchmarkPutLeaseParallel measures durable (fsynced) lease writes with
// many concurrent writers, as a DHCP server handling packets in parallel
// would issue them. "group" is this package's group commit, "boltbatch" is
// bolt.DB.Batch for comparison; writers=1 is a lone sequential writer.
func BenchmarkPutLeaseParallel(b *testing.B) {
	for _, mode := range []string{"group", "boltbatch"} {
		for _, writers := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("%s/writers=%d", mode, writers), func(b *testing.B) {
				s := newStore(b, Options{})
				s.boltBatch = mode == "boltbatch"
				exp := time.Now().Add(time.Hour)
				var ctr atomic.Uint64
				c0 := s.gc.commits.Load()
				b.ReportAllocs()
				b.ResetTimer()
				if writers == 1 {
					for b.Loop() {
						if _, err := s.PutLease(benchLease(ctr.Add(1), exp)); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					// RunParallel starts parallelism*GOMAXPROCS goroutines.
					b.SetParallelism(max(1, writers/max(1, runtimeProcs())))
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := s.PutLease(benchLease(ctr.Add(1), exp)); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.ReportMetric(float64(ctr.Load())/b.Elapsed().Seconds(), "leases/s")
				if mode == "group" {
					b.ReportMetric(float64(ctr.Load())/float64(max(1, s.gc.commits.Load()-c0)), "leases/commit")
				}
			})
		}
	}
}

// BenchmarkAppendEventParallel: timeline appends from 64 writers spread over
// 16 machines, with the default per-machine cap (so trimming is included).
func BenchmarkAppendEventParallel(b *testing.B) {
	s := newStore(b, Options{})
	var ctr atomic.Uint64
	b.SetParallelism(max(1, 64/runtimeProcs()))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := ctr.Add(1)
			if _, err := s.AppendEvent(Event{MachineID: fmt.Sprintf("m%d", n%16), Source: "tftp", Type: "tftp.done", Message: "ipxe.efi"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(ctr.Load())/b.Elapsed().Seconds(), "events/s")
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
