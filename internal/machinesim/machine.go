package machinesim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/iana"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
)

// Machine is one simulated machine. Fill the fields, then call NetBoot. A
// machine boots one thing at a time: do not call NetBoot concurrently on the
// same Machine (different machines are independent).
type Machine struct {
	// MAC is the boot NIC's address (DHCP chaddr). Required.
	MAC net.HardwareAddr
	// Arch is the firmware architecture sent as option 93. The zero value
	// is iana.INTEL_X86PC (legacy BIOS); UEFI x86-64 is iana.EFI_X86_64,
	// arm64 iana.EFI_ARM64. It also sets ${platform} ("pcbios" or "efi")
	// and ${buildarch}.
	Arch iana.Arch
	// DHCPServer is where DISCOVER and REQUEST are sent, unicast. Required.
	DHCPServer *net.UDPAddr
	// ClientPort is the local UDP port (0: an ephemeral port). A server
	// that does not reply to the sender must be told this port through
	// dhcp.ServerConfig.ClientPort.
	ClientPort int
	// DHCPTimeout is how long one DHCP exchange waits for an answer
	// (default 2s); it is tried three times.
	DHCPTimeout time.Duration
	// HTTPClient makes every HTTP request. nil: a client with timeouts
	// whose connections originate from the leased address when it is a
	// loopback address other than 127.0.0.1 (so httpboot's
	// Machine.AllowedSources see the machine's own IP), else from the
	// default address.
	HTTPClient *http.Client
	// Disk is what is installed on the machine. nil: NetBoot sets an empty
	// one.
	Disk *Disk
	// Sleep carries out the script's sleep command and installer retry
	// delays. nil: time is simulated and nothing waits.
	Sleep func(ctx context.Context, d time.Duration) error
	// MaxImageBytes caps one downloaded image (default 1 GiB).
	MaxImageBytes int64
	// Exec, when set, is offered every command the installed system runs
	// (cloud-init runcmd, kickstart %post lines, systemd ExecStart lines)
	// before the simulator's own handling; handled false falls back to it.
	// Tests use it to run real scripts, or start a real process, at the
	// moment the installer would.
	Exec func(ctx context.Context, argv []string) (status int, handled bool)
	// Logger receives debug logs of every step (URLs redacted); nil
	// discards.
	Logger *slog.Logger
}

// Where a run ended up.
const (
	BootedFromNetwork = "network" // a kernel fetched over the network ran (installer, wiper, live system)
	BootedFromDisk    = "disk"    // the firmware booted the local disk
)

// Stages in Result.Stages and StageError.Stage besides those of the boot
// service's routes ("script", "kernel", "initrd", "image", "config/<name>",
// "provisioned").
const (
	StageDHCP  = "dhcp"
	StageDisk  = "disk" // booting the local disk
	StageWipe  = "wipe" // the wiper erased the disk
	StageFetch = "fetch"
)

// Errors (match with errors.Is).
var (
	// ErrNoOS: the machine booted its disk and there was nothing on it.
	ErrNoOS = errors.New("machinesim: no operating system on the disk")
	// ErrRebooted: the script rebooted (or powered off) the machine, which
	// the rendered scripts do after giving up; the error also wraps the
	// last failure (a *StageError).
	ErrRebooted = errors.New("machinesim: the script rebooted the machine")
	// ErrUnknownCommand is wrapped by the *ScriptError of a command the
	// simulated iPXE does not know.
	ErrUnknownCommand = errors.New("unknown command")
)

// StageError is a failure at one stage of the boot.
type StageError struct {
	// Stage is StageDHCP, "script", "kernel", "initrd", "image",
	// "config/<name>", "events", "provisioned", StageWipe, StageDisk...
	Stage string
	// Method and URL (redacted) of the failed request, if any.
	Method, URL string
	// Status is the HTTP status answered; 0 when there was no answer.
	Status int
	Err    error
}

func (e *StageError) Error() string {
	var b strings.Builder
	b.WriteString("machinesim: stage ")
	b.WriteString(e.Stage)
	b.WriteString(": ")
	if e.URL != "" {
		b.WriteString(e.Method + " " + e.URL + ": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString(http.StatusText(e.Status))
	}
	return b.String()
}

func (e *StageError) Unwrap() error { return e.Err }

// ScriptError is an iPXE script the simulator cannot run (not a script, an
// unknown command, a bad goto...).
type ScriptError struct {
	Line    int // 1-based
	Command string
	Err     error
}

func (e *ScriptError) Error() string {
	if e.Command == "" {
		return fmt.Sprintf("machinesim: script line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("machinesim: script line %d: %s: %v", e.Line, e.Command, e.Err)
}

func (e *ScriptError) Unwrap() error { return e.Err }

// Image is one file iPXE downloaded.
type Image struct {
	Name   string // iPXE image name (--name, else the URL's last element)
	Stage  string // "script", "kernel", "initrd", ...
	Size   int64
	SHA256 string
}

// Result is what happened during one NetBoot. NetBoot returns it also with
// an error, filled as far as the boot got.
type Result struct {
	// LeaseIP is the address the DHCP server gave (invalid for a
	// proxyDHCP answer); ServerID its identifier (option 54).
	LeaseIP  netip.Addr
	ServerID netip.Addr
	// ScriptURL is the boot file of the DHCP answer. It carries the
	// machine's secret token: String redacts it, do not log it.
	ScriptURL string
	// Stages are the steps in order: StageDHCP, "script", "kernel",
	// "initrd", "image", "config/<name>", StageWipe, "provisioned",
	// StageDisk.
	Stages []string
	// Reported are the progress stages the machine reported, in order:
	// iPXE's progress fetches ("booting") and the installer's events
	// ("installing", ...).
	Reported []string
	// Images are the files iPXE downloaded, in order.
	Images []Image
	// BootedFrom is BootedFromNetwork or BootedFromDisk; "" when the boot
	// failed before either.
	BootedFrom string
	// Installer is the installer the kernel command line selected:
	// "cloud-init", "kickstart", "ignition", "image", "wipe", or "" (a
	// kernel without a known installer, or no kernel).
	Installer string
	// Provisioned is true once the boot service accepted the provisioned
	// callback (2xx).
	Provisioned bool
}

// String summarises the result without secrets.
func (r *Result) String() string {
	if r == nil {
		return "<nil>"
	}
	lease := "none"
	if r.LeaseIP.IsValid() {
		lease = r.LeaseIP.String()
	}
	return fmt.Sprintf("lease=%s script=%s stages=[%s] reported=[%s] booted_from=%q installer=%q provisioned=%t",
		lease, RedactURL(r.ScriptURL), strings.Join(r.Stages, " "), strings.Join(r.Reported, " "), r.BootedFrom, r.Installer, r.Provisioned)
}

var (
	tokenPathRE  = regexp.MustCompile(`/boot/[A-Za-z0-9_-]{16,128}(/|$)`)
	tokenQueryRE = regexp.MustCompile(`([?&](?:token|access_token|auth)=)[^&#]*`)
)

// RedactURL hides provisioning tokens: the {token} segment of the boot
// service's /boot/{token}/ routes and token= query values.
func RedactURL(s string) string {
	s = tokenPathRE.ReplaceAllString(s, "/boot/REDACTED$1")
	return tokenQueryRE.ReplaceAllString(s, "${1}REDACTED")
}

// stageOf names the stage of a boot-service URL from its route: script,
// kernel, initrd, image, config/<name>, progress/<stage>, events,
// provisioned. Other URLs are StageFetch.
func stageOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return StageFetch
	}
	p := u.Path
	if strings.HasPrefix(p, "/boot/by-mac/") || p == "/boot/local.ipxe" {
		return "script"
	}
	rest, ok := strings.CutPrefix(p, "/boot/")
	if !ok {
		return StageFetch
	}
	_, route, ok := strings.Cut(rest, "/")
	if !ok {
		return StageFetch
	}
	switch {
	case route == render.PathScript:
		return "script"
	case route == render.PathKernel, route == render.PathInitrd, route == render.PathImage,
		route == render.PathEvents, route == render.PathProvisioned:
		return route
	case strings.HasPrefix(route, render.PathConfig), strings.HasPrefix(route, render.PathProgress):
		return strings.TrimSuffix(route, "/")
	}
	return StageFetch
}

// User agents of the programs being imitated.
const (
	uaIPXE      = "iPXE/1.21.1+ (machinesim)"
	uaCloudInit = "Cloud-Init/24.1"
	uaCurl      = "curl/8.5.0"
	uaInstaller = "metal-installer/1 (machinesim)"
)

const maxConfigBytes = 4 << 20

// run is one NetBoot in progress.
type run struct {
	m    *Machine
	ctx  context.Context
	log  *slog.Logger
	hc   *http.Client
	res  *Result
	disk *Disk
	// provisionedErr is the failure of the provisioned callback, if any
	// installer command posted one that was refused.
	provisionedErr error
}

// NetBoot boots the machine from the network once: DHCP, the script, the
// installer (or the local disk, as the script says). The Result is never
// nil; on error it holds what happened before the failure.
func (m *Machine) NetBoot(ctx context.Context) (*Result, error) {
	r := &run{m: m, ctx: ctx, res: &Result{}, log: m.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if m.Disk == nil {
		m.Disk = &Disk{}
	}
	r.disk = m.Disk
	if len(m.MAC) != 6 {
		return r.res, &StageError{Stage: StageDHCP, Err: errors.New("machine has no Ethernet MAC")}
	}
	r.log = r.log.With(slog.String("mac", m.MAC.String()))
	if m.DHCPServer == nil {
		return r.res, &StageError{Stage: StageDHCP, Err: errors.New("machine has no DHCP server address")}
	}
	lease, err := r.dhcp()
	if err != nil {
		return r.res, err
	}
	r.res.LeaseIP, r.res.ServerID, r.res.ScriptURL = lease.ip, lease.serverID, lease.bootFile
	r.res.Stages = append(r.res.Stages, StageDHCP)
	r.log.Debug("dhcp bound", slog.String("ip", lease.ip.String()), slog.String("boot_file", RedactURL(lease.bootFile)))

	r.hc = m.HTTPClient
	if r.hc == nil {
		tr := defaultTransport(lease.ip)
		defer tr.CloseIdleConnections()
		r.hc = &http.Client{Transport: tr}
	}
	ip := newIPXE(r, lease)
	return r.res, ip.autoboot()
}

// defaultTransport dials from src when it is a usable loopback address.
func defaultTransport(src netip.Addr) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if src.IsValid() && src.IsLoopback() && src != netip.AddrFrom4([4]byte{127, 0, 0, 1}) {
		// Only if the address can be bound (Linux binds all of
		// 127.0.0.0/8; other systems may have 127.0.0.1 only).
		if c, err := (&net.ListenConfig{}).ListenPacket(context.Background(), "udp4", netip.AddrPortFrom(src, 0).String()); err == nil {
			_ = c.Close()
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
	}
	return &http.Transport{
		DialContext:           d.DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   4,
		DisableCompression:    true,
	}
}

func (r *run) sleep(d time.Duration) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	if r.m.Sleep == nil || d <= 0 {
		return nil
	}
	return r.m.Sleep(r.ctx, d)
}

// fetched is a downloaded body.
type fetched struct {
	data   []byte
	sha256 string
	status int
}

// get downloads rawURL. Non-200 answers are a *StageError carrying the
// status. Bodies are capped at limit. A "sha256:" ETag must match.
func (r *run) get(stage, rawURL, ua string, limit int64) (*fetched, error) {
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, &StageError{Stage: stage, Method: http.MethodGet, URL: RedactURL(rawURL), Err: errors.New("malformed URL")}
	}
	req.Header.Set("User-Agent", ua)
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, &StageError{Stage: stage, Method: http.MethodGet, URL: RedactURL(rawURL), Err: redactErr(err)}
	}
	defer func() { _ = resp.Body.Close() }()
	serr := func(e error) error {
		return &StageError{Stage: stage, Method: http.MethodGet, URL: RedactURL(rawURL), Status: resp.StatusCode, Err: e}
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, serr(fmt.Errorf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode)))
	}
	h := sha256.New()
	body, err := io.ReadAll(io.TeeReader(io.LimitReader(resp.Body, limit+1), h))
	if err != nil {
		return nil, serr(fmt.Errorf("reading body: %w", redactErr(err)))
	}
	if int64(len(body)) > limit {
		return nil, serr(fmt.Errorf("body larger than %d bytes", limit))
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if et, ok := strings.CutPrefix(strings.Trim(resp.Header.Get("ETag"), `"`), "sha256:"); ok && et != sum {
		return nil, serr(fmt.Errorf("content has sha256 %s, the server's ETag says %s", sum, et))
	}
	r.log.Debug("fetched", slog.String("stage", stage), slog.String("url", RedactURL(rawURL)), slog.Int("bytes", len(body)))
	return &fetched{data: body, sha256: sum, status: resp.StatusCode}, nil
}

// send makes a request with a body and returns the status. Transport
// failures are a *StageError with Status 0.
func (r *run) send(stage, method, rawURL, contentType, ua string, body []byte, hdr http.Header) (int, error) {
	req, err := http.NewRequestWithContext(r.ctx, method, rawURL, strings.NewReader(string(body)))
	if err != nil {
		return 0, &StageError{Stage: stage, Method: method, URL: RedactURL(rawURL), Err: errors.New("malformed URL")}
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", ua)
	resp, err := r.hc.Do(req)
	if err != nil {
		return 0, &StageError{Stage: stage, Method: method, URL: RedactURL(rawURL), Err: redactErr(err)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	r.log.Debug("sent", slog.String("stage", stage), slog.String("method", method), slog.String("url", RedactURL(rawURL)), slog.Int("status", resp.StatusCode))
	return resp.StatusCode, nil
}

// redactErr hides tokens in transport errors (*url.Error quotes the URL)
// while keeping the cause reachable for errors.Is (context.Canceled...).
func redactErr(err error) error {
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	return &redactedError{msg: RedactURL(err.Error()), err: cause}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// reported notes a progress stage the machine reported.
func (r *run) reported(stage string) { r.res.Reported = append(r.res.Reported, stage) }

// stage notes a completed step.
func (r *run) stage(s string) { r.res.Stages = append(r.res.Stages, s) }
