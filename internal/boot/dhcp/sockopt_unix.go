//go:build unix

package dhcp

import (
	"net"
	"syscall"
)

// enableBroadcast sets SO_BROADCAST so replies to 255.255.255.255 are
// allowed. Conns that are not sockets are left alone.
func enableBroadcast(c net.PacketConn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
	}); err != nil {
		return err
	}
	return serr
}
