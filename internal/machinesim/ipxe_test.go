package machinesim

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/iana"
)

// runFiles runs the iPXE interpreter on /boot.ipxe of a server holding
// files, without DHCP.
func runFiles(t *testing.T, arch iana.Arch, disk *Disk, files map[string]string) (*Result, error) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(strings.ReplaceAll(body, "$BASE", "http://"+r.Host)))
	}))
	t.Cleanup(srv.Close)
	if disk == nil {
		disk = &Disk{}
	}
	m := &Machine{MAC: mustMAC("52:54:00:12:34:56"), Arch: arch, Disk: disk}
	r := &run{m: m, ctx: t.Context(), log: slog.New(slog.DiscardHandler), hc: srv.Client(), res: &Result{}, disk: disk}
	x := newIPXE(r, &lease{
		ip: netip.MustParseAddr("127.0.0.9"), netmask: net.CIDRMask(8, 32), routers: []net.IP{{127, 0, 0, 1}},
		bootFile: srv.URL + "/boot.ipxe",
	})
	return r.res, x.autoboot()
}

func installedDisk() *Disk {
	d := &Disk{}
	d.Install(Installation{Kind: "cloud-init"})
	return d
}

func TestScriptControlFlow(t *testing.T) {
	t.Parallel()
	script := `#!ipxe
# comments and blank lines are skipped

set n:int32 0
:loop
inc n
iseq ${n} 3 && goto counted ||
goto loop
:counted
iseq ${net0/mac:hexhyp} 52-54-00-12-34-56 || goto bad
iseq ${mac:hexraw} 525400123456 || goto bad
iseq ${ip} 127.0.0.9 || goto bad
iseq ${netmask} 255.0.0.0 || goto bad
iseq ${gateway} 127.0.0.1 || goto bad
iseq ${no-such-setting}x x || goto bad
set greeting hello  world
iseq "${greeting}" "hello world" || goto bad
isset "${greeting}" || goto bad
clear greeting
isset ${greeting} && goto bad ||
inc n 10
iseq ${n} 13 || goto bad
false && goto bad ||
false || true && goto platform
goto bad
:platform
iseq ${platform} PLATFORM || goto bad
dhcp net0
imgfetch --name extra $BASE/extra.bin && imgfree extra
imgfree
exit 0
:bad
echo bad
reboot
`
	for _, tc := range []struct {
		arch     iana.Arch
		platform string
	}{{iana.INTEL_X86PC, "pcbios"}, {iana.EFI_X86_64, "efi"}} {
		res, err := runFiles(t, tc.arch, installedDisk(), map[string]string{
			"/boot.ipxe": strings.ReplaceAll(script, "PLATFORM", tc.platform),
			"/extra.bin": "x",
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.platform, err)
		}
		if res.BootedFrom != BootedFromDisk || !slices.Equal(res.Stages, []string{"script", "fetch", "disk"}) {
			t.Errorf("%s: %s", tc.platform, res)
		}
	}
}

func TestScriptErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, script string
		check        func(t *testing.T, err error)
	}{
		{"unknown command", "#!ipxe\necho hi\nfrobnicate now\n", func(t *testing.T, err error) {
			var se *ScriptError
			if !errors.As(err, &se) || se.Line != 3 || se.Command != "frobnicate" || !errors.Is(err, ErrUnknownCommand) ||
				!strings.Contains(err.Error(), "frobnicate") {
				t.Fatalf("%v", err)
			}
		}},
		{"unknown command behind ||", "#!ipxe\nfrobnicate || echo fine\nexit\n", func(t *testing.T, err error) {
			if !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("%v", err)
			}
		}},
		{"unknown option", "#!ipxe\nkernel --weird $BASE/k\n", func(t *testing.T, err error) {
			var se *ScriptError
			if !errors.As(err, &se) || se.Command != "kernel" || !strings.Contains(err.Error(), "--weird") {
				t.Fatalf("%v", err)
			}
		}},
		{"failing line aborts", "#!ipxe\nimgfetch $BASE/missing\nexit\n", func(t *testing.T, err error) {
			var se *ScriptError
			if !errors.As(err, &se) || se.Line != 2 || se.Command != "imgfetch" {
				t.Fatalf("%v", err)
			}
			if st := asStageError(t, err); st.Stage != StageFetch || st.Status != http.StatusNotFound {
				t.Fatalf("%v", err)
			}
		}},
		{"not a script", "hello\n", func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "not an iPXE script") {
				t.Fatalf("%v", err)
			}
		}},
		{"no boot", "#!ipxe\necho nothing to do\n", func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "without booting") {
				t.Fatalf("%v", err)
			}
		}},
		{"missing label", "#!ipxe\ngoto nowhere\n", func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), `no label "nowhere"`) {
				t.Fatalf("%v", err)
			}
		}},
		{"endless loop", "#!ipxe\n:a\ngoto a\n", func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "did not finish") {
				t.Fatalf("%v", err)
			}
		}},
		{"reboot", "#!ipxe\nreboot\n", func(t *testing.T, err error) {
			if !errors.Is(err, ErrRebooted) {
				t.Fatalf("%v", err)
			}
		}},
		{"boot nothing", "#!ipxe\nboot\n", func(t *testing.T, err error) {
			var se *ScriptError
			if !errors.As(err, &se) || se.Command != "boot" {
				t.Fatalf("%v", err)
			}
		}},
		{"unterminated quote", "#!ipxe\necho \"oops\n", func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "quote") {
				t.Fatalf("%v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := runFiles(t, iana.INTEL_X86PC, installedDisk(), map[string]string{"/boot.ipxe": tc.script})
			tc.check(t, err)
		})
	}
}

// chain runs a chained script; kernel/initrd/boot boots a live kernel (no
// installer on its command line).
func TestScriptChainAndBoot(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"/boot.ipxe":  "#!ipxe\nchain --autofree $BASE/two.ipxe || goto failed\n:failed\nreboot\n",
		"/two.ipxe":   "#!ipxe\nkernel -n vmlinuz $BASE/vmlinuz initrd=rd quiet\ninitrd --name=rd $BASE/initrd.img\nimgargs vmlinuz initrd=rd console=ttyS0\nboot vmlinuz\n",
		"/vmlinuz":    "MZ kernel",
		"/initrd.img": "initrd",
	}
	for _, arch := range []iana.Arch{iana.INTEL_X86PC, iana.EFI_X86_64} {
		res, err := runFiles(t, arch, nil, files)
		if err != nil {
			t.Fatalf("arch %d: %v", arch, err)
		}
		if res.BootedFrom != BootedFromNetwork || res.Installer != "" ||
			!slices.Equal(res.Stages, []string{"script", "fetch", "fetch", "fetch"}) || len(res.Images) != 4 || res.Images[2].Name != "vmlinuz" {
			t.Errorf("arch %d: %s %+v", arch, res, res.Images)
		}
	}
}

// EFI kernels load initrd= by name: naming one that was not downloaded
// fails the boot.
func TestScriptEFIInitrdByName(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"/boot.ipxe": "#!ipxe\nkernel $BASE/vmlinuz initrd=initrd\ninitrd --name other $BASE/initrd\nboot\n",
		"/vmlinuz":   "k",
		"/initrd":    "i",
	}
	if _, err := runFiles(t, iana.INTEL_X86PC, nil, files); err != nil {
		t.Fatalf("BIOS passes every initrd: %v", err)
	}
	_, err := runFiles(t, iana.EFI_X86_64, nil, files)
	if se := asStageError(t, err); se.Stage != "initrd" || !strings.Contains(err.Error(), `"initrd"`) {
		t.Fatalf("%v", err)
	}
}

// The local-boot script of an empty disk: BIOS sanboot fails and falls
// through to exit; both end at the disk with ErrNoOS.
func TestLocalBootScriptEmptyDisk(t *testing.T) {
	t.Parallel()
	local := "#!ipxe\niseq ${platform} efi && goto metal_efi ||\nsanboot --no-describe --drive 0x80 ||\necho metal: booting drive 0x80 failed\n:metal_efi\nexit 1\n"
	for _, arch := range []iana.Arch{iana.INTEL_X86PC, iana.EFI_X86_64} {
		res, err := runFiles(t, arch, nil, map[string]string{"/boot.ipxe": local})
		if !errors.Is(err, ErrNoOS) || res.BootedFrom != BootedFromDisk {
			t.Fatalf("arch %d: %v %s", arch, err, res)
		}
		res, err = runFiles(t, arch, installedDisk(), map[string]string{"/boot.ipxe": local})
		if err != nil || res.BootedFrom != BootedFromDisk {
			t.Fatalf("arch %d: %v %s", arch, err, res)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	t.Parallel()
	got, err := splitCommand(`kernel  --name k http://x/k a=b;c "quoted arg" 'single' esc\ aped && goto ok ||`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel", "--name", "k", "http://x/k", "a=b;c", "quoted arg", "single", "esc aped", "&&", "goto", "ok", "||"}
	if !slices.Equal(got, want) {
		t.Fatalf("%q", got)
	}
}

func TestShellSplitAndCurl(t *testing.T) {
	t.Parallel()
	words, err := shellSplit(`curl -fsS -m 10 -X POST -H 'Content-Type: application/json' -d '{"stage":"a"}' "http://x/y" || true # done`)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, w := range words {
		texts = append(texts, w.text)
	}
	want := []string{"curl", "-fsS", "-m", "10", "-X", "POST", "-H", "Content-Type: application/json", "-d", `{"stage":"a"}`, "http://x/y", "||", "true"}
	if !slices.Equal(texts, want) || !words[11].op {
		t.Fatalf("%q", texts)
	}
	c, err := parseCurl(texts[1:11])
	if err != nil {
		t.Fatal(err)
	}
	if c.method != "POST" || c.url != "http://x/y" || !c.fail || c.header.Get("Content-Type") != "application/json" || c.data[0] != `{"stage":"a"}` {
		t.Fatalf("%+v", c)
	}
	if _, err := parseCurl([]string{"--frobnicate", "http://x"}); err == nil {
		t.Fatal("unknown curl option accepted")
	}
	env, err := parseEnvFile([]byte("# c\nA=plain\nB='it'\\''s'\nC=\"dq $x\"\nD=\n"))
	if err != nil || env["A"] != "plain" || env["B"] != "it's" || env["C"] != "dq $x" || env["D"] != "" {
		t.Fatalf("%v %q", err, env)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://h:1/boot/tok_AAAAAAAAAAAAAAAAAAAAAAAA/kernel":         "http://h:1/boot/REDACTED/kernel",
		"http://h:1/boot/tok_AAAAAAAAAAAAAAAAAAAAAAAA":                "http://h:1/boot/REDACTED",
		"http://h/ipxe/script/52:54?token=s3cr3t&x=1":                 "http://h/ipxe/script/52:54?token=REDACTED&x=1",
		"http://h:1/boot/by-mac/52:54:00:aa:bb:01/script.ipxe":        "http://h:1/boot/by-mac/52:54:00:aa:bb:01/script.ipxe",
		"http://h:1/boot/local.ipxe":                                  "http://h:1/boot/local.ipxe",
		"ds=nocloud-net;s=http://h/boot/0123456789abcdef0123/config/": "ds=nocloud-net;s=http://h/boot/REDACTED/config/",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"http://h/boot/tok_AAAAAAAAAAAAAAAAAAAAAAAA/config/user-data": "config/user-data",
		"http://h/boot/tok_AAAAAAAAAAAAAAAAAAAAAAAA/progress/booting": "progress/booting",
		"http://h/boot/tok_AAAAAAAAAAAAAAAAAAAAAAAA/provisioned":      "provisioned",
		"http://h/boot/by-mac/52:54:00:aa:bb:01/script.ipxe":          "script",
		"http://h/other": StageFetch,
	} {
		if got := stageOf(in); got != want {
			t.Errorf("stageOf(%q) = %q, want %q", in, got, want)
		}
	}
}
