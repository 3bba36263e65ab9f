package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/tftp"
)

func runTFTP(args []string) error {
	fs := flag.NewFlagSet("tftp", flag.ExitOnError)
	var c common
	c.register(fs)
	listen := fs.String("listen", "127.0.0.1:6969", "UDP address to serve TFTP on")
	root := fs.String("root", "", "directory to serve (required)")
	allow := fs.String("allow", "", "comma-separated allow-list (empty: the package default)")
	maxBlock := fs.Int("max-blksize", 0, "tftp.Config.MaxBlockSize (0: from the interface MTU)")
	single := fs.Bool("single-port", false, "tftp.Config.SinglePort")
	timeout := fs.Duration("timeout", 0, "tftp.Config.Timeout (0: package default)")
	_ = fs.Parse(args)
	if *root == "" {
		return fmt.Errorf("-root is required")
	}
	var list []string
	if *allow != "" {
		list = strings.Split(*allow, ",")
	}
	conn, err := (&net.ListenConfig{}).ListenPacket(context.Background(), "udp4", *listen)
	if err != nil {
		return err
	}
	srv, err := tftp.New(conn, tftp.Config{
		Root: *root, AllowList: list, MaxBlockSize: *maxBlock, SinglePort: *single, Timeout: *timeout,
	})
	if err != nil {
		_ = conn.Close()
		return err
	}
	fmt.Printf("READY tftp %s root=%s\n", conn.LocalAddr(), *root)
	began := time.Now()
	err = c.run(srv.Serve)
	s := srv.Stats()
	fmt.Printf("STATS tftp uptime_s=%.1f transfers=%d failed=%d refused=%d bytes=%d active=%d\n",
		time.Since(began).Seconds(), s.Transfers, s.Failed, s.Refused, s.Bytes, s.Active)
	return err
}
