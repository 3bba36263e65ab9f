// Command bootbench runs ONE of the bundled boot service's servers (DHCP,
// TFTP or HTTP artifacts) with benchmark-friendly wiring, until SIGTERM or
// SIGINT, and prints its counters at exit. bench/run drives it against
// perfdhcp, wrk and the tftp-hpa client, side by side with dnsmasq, nginx
// and in.tftpd.
//
//	bootbench dhcp -listen 198.18.0.1:67 -server-ip 198.18.0.1 \
//	    -subnet 198.18.0.0/16 -range 198.18.1.0-198.18.255.254 -store bolt -db /tmp/x.db
//	bootbench tftp -listen 127.0.0.1:6969 -root /srv/tftp -allow ipxe.efi
//	bootbench http -listen 127.0.0.1:8088 -file /tmp/image.bin -cache /tmp/cache
//
// Once its sockets are bound it prints a line starting with "READY"; at exit
// it prints "STATS name=value ..." lines (machine-readable) to stdout.
// -cpuprofile FILE (before or after the subcommand's own flags) writes a CPU
// profile covering the whole run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func usage() {
	fmt.Fprintf(os.Stderr, "usage: bootbench dhcp|tftp|http [flags]   (bootbench CMD -h for flags)\n")
	os.Exit(2)
}

// common are the flags every subcommand has.
type common struct {
	cpuprofile string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
}

// run starts profiling if asked, calls serve with a context that ends on
// SIGTERM/SIGINT, and stops profiling.
func (c *common) run(serve func(ctx context.Context) error) error {
	if c.cpuprofile != "" {
		f, err := os.Create(c.cpuprofile)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serve(ctx)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "dhcp":
		err = runDHCP(os.Args[2:])
	case "tftp":
		err = runTFTP(os.Args[2:])
	case "http":
		err = runHTTP(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bootbench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
