package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsageAndUnknownCommands(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if err := run(nil, &out, &errOut); err == nil || !strings.Contains(errOut.String(), "usage: metal-lab") {
		t.Fatalf("no command: %v %q", err, errOut.String())
	}
	errOut.Reset()
	if err := run([]string{"frobnicate"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Fatalf("unknown command: %v", err)
	}
}

func TestStatusWithoutALab(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	err := run([]string{"status", "-dir", t.TempDir()}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "metal-lab up") {
		t.Fatalf("status without a lab: %v", err)
	}
}

func TestQEMUCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	err := run([]string{"qemu-cmd", "-name", "bios-0", "-tap", "tap-x", "-disk", filepath.Join(dir, "d.raw"), "-vm-dir", filepath.Join(dir, "vm"), "-accel", "tcg"}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	joined := strings.Join(lines, " ")
	if lines[0] != "qemu-system-x86_64" || !strings.Contains(joined, "ifname=tap-x,") || !strings.Contains(joined, "bootindex=1") || lines[len(lines)-1] != "-no-reboot" {
		t.Fatalf("qemu-cmd printed:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "vm")); err != nil {
		t.Fatal("the VM directory was not created")
	}
	if err := run([]string{"qemu-cmd", "-name", "sparc-0", "-disk", "x", "-vm-dir", dir}, &out, &errOut); err == nil {
		t.Fatal("unknown machine accepted")
	}
}
