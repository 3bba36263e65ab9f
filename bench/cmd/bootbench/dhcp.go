package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/dhcp"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
	"github.com/composable-metal/terraform-provider-metal/internal/store"
)

// unknownBackend knows no machine: with dhcp.UnknownServe every client is
// served from the range, like perfdhcp's simulated clients need.
type unknownBackend struct{}

func (unknownBackend) Lookup(context.Context, dhcp.LookupRequest) (*dhcp.Machine, error) {
	return nil, dhcp.ErrUnknownMachine
}
func (unknownBackend) RecordDiscovery(context.Context, dhcp.Discovery) error { return nil }
func (unknownBackend) ReservedBy(context.Context, netip.Addr) (net.HardwareAddr, error) {
	return nil, nil
}

func runDHCP(args []string) error {
	fs := flag.NewFlagSet("dhcp", flag.ExitOnError)
	var c common
	c.register(fs)
	listen := fs.String("listen", "0.0.0.0:67", "UDP address to serve DHCP on")
	serverIP := fs.String("server-ip", "", "server identifier (option 54); default: the -listen address")
	subnet := fs.String("subnet", "198.18.0.0/16", "subnet served (must contain the relay's giaddr)")
	rng := fs.String("range", "198.18.1.0-198.18.255.254", "dynamic range START-END")
	leaseTime := fs.Duration("lease-time", time.Hour, "lease time")
	storeKind := fs.String("store", "mem", "lease store: mem (dhcp.MemoryLeaseStore) or bolt (internal/store, the persistent path)")
	dbPath := fs.String("db", "", "bbolt file for -store bolt (removed first if -fresh)")
	fresh := fs.Bool("fresh", true, "start -store bolt from an empty file")
	noSync := fs.Bool("nosync", false, "bolt: skip fsync (not the product's setting)")
	workers := fs.Int("workers", 0, "dhcp.ServerConfig.Workers (0: package default)")
	queue := fs.Int("queue", 0, "dhcp.ServerConfig.QueueSize (0: package default)")
	relayPort := fs.Int("relay-port", dhcp.ServerPort, "port replies to relays (giaddr) go to")
	clientPort := fs.Int("client-port", dhcp.ClientPort, "port replies to clients go to")
	toSender := fs.Bool("reply-to-sender", false, "answer every request to its source address (loopback tests)")
	rcvbuf := fs.Int("rcvbuf", 0, "SO_RCVBUF in bytes (0: leave the kernel default, as the product does)")
	_ = fs.Parse(args)

	prefix, err := netip.ParsePrefix(*subnet)
	if err != nil {
		return err
	}
	lo, hi, ok := strings.Cut(*rng, "-")
	if !ok {
		return fmt.Errorf("-range wants START-END")
	}
	start, err := netip.ParseAddr(lo)
	if err != nil {
		return err
	}
	end, err := netip.ParseAddr(hi)
	if err != nil {
		return err
	}
	laddr, err := netip.ParseAddrPort(*listen)
	if err != nil {
		return err
	}
	sid := laddr.Addr()
	if *serverIP != "" {
		if sid, err = netip.ParseAddr(*serverIP); err != nil {
			return err
		}
	}

	var leases dhcp.LeaseStore
	var st *store.Store
	switch *storeKind {
	case "mem":
		leases = &dhcp.MemoryLeaseStore{}
	case "bolt":
		if *dbPath == "" {
			return errors.New("-store bolt needs -db")
		}
		if *fresh {
			_ = os.Remove(*dbPath)
		}
		st, err = store.Open(*dbPath, store.Options{NoSync: *noSync})
		if err != nil {
			return err
		}
		defer func() { _ = st.Close() }()
		leases = engine.DHCPLeaseStore(st)
	default:
		return fmt.Errorf("-store %q: want mem or bolt", *storeKind)
	}

	h, err := dhcp.NewHandler(dhcp.Config{
		ServerIP: sid,
		Unknown:  dhcp.UnknownServe,
		Subnets: []dhcp.Subnet{{
			Name: "bench", Prefix: prefix, RangeStart: start, RangeEnd: end, LeaseTime: *leaseTime,
		}},
	}, unknownBackend{}, leases)
	if err != nil {
		return err
	}
	conn, err := (&net.ListenConfig{}).ListenPacket(context.Background(), "udp4", *listen)
	if err != nil {
		return err
	}
	if *rcvbuf > 0 {
		if uc, ok := conn.(*net.UDPConn); ok {
			if err := uc.SetReadBuffer(*rcvbuf); err != nil {
				return err
			}
		}
	}
	srv, err := dhcp.NewServer(dhcp.ServerConfig{
		Conn: conn, Handler: h, Workers: *workers, QueueSize: *queue,
		ClientPort: *clientPort, RelayPort: *relayPort, ReplyToSender: *toSender,
	})
	if err != nil {
		_ = conn.Close()
		return err
	}
	rcvbufDrops0 := udpRcvbufErrors()
	fmt.Printf("READY dhcp %s store=%s subnet=%s range=%s\n", conn.LocalAddr(), *storeKind, prefix, *rng)
	began := time.Now()
	err = c.run(srv.Serve)
	elapsed := time.Since(began)

	s := srv.Stats()
	var rx, tx []string
	for mt, n := range s.Received {
		rx = append(rx, fmt.Sprintf("rx_%s=%d", strings.ToLower(mt.String()), n))
	}
	for mt, n := range s.Sent {
		tx = append(tx, fmt.Sprintf("tx_%s=%d", strings.ToLower(mt.String()), n))
	}
	sort.Strings(rx)
	sort.Strings(tx)
	fmt.Printf("STATS dhcp uptime_s=%.1f %s %s malformed=%d dropped=%d unanswered=%d errors=%d send_errors=%d kernel_rcvbuf_drops=%d\n",
		elapsed.Seconds(), strings.Join(rx, " "), strings.Join(tx, " "),
		s.Malformed, s.Dropped, s.Unanswered, s.Errors, s.SendErrors, udpRcvbufErrors()-rcvbufDrops0)
	return err
}

// udpRcvbufErrors reads the kernel's UDP RcvbufErrors counter of the current
// network namespace (datagrams dropped because a socket's buffer was full);
// -1 when unknown. bench/run gives each server a fresh namespace, so the
// delta over the run is this server's.
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var hdr []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if hdr == nil {
			hdr = f
			continue
		}
		for i, k := range hdr {
			if k == "RcvbufErrors" && i < len(f) {
				n, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					return -1
				}
				return n
			}
		}
	}
	return -1
}
