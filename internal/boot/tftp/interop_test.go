package tftp

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tftpHPA returns the path of the tftp-hpa client or skips the test.
func tftpHPA(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("tftp")
	if err != nil {
		t.Skip("tftp-hpa client not installed (Debian package tftp-hpa, /usr/bin/tftp): interop test skipped")
	}
	out, _ := exec.Command(bin, "-V").CombinedOutput()
	if !strings.Contains(string(out), "tftp-hpa") {
		t.Skipf("%s is not tftp-hpa (%q): interop test skipped", bin, strings.TrimSpace(string(out)))
	}
	return bin
}

// TestTftpHpaClient fetches files with the real Debian tftp-hpa client
// (plain RFC 1350: no options, 512-byte blocks).
func TestTftpHpaClient(t *testing.T) {
	bin := tftpHPA(t)
	for _, single := range []bool{false, true} {
		name := "multiport"
		if single {
			name = "singleport"
		}
		t.Run(name, func(t *testing.T) {
			ts := startServer(t, Config{SinglePort: single, AllowList: []string{"ipxe.efi", "undionly.kpxe", "empty.efi", "boot/*.cfg"}})
			files := map[string][]byte{
				"ipxe.efi":      randomBytes(1<<20, 10),
				"undionly.kpxe": randomBytes(3*512, 11), // exact multiple of the block size
				"empty.efi":     {},
				"boot/menu.cfg": []byte("#!ipxe\nchain http://127.0.0.1/boot.ipxe\n"),
			}
			for n, b := range files {
				writeFile(t, ts.root, n, b)
			}
			host, port, err := net.SplitHostPort(ts.addr)
			must(t, err)
			out := t.TempDir()
			run := func(remote, local string) string {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), failAfter)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, "-4", "-v", "-m", "binary", host, port, "-c", "get", remote, local)
				b, err := cmd.CombinedOutput()
				if ctx.Err() != nil {
					t.Fatalf("tftp %s timed out: %s", remote, b)
				}
				_ = err // tftp-hpa's exit status is not reliable across versions; judge by output and file.
				return string(b)
			}
			for remote, want := range files {
				local := filepath.Join(out, strings.ReplaceAll(remote, "/", "_"))
				msg := run(remote, local)
				got, err := os.ReadFile(local)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("get %s: %d bytes (want %d), err %v; client said: %s", remote, len(got), len(want), err, msg)
				}
			}
			// Backslashes and a leading slash are normalised.
			local := filepath.Join(out, "bs")
			msg := run(`\boot\menu.cfg`, local)
			if got, _ := os.ReadFile(local); !bytes.Equal(got, files["boot/menu.cfg"]) {
				t.Fatalf(`get \boot\menu.cfg: %q; client said: %s`, got, msg)
			}

			for remote, code := range map[string]string{
				"../etc/passwd": "Error code 2", "/etc/passwd": "Error code 2",
				`..\..\x`: "Error code 2", "snp.efi": "Error code 2", "boot/missing.cfg": "Error code 1",
			} {
				local := filepath.Join(out, "refused")
				msg := run(remote, local)
				t.Logf("get %s: %s", remote, strings.TrimSpace(msg))
				if !strings.Contains(msg, code) {
					t.Errorf("get %s: want %q, client said: %s", remote, code, msg)
				}
				if b, err := os.ReadFile(local); err == nil && len(b) > 0 {
					t.Errorf("get %s: received %d bytes", remote, len(b))
				}
			}
			ts.rec.wait(t, len(files)+1+5)
			st := ts.Stats()
			if st.Transfers != uint64(len(files)+1) || st.Refused != 5 || st.Failed != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
