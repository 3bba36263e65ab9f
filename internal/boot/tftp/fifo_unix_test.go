//go:build unix

package tftp

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFIFORefused: a FIFO on the allow-list must be refused, not block a
// serving goroutine forever.
func TestFIFORefused(t *testing.T) {
	ts := startServer(t, Config{AllowList: []string{"fifo.efi", "ipxe.efi"}})
	must(t, syscall.Mkfifo(filepath.Join(ts.root, "fifo.efi"), 0o644))
	writeFile(t, ts.root, "ipxe.efi", []byte("ok"))
	if _, _, err := fetch(ts.addr, "fifo.efi", fetchOpts{}); err == nil || !strings.Contains(err.Error(), "code: 2,") {
		t.Fatalf("fifo: %s", codeOf(err))
	}
	if got, _, err := fetch(ts.addr, "ipxe.efi", fetchOpts{}); err != nil || string(got) != "ok" {
		t.Fatalf("server stuck after FIFO request: %q %v", got, err)
	}
}
