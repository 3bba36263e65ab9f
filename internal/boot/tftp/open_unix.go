//go:build unix

package tftp

import (
	"os"
	"syscall"
)

// openFlags never blocks on a FIFO swapped in after the regular-file check.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK
