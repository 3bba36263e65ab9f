// Package dhcp is the DHCPv4 side of the bundled boot service: an
// authoritative or proxyDHCP server that answers PXE, UEFI HTTP boot and iPXE
// clients of registered machines.
//
// The package is framework-free and split in three layers:
//
//   - [Backend], [LeaseStore] and [Observer] are small interfaces the caller
//     (the provisioning engine) implements. The package never decides who a
//     machine is; it asks Backend.Lookup by MAC.
//   - [Handler] turns one request into one reply (or none). The reply is
//     built by pure functions from the request, the resolved machine and the
//     [Config]; the only side effects are the Backend, LeaseStore and
//     Observer calls.
//   - [Server] owns the sockets: a read loop per socket (port 67 and
//     optionally the PXE boot-server port 4011) feeding a bounded worker pool,
//     and the RFC 2131 choice of where each reply goes.
//
// Typical wiring (the engine implements Backend and LeaseStore):
//
//	h, err := dhcp.NewHandler(dhcp.Config{
//		ServerIP: serverIP,
//		Subnets:  []dhcp.Subnet{{Name: "lab", Prefix: prefix, RangeStart: lo, RangeEnd: hi, Interface: "eth1"}},
//		Boot:     dhcp.BootConfig{HTTPBaseURL: "http://10.0.0.1:8080/ipxe/"},
//		Logger:   logger, Observer: engine,
//	}, engine, leaseStore)
//	conn, err := server4.NewIPv4UDPConn("eth1", &net.UDPAddr{Port: dhcp.ServerPort})
//	srv, err := dhcp.NewServer(dhcp.ServerConfig{Conn: conn, Handler: h, Logger: logger})
//	err = srv.Serve(ctx) // returns nil once ctx ends
//
// Protocol choices worth knowing (see the shared boot-services reference):
//
//   - Firmware is recognised by option 60 starting with "PXEClient" or
//     "HTTPClient"; iPXE by user class (option 77) "iPXE" or the presence of
//     option 175. Everything else (the installed OS) only gets an address.
//   - iPXE receives the machine's script URL and option 175/176
//     (no-pxedhcp=1) so it does not wait for proxyDHCP offers. The URL carries
//     a secret and is never logged or put into an Event.
//   - UEFI PXE clients do not get option 60 "PXEClient" echoed unless
//     BootConfig.PXEBootServer says port 4011 is served: with it, OVMF goes
//     looking for a boot server and fails with PXE-E16 when there is none.
//   - proxyDHCP offers carry yiaddr 0.0.0.0, option 60 "PXEClient" and
//     option 43 with PXE_DISCOVERY_CONTROL (sub-option 6) = 8: "use the boot
//     file name in this offer, skip boot server discovery".
//   - Relayed requests are answered to giaddr:67, option 82 is echoed
//     unchanged, and the subnet is chosen by RFC 3527 link selection, option
//     118 or giaddr.
package dhcp
