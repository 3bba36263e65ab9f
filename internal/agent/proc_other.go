//go:build !unix

package agent

import "os/exec"

func setProcessGroup(*exec.Cmd) {}

func isTextBusy(error) bool { return false }
