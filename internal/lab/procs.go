package lab

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// LabProcesses lists the pids of QEMU processes whose command line
// mentions dir (each lab VM's disk, QMP socket and logs live under it), in
// any namespace.
func LabProcesses(dir string) []int {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(cmd, []byte{0})
		if len(args) == 0 || !bytes.Contains(args[0], []byte("qemu-system")) {
			continue
		}
		if bytes.Contains(cmd, []byte(abs+"/")) {
			out = append(out, pid)
		}
	}
	return out
}

// KillLabProcesses sends SIGKILL to each of LabProcesses(dir), by pid, and
// returns the pids signalled.
func KillLabProcesses(dir string) []int {
	pids := LabProcesses(dir)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return pids
}
