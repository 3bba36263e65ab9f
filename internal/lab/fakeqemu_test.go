package lab

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test binary doubles as a fake QEMU (METAL_LAB_FAKE_QEMU=1) that
// speaks just enough QMP for the VM backend: the greeting,
// qmp_capabilities, system_reset, system_powerdown and inject-nmi, with
// the events real QEMU sends. Its guest is scripted by files next to the
// QMP socket:
//
//	fake-reboot-after   milliseconds after start at which the guest reboots
//	                    (-no-reboot: SHUTDOWN guest-reset and exit; else RESET)
//	fake-ignore-acpi    the guest ignores system_powerdown
func TestMain(m *testing.M) {
	if os.Getenv("METAL_LAB_FAKE_QEMU") == "1" {
		os.Exit(fakeQEMU(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeQEMUScript writes an executable that runs this test binary as the
// fake QEMU.
func fakeQEMUScript(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "qemu-system-x86_64")
	script := "#!/bin/sh\nMETAL_LAB_FAKE_QEMU=1 exec " + strconv.Quote(exe) + " \"$@\"\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func fakeQEMU(args []string) int {
	var qmpPath string
	noReboot := false
	for i, a := range args {
		switch a {
		case "-qmp":
			qmpPath = strings.TrimPrefix(strings.SplitN(args[i+1], ",", 2)[0], "unix:")
		case "-no-reboot":
			noReboot = true
		}
	}
	if qmpPath == "" {
		fmt.Fprintln(os.Stderr, "fake qemu: no -qmp")
		return 1
	}
	dir := filepath.Dir(qmpPath)
	ln, err := net.Listen("unix", qmpPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	conn, err := ln.Accept()
	if err != nil {
		return 1
	}
	var mu sync.Mutex
	send := func(v any) {
		b, _ := json.Marshal(v)
		mu.Lock()
		_, _ = conn.Write(append(b, '\r', '\n'))
		mu.Unlock()
	}
	event := func(name string, data map[string]any) {
		send(map[string]any{"event": name, "data": data, "timestamp": map[string]int64{"seconds": time.Now().Unix()}})
	}
	exit := make(chan int, 1)
	shutdown := func(guest bool, reason string) {
		event("SHUTDOWN", map[string]any{"guest": guest, "reason": reason})
		time.Sleep(10 * time.Millisecond)
		exit <- 0
	}
	reboot := func(guest bool, reason string) {
		if noReboot {
			shutdown(guest, reason)
			return
		}
		event("RESET", map[string]any{"guest": guest, "reason": reason})
	}
	if b, err := os.ReadFile(filepath.Join(dir, "fake-reboot-after")); err == nil {
		ms, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		_ = os.Remove(filepath.Join(dir, "fake-reboot-after")) // one reboot per script
		time.AfterFunc(time.Duration(ms)*time.Millisecond, func() { reboot(true, "guest-reset") })
	}
	send(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{}}})
	go func() {
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var req struct {
				Execute string `json:"execute"`
			}
			_ = json.Unmarshal(sc.Bytes(), &req)
			switch req.Execute {
			case "qmp_capabilities", "inject-nmi":
				send(map[string]any{"return": map[string]any{}})
			case "system_reset":
				send(map[string]any{"return": map[string]any{}})
				reboot(false, "host-qmp-system-reset")
			case "system_powerdown":
				send(map[string]any{"return": map[string]any{}})
				event("POWERDOWN", nil)
				if _, err := os.Stat(filepath.Join(dir, "fake-ignore-acpi")); err != nil {
					go shutdown(true, "guest-shutdown")
				}
			default:
				send(map[string]any{"error": map[string]any{"class": "CommandNotFound", "desc": "fake"}})
			}
		}
	}()
	return <-exit
}
