package ra

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv6"
)

// TestListenOnVeth runs the real socket in a throw-away network namespace
// (unshare --net: it disappears with the process, nothing to clean up): a
// veth pair, the responder on one end and a solicitor on the other.
func TestListenOnVeth(t *testing.T) {
	if os.Getenv("METAL_RA_IN_NETNS") != "1" {
		if os.Geteuid() != 0 {
			t.Skip("needs root: creates a network namespace and a raw ICMPv6 socket")
		}
		for _, tool := range []string{"unshare", "ip"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("%s not found", tool)
			}
		}
		cmd := exec.Command("unshare", "--net", os.Args[0], "-test.run=^TestListenOnVeth$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "METAL_RA_IN_NETNS=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestListenOnVeth") {
			t.Fatalf("in a fresh network namespace: %v\n%s", err, out)
		}
		return
	}
	for _, args := range [][]string{
		{"link", "add", "ra0", "type", "veth", "peer", "name", "ra1"},
		{"link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	for _, dev := range []string{"ra0", "ra1"} {
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+dev+"/accept_dad", []byte("0"), 0o644)
		if out, err := exec.Command("ip", "link", "set", dev, "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set %s up: %v %s", dev, err, out)
		}
	}

	conn, ifi, err := Listen("ra0")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Conn: conn, MAC: ifi.HardwareAddr, IfIndex: ifi.Index, MinInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx) }()

	// The solicitor: a raw ICMPv6 socket on ra1 that only takes RAs.
	peer, _, err := Listen("ra1")
	if err != nil {
		t.Fatal(err)
	}
	pc := peer.(*icmpConn).pc
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	if err := pc.SetICMPFilter(&f); err != nil {
		t.Fatal(err)
	}
	ra1, _ := net.InterfaceByName("ra1")
	got := make(chan Packet, 1)
	go func() {
		p, err := peer.Read()
		if err == nil {
			got <- p
		}
	}()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var p Packet
wait:
	for {
		cm := &ipv6.ControlMessage{HopLimit: 255, IfIndex: ra1.Index}
		_, _ = pc.WriteTo(rs(), cm, &net.IPAddr{IP: net.ParseIP("ff02::2"), Zone: "ra1"})
		select {
		case p = <-got:
			break wait
		case <-tick.C:
		case <-deadline:
			t.Fatal("no router advertisement within 10s")
		}
	}
	_ = peer.Close()
	if p.HopLimit != 255 || !p.Src.IsLinkLocalUnicast() {
		t.Fatalf("RA hop limit %d from %s: want 255 from a link-local address", p.HopLimit, p.Src)
	}
	want := buildRA(ifi.HardwareAddr)
	// The kernel filled in the checksum; everything else is ours.
	if len(p.Data) != len(want) || string(p.Data[:2]) != string(want[:2]) || string(p.Data[4:]) != string(want[4:]) {
		t.Fatalf("got % x\nwant % x (checksum aside)", p.Data, want)
	}
	if p.Data[2] == 0 && p.Data[3] == 0 {
		t.Fatal("checksum not filled in")
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
