//go:build unix

package agent

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/composable-metal/terraform-provider-metal/internal/roles"
)

func TestApplyOwners(t *testing.T) {
	f := newFixture(t)
	nobody, err := user.Lookup("nobody")
	if os.Geteuid() != 0 {
		// Not root: no owner leaves files to the agent's user, another
		// owner is refused with the path named.
		d := roles.Desired{Generation: 1, Roles: []roles.Rendered{
			mkRole("mine", []roles.File{file("/etc/mine", "x")}),
			mkRole("theirs", []roles.File{{Path: "/etc/theirs", Content: "x", Owner: "0:0"}}),
		}}
		rep, _ := Apply(context.Background(), f.cfg, d, roles.State{})
		if got := summary(rep); got[0] != "mine applied ok" || got[1] != "theirs applied failed" {
			t.Fatalf("results %q", got)
		}
		wantContains(t, "output", result(t, rep, "theirs").Output, "file /etc/theirs: owner \"0:0\": only root")
		return
	}
	if err != nil {
		t.Skip("no user nobody:", err)
	}
	d := roles.Desired{Generation: 1, Roles: []roles.Rendered{mkRole("own", []roles.File{
		{Path: "/etc/default-owner", Content: "x"},
		{Path: "/etc/nobody", Content: "x", Owner: "nobody", Mode: "4750"},
		{Path: "/etc/numeric", Content: "x", Owner: "12345:54321"},
	})}}
	rep, _ := Apply(context.Background(), f.cfg, d, roles.State{})
	if got := summary(rep); got[0] != "own applied ok" {
		t.Fatalf("results %q: %s", got, rep.Results[0].Output)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	for p, want := range map[string][2]int{"/etc/default-owner": {0, 0}, "/etc/nobody": {uid, gid}, "/etc/numeric": {12345, 54321}} {
		fi, err := os.Stat(f.path(p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != want[0] || int(st.Gid) != want[1] {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, want[0], want[1])
		}
		if p == "/etc/nobody" && fi.Mode() != 0o750|os.ModeSetuid {
			t.Errorf("%s mode %v: the set-user-ID bit is lost after chown", p, fi.Mode())
		}
	}
}

// A script still running when the context ends is killed with its children,
// and the roles it had not reached are reported not applied.
func TestApplyInterrupted(t *testing.T) {
	f := newFixture(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Opening blocks until the script opens the fifo for writing.
		b, err := os.ReadFile(fifo)
		if err == nil && strings.Contains(string(b), "started") {
			cancel()
		}
	}()
	d := roles.Desired{Revision: "r", Generation: 1, Roles: []roles.Rendered{
		mkRole("slow", nil, `echo started > "`+fifo+`"; sleep 600 & wait`),
		mkRole("next", nil, logScript("next")),
	}}
	rep, st := Apply(ctx, f.cfg, d, roles.State{})
	if got := summary(rep); got[0] != "slow applied failed" || got[1] != "next applied failed" {
		t.Fatalf("results %q", got)
	}
	wantContains(t, "slow output", result(t, rep, "slow").Output, "script 1 of 1 failed")
	if f.log(t) != "" {
		t.Error("a role after the interrupted one ran")
	}
	if st.Roles["slow"].Status != roles.StatusFailed {
		t.Errorf("slow recorded as %+v", st.Roles["slow"])
	}
}
