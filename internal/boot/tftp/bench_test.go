package tftp

import (
	"bytes"
	"fmt"
	"testing"

	"golang.org/x/sync/errgroup"
)

// BenchmarkConcurrentFetch: each op is 50 concurrent fetches of a 1 MiB
// file over loopback with pin/tftp's client (lock-step, one ACK per block).
// MB/s is aggregate goodput.
func BenchmarkConcurrentFetch(b *testing.B) {
	const clients, size = 50, 1 << 20
	for _, single := range []bool{false, true} {
		for _, blk := range []int{1468, 8192, 65464} {
			b.Run(fmt.Sprintf("singleport=%v/blksize=%d", single, blk), func(b *testing.B) {
				// MaxBlockSize = blksize: in single-port mode pin/tftp allocates a
				// MaxBlockSize+4 buffer for every packet it receives.
				ts := startServer(b, Config{SinglePort: single, MaxBlockSize: blk, Observer: ObserverFunc(func(Event) {})})
				data := randomBytes(size, 7)
				writeFile(b, ts.root, "ipxe.efi", data)
				b.SetBytes(clients * size)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					var g errgroup.Group
					for range clients {
						g.Go(func() error {
							got, _, err := fetch(ts.addr, "ipxe.efi", fetchOpts{blksize: blk, tsize: true})
							if err == nil && !bytes.Equal(got, data) {
								err = fmt.Errorf("content mismatch")
							}
							return err
						})
					}
					if err := g.Wait(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
