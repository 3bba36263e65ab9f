//go:build !unix

package dhcp

import "net"

// enableBroadcast is a no-op where the socket option is not reachable through
// the syscall package; callers pass a conn with SO_BROADCAST already set.
func enableBroadcast(net.PacketConn) error { return nil }
