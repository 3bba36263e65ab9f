//go:build unix

package agent

import (
	"errors"
	"os/exec"
	"syscall"
)

// setProcessGroup runs cmd in its own process group and, when its context
// ends, kills the whole group: a script's children die with it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

func isTextBusy(err error) bool { return errors.Is(err, syscall.ETXTBSY) }
