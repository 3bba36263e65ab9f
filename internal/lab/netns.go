package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
)

// The lab network lives entirely inside its own network namespace: a
// bridge with the host address and one tap per VM. Nothing is added to the
// root namespace, so no traffic leaves the lab.

// ip runs ip(8) and includes its output in the error.
func ip(args ...string) error {
	out, err := exec.CommandContext(context.Background(), "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NamespaceExists reports whether the named network namespace exists.
func NamespaceExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// ErrLabUp means the lab namespace already exists.
var ErrLabUp = errors.New("the lab network namespace already exists (run `metal-lab down` first)")

// SetupNetwork creates the namespace, the bridge with the host address
// (IPv6 duplicate address detection off, so the router advertisement
// responder has its link-local address at once) and the VMs' taps. On
// failure everything created is removed.
func SetupNetwork(c Config) (err error) {
	c = c.withDefaults()
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if NamespaceExists(c.Namespace) {
		return fmt.Errorf("%w: %s", ErrLabUp, c.Namespace)
	}
	if err := ip("netns", "add", c.Namespace); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = TeardownNetwork(c)
		}
	}()
	ns := c.Namespace
	steps := [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", c.Bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	if out, err := exec.CommandContext(context.Background(), "ip", "netns", "exec", ns, "sh", "-c",
		"echo 0 > /proc/sys/net/ipv6/conf/"+c.Bridge+"/accept_dad").CombinedOutput(); err != nil {
		return fmt.Errorf("disabling DAD on %s: %w: %s", c.Bridge, err, out)
	}
	host := c.HostAddr()
	steps = [][]string{
		{"-n", ns, "addr", "add", host.String() + "/" + fmt.Sprint(c.Subnet.Bits()), "dev", c.Bridge},
		{"-n", ns, "link", "set", c.Bridge, "up"},
	}
	for _, m := range c.Machines() {
		steps = append(steps,
			[]string{"-n", ns, "tuntap", "add", "dev", m.Tap, "mode", "tap"},
			[]string{"-n", ns, "link", "set", m.Tap, "master", c.Bridge},
			[]string{"-n", ns, "link", "set", m.Tap, "up"})
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// TeardownNetwork deletes the namespace (and with it the bridge and the
// taps). Deleting a namespace that does not exist is not an error.
func TeardownNetwork(c Config) error {
	c = c.withDefaults()
	if !NamespaceExists(c.Namespace) {
		return nil
	}
	return ip("netns", "del", c.Namespace)
}

// InNamespace reports whether this process runs in the lab namespace (the
// bridge is visible).
func InNamespace(c Config) bool {
	c = c.withDefaults()
	_, err := net.InterfaceByName(c.Bridge)
	return err == nil
}
