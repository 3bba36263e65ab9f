package engine

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sync/errgroup"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/agentapi"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/artifact"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/dhcp"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/httpboot"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/tftp"
	"github.com/composable-metal/terraform-provider-metal/internal/roles"
	"github.com/composable-metal/terraform-provider-metal/internal/store"
)

// Machine statuses kept in the store.
const (
	statusProvisioning = "provisioning"
	statusProvisioned  = "provisioned"
	statusWiping       = "wiping"
	statusWiped        = "wiped"
	statusDiscovered   = "discovered"
)

// registration is one machine the boot service answers, indexed in memory
// so DHCP and HTTP lookups never touch the disk.
type registration struct {
	id       string
	macs     []string
	ip       netip.Addr // static reservation, or zero
	leased   netip.Addr // address seen in the last DHCP ACK
	hostname string
	token    string
	action   httpboot.Action
	vars     render.MachineVars
	status   string
	// provisionedAt marks when the machine reported done; a DHCP request
	// afterwards means it booted again (from disk).
	provisionedAt time.Time
	bootedAt      time.Time
	// failed is what the machine reported when it gave up.
	failed string
	// nonce derives the token and the agent credential.
	nonce string
	// report is the role agent's last report; agentSeen its last poll.
	report     *roles.Report
	reportedAt time.Time
	agentSeen  time.Time
}

// persisted is what the store keeps of a registration besides its indexed
// fields. The token is never stored: it is re-derived from the nonce.
type persisted struct {
	Nonce  string             `json:"nonce"`
	Action httpboot.Action    `json:"action"`
	Vars   render.MachineVars `json:"vars"`
}

// bootService runs DHCP, TFTP and HTTP for provisioning and implements the
// backends those servers ask.
type bootService struct {
	cfg     BootConfig
	log     *slog.Logger
	store   *store.Store
	cache   *artifact.Cache
	secret  []byte
	baseURL string

	// rolesMu serialises catalog changes (read, check, write).
	rolesMu sync.Mutex

	mu     sync.Mutex
	byID   map[string]*registration
	byMAC  map[string]*registration
	byHash map[[32]byte]*registration
	// changed is closed and replaced whenever any registration changes.
	changed chan struct{}

	listenMu  sync.Mutex
	listening bool
	dhcpSrv   *dhcp.Server
	tftpSrv   *tftp.Server
	httpBytes atomic.Uint64
	stop      context.CancelFunc
	done      chan error
}

// startBootService opens the store, the cache and the token key; serve
// binds the listeners.
func startBootService(cfg BootConfig, log *slog.Logger) (*bootService, error) {
	if !cfg.Address.IsValid() {
		return nil, fmt.Errorf("%w: boot_service.address is required", ErrBootServiceNotConfigured)
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("%w: boot_service.state_dir is required", ErrBootServiceNotConfigured)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the boot service state_dir: %w", err)
	}
	secret, err := loadSecret(filepath.Join(cfg.StateDir, "token.key"))
	if err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(cfg.StateDir, "metal.db"), store.Options{Logger: log})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return nil, fmt.Errorf("%w: %s is used by another process (another terraform run or a metal daemon); use a different boot_service.state_dir or wait for it: %w", ErrStateInUse, cfg.StateDir, err)
		}
		return nil, fmt.Errorf("opening the boot service store: %w", err)
	}
	cache, err := artifact.New(filepath.Join(cfg.StateDir, "artifacts"), artifact.Options{Logger: log})
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("opening the artifact cache: %w", err)
	}
	s := &bootService{
		cfg: cfg, log: log, store: st, cache: cache, secret: secret,
		byID: map[string]*registration{}, byMAC: map[string]*registration{}, byHash: map[[32]byte]*registration{},
		changed: make(chan struct{}),
	}
	if err := s.load(); err != nil {
		_ = st.Close()
		return nil, err
	}
	if _, port, err := net.SplitHostPort(cmpOr(cfg.HTTPListen, defaultHTTPListen)); err == nil && port != "0" {
		s.baseURL = "http://" + net.JoinHostPort(cfg.Address.String(), port)
	}
	return s, nil
}

const defaultHTTPListen = "0.0.0.0:8080"

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// serve binds the listeners on first use. Images, timelines and plan-time
// renderings need only the store, so `terraform plan` binds no ports.
func (s *bootService) serve() error {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	if s.listening {
		return nil
	}
	if err := s.listen(); err != nil {
		return err
	}
	s.listening = true
	return nil
}

func loadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading the boot service token key: %w", err)
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("writing the boot service token key: %w", err)
	}
	return b, nil
}

// tokenFor derives a provisioning token: only its hash is stored, and a
// restarted service can still hand the machine its script URL.
func (s *bootService) tokenFor(id, nonce string) string {
	return s.derive("provisioning-token", id, nonce)
}

// derive is the per-state key's HMAC of a purpose, a machine and its
// registration nonce, base64url: secrets that need only the nonce stored.
func (s *bootService) derive(purpose, id, nonce string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(purpose + "\x00" + id + "\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *bootService) load() error {
	machines, err := s.store.ListMachines()
	if err != nil {
		return fmt.Errorf("loading registrations: %w", err)
	}
	for _, m := range machines {
		if m.Status == statusDiscovered {
			continue
		}
		var p persisted
		if err := json.Unmarshal([]byte(m.InstallInputs["registration"]), &p); err != nil {
			s.log.Warn("skipping an unreadable registration", "machine_id", m.ID, "error", err.Error())
			continue
		}
		r := &registration{id: m.ID, macs: m.MACs, ip: m.IP, hostname: m.Hostname, action: p.Action, vars: p.Vars, status: m.Status,
			token: s.tokenFor(m.ID, p.Nonce), nonce: p.Nonce}
		if rep, err := s.store.GetRoleReport(m.ID); err == nil {
			var rr roles.Report
			if json.Unmarshal(rep.Report, &rr) == nil {
				r.report, r.reportedAt = &rr, rep.ReceivedAt
			}
		}
		if m.Status == statusProvisioned || m.Status == statusWiped {
			r.provisionedAt = m.UpdatedAt
		}
		s.index(r)
	}
	return nil
}

// index adds r to the maps. Caller holds s.mu or owns s exclusively.
func (s *bootService) index(r *registration) {
	s.byID[r.id] = r
	for _, mac := range r.macs {
		s.byMAC[mac] = r
	}
	if r.provisionedAt.IsZero() {
		s.byHash[httpboot.TokenHash(r.token)] = r
	}
}

func (s *bootService) unindex(r *registration) {
	delete(s.byID, r.id)
	for _, mac := range r.macs {
		if s.byMAC[mac] == r {
			delete(s.byMAC, mac)
		}
	}
	delete(s.byHash, httpboot.TokenHash(r.token))
}

// notify wakes waiters. Caller holds s.mu.
func (s *bootService) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *bootService) listen() (err error) {
	var closers []func() error
	defer func() {
		if err != nil {
			for _, c := range closers {
				_ = c()
			}
		}
	}()

	httpAddr := cmpOr(s.cfg.HTTPListen, defaultHTTPListen)
	hl, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", httpAddr)
	if err != nil {
		return bindError("HTTP", httpAddr, "tcp", err)
	}
	closers = append(closers, hl.Close)
	_, port, _ := net.SplitHostPort(hl.Addr().String())
	s.baseURL = "http://" + net.JoinHostPort(s.cfg.Address.String(), port)

	ipxeDir := s.cfg.IPXEDir
	if ipxeDir == "" {
		ipxeDir = "/usr/lib/ipxe"
	}
	handler, err := httpboot.New(httpboot.Config{Backend: s, Artifacts: s.cache, BaseURL: s.baseURL, BinariesDir: dirIfExists(ipxeDir), Logger: s.log.With("subsystem", "http")})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/agent/", agentapi.New(agentapi.Config{Backend: s, BinaryPath: agentBinary(s.cfg.AgentBinary), Logger: s.log.With("subsystem", "agent")}))
	mux.Handle("/", handler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}

	var dhcpSrv *dhcp.Server
	if mode := s.cfg.DHCP.Mode; mode != "" && mode != DHCPOff {
		conn, pxeConn, loopback, err := s.dhcpConns()
		if err != nil {
			return err
		}
		closers = append(closers, conn.Close)
		if pxeConn != nil {
			closers = append(closers, pxeConn.Close)
		}
		h, err := dhcp.NewHandler(s.dhcpConfig(pxeConn != nil), s, leaseAdapter{s.store})
		if err != nil {
			return fmt.Errorf("boot_service.dhcp: %w", err)
		}
		dhcpSrv, err = dhcp.NewServer(dhcp.ServerConfig{Conn: conn, PXEConn: pxeConn, Handler: h, ReplyToSender: loopback, Logger: s.log.With("subsystem", "dhcp")})
		if err != nil {
			return fmt.Errorf("boot_service.dhcp: %w", err)
		}
	}

	var tftpSrv *tftp.Server
	if s.cfg.TFTP.Enabled {
		for _, f := range []string{"undionly.kpxe", "ipxe.efi"} {
			if _, err := os.Stat(filepath.Join(ipxeDir, f)); err != nil {
				return fmt.Errorf("boot_service: iPXE binary %s is missing from %s; install Debian's ipxe package (apt-get install ipxe) or set boot_service.ipxe_dir to a directory holding undionly.kpxe and ipxe.efi", f, ipxeDir)
			}
		}
		addr := s.cfg.TFTP.Listen
		if addr == "" {
			addr = "0.0.0.0:69"
		}
		pc, err := (&net.ListenConfig{}).ListenPacket(context.Background(), "udp4", addr)
		if err != nil {
			return bindError("TFTP", addr, "udp", err)
		}
		closers = append(closers, pc.Close)
		tftpSrv, err = tftp.New(pc, tftp.Config{Root: ipxeDir, Logger: s.log.With("subsystem", "tftp"), Observer: tftp.ObserverFunc(s.observeTFTP)})
		if err != nil {
			return fmt.Errorf("boot_service.tftp: %w", err)
		}
	}

	raSrv, err := s.routerAdvertisements()
	if err != nil {
		return err
	}

	s.dhcpSrv, s.tftpSrv = dhcpSrv, tftpSrv
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.done = make(chan error, 1)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		go func() {
			<-gctx.Done()
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdown)
		}()
		if err := srv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if dhcpSrv != nil {
		g.Go(func() error { return dhcpSrv.Serve(gctx) })
	}
	if tftpSrv != nil {
		g.Go(func() error { return tftpSrv.Serve(gctx) })
	}
	if raSrv != nil {
		g.Go(func() error { s.serveRA(gctx, raSrv); return nil })
	}
	go func() { s.done <- g.Wait() }()
	s.log.Info("boot service started", "http", s.baseURL, "dhcp", s.cfg.DHCP.Mode, "tftp", s.cfg.TFTP.Enabled, "router_advertisements", raSrv != nil)
	return nil
}

// agentBinary is the binary served to machines as their role agent:
// configured, or this very binary when it is a Linux one.
func agentBinary(configured string) string {
	if configured != "" || runtime.GOOS != "linux" {
		return configured
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return exe
}

func dirIfExists(d string) string {
	if fi, err := os.Stat(d); err == nil && fi.IsDir() {
		return d
	}
	return ""
}

// dhcpConns binds port 67 (and 4011 in proxy mode). A loopback address is a
// test setup: replies then return to the sender.
func (s *bootService) dhcpConns() (conn, pxe net.PacketConn, loopback bool, err error) {
	addr := s.cfg.DHCP.Listen
	if addr == "" {
		addr = "0.0.0.0:67"
	}
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, nil, false, fmt.Errorf("boot_service.dhcp.listen %q: %w", addr, err)
	}
	loopback = ua.IP != nil && ua.IP.IsLoopback()
	if loopback {
		conn, err = net.ListenUDP("udp4", ua)
	} else {
		// SO_BROADCAST, SO_REUSEADDR and, with an interface, SO_BINDTODEVICE.
		conn, err = server4.NewIPv4UDPConn(s.cfg.Interface, ua)
	}
	if err != nil {
		return nil, nil, false, bindError("DHCP", addr, "udp", err)
	}
	if s.cfg.DHCP.Mode == DHCPProxy {
		pa := &net.UDPAddr{IP: ua.IP, Port: dhcp.PXEServerPort}
		if loopback {
			pa.Port = 0
		}
		pxe, err = net.ListenUDP("udp4", pa)
		if err != nil {
			_ = conn.Close()
			return nil, nil, false, bindError("proxyDHCP", pa.String(), "udp", err)
		}
	}
	return conn, pxe, loopback, nil
}

func (s *bootService) dhcpConfig(pxeServed bool) dhcp.Config {
	d := s.cfg.DHCP
	cfg := dhcp.Config{
		ServerIP: s.cfg.Address,
		Unknown:  dhcp.UnknownIgnore,
		Boot: dhcp.BootConfig{
			TFTPServer:    s.cfg.Address,
			HTTPBaseURL:   httpboot.BinaryURL(s.baseURL, ""),
			PXEBootServer: pxeServed,
		},
		Logger:   s.log.With("subsystem", "dhcp"),
		Observer: dhcp.ObserverFunc(s.observeDHCP),
	}
	if d.Discovery {
		cfg.Unknown = dhcp.UnknownDiscover
	}
	if d.Mode == DHCPProxy {
		cfg.Mode = dhcp.ModeProxy
		return cfg
	}
	sub := dhcp.Subnet{Name: "provisioning", Prefix: d.Subnet, RangeStart: d.RangeStart, RangeEnd: d.RangeEnd, DNS: d.DNS, LeaseTime: d.LeaseTime, Interface: s.cfg.Interface}
	if d.Router.IsValid() {
		sub.Routers = []netip.Addr{d.Router}
	}
	cfg.Subnets = []dhcp.Subnet{sub}
	return cfg
}

// bindError explains the usual reasons a port cannot be bound.
func bindError(what, addr, network string, err error) error {
	var why string
	switch {
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		why = fmt.Sprintf("binding %s on %s/%s needs root or CAP_NET_BIND_SERVICE: run terraform as root, grant the capability (setcap cap_net_bind_service=+ep on the provider binary), or run the boot service as the metal daemon", what, addr, network)
	case errors.Is(err, syscall.EADDRINUSE):
		why = fmt.Sprintf("%s address %s/%s is already in use (another DHCP/TFTP/HTTP server, or another metal boot service): stop it or choose another address", what, addr, network)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		why = fmt.Sprintf("%s address %s is not an address of this host: set boot_service.address to an address of the provisioning interface", what, addr)
	default:
		why = fmt.Sprintf("binding %s on %s/%s", what, addr, network)
	}
	return fmt.Errorf("%w: %s: %w", ErrBind, why, err)
}

// Close stops the servers and the store.
func (s *bootService) Close() error {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
	return s.store.Close()
}

// --- registrations ---

// register stores a fresh provisioning of machine id and indexes it. Any
// previous registration of the machine (or of its MACs) is replaced.
func (s *bootService) register(id string, macs []string, ip netip.Addr, action httpboot.Action, vars render.MachineVars) error {
	nonceBytes := make([]byte, 16)
	if _, err := rand.Read(nonceBytes); err != nil {
		return err
	}
	nonce := hex.EncodeToString(nonceBytes)
	token := s.tokenFor(id, nonce)
	vars.Token = token
	if err := vars.Validate(); err != nil {
		return err
	}
	vars.Token = ""
	blob, err := json.Marshal(persisted{Nonce: nonce, Action: action, Vars: vars})
	if err != nil {
		return err
	}
	status := statusProvisioning
	if action == httpboot.ActionWipe {
		status = statusWiping
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, mac := range macs {
		if old, ok := s.byMAC[mac]; ok && old.id != id {
			return fmt.Errorf("MAC %s is already registered to machine %s", mac, old.id)
		}
		// A MAC recorded by discovery belongs to this machine now.
		_ = s.store.DeleteMachine(discoveredID(mac))
	}
	old, hadOld := s.byID[id]
	if _, err := s.store.PutMachine(store.Machine{
		ID: id, MACs: macs, Hostname: vars.Hostname, IP: ip, Status: status,
		TokenHash: store.HashToken(token), InstallInputs: map[string]string{"registration": string(blob)},
	}); err != nil {
		return fmt.Errorf("registering machine %s: %w", id, err)
	}
	r := &registration{id: id, macs: macs, ip: ip, hostname: vars.Hostname, token: token, action: action, vars: vars, status: status, nonce: nonce}
	if hadOld {
		r.leased = old.leased
		s.unindex(old)
	}
	s.index(r)
	s.record(id, "engine", "registered", "")
	s.notify()
	return nil
}

func (s *bootService) deregister(id string) error {
	s.mu.Lock()
	r, ok := s.byID[id]
	if ok {
		s.unindex(r)
		s.notify()
	}
	s.mu.Unlock()
	if ok {
		for _, mac := range r.macs {
			if err := s.store.DeleteLease(mac); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	if err := s.store.DeleteMachine(id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return s.store.DeleteRoleReport(id)
}

func (s *bootService) record(id, source, stage, msg string) {
	if _, err := s.store.AppendEvent(store.Event{MachineID: id, Source: source, Type: stage, Message: msg}); err != nil {
		s.log.Warn("recording a timeline event failed", "machine_id", id, "error", err.Error())
	}
}

func (s *bootService) timeline(id string) []TimelineEvent {
	events, err := s.store.ListEvents(id, 0)
	if err != nil {
		return nil
	}
	out := make([]TimelineEvent, 0, len(events))
	for _, e := range events {
		out = append(out, TimelineEvent{Time: e.Time, Source: e.Source, Stage: e.Type, Message: e.Message})
	}
	return out
}

// wait blocks until machine id reaches target (provisioned or booted).
func (s *bootService) wait(ctx context.Context, id, target string) error {
	for {
		s.mu.Lock()
		r, ok := s.byID[id]
		changed := s.changed
		reached := ok && ((target == WaitProvisioned && !r.provisionedAt.IsZero()) || (target == WaitBooted && !r.bootedAt.IsZero()))
		var failed string
		if ok {
			failed = r.failed
		}
		s.mu.Unlock()
		if !ok {
			return fmt.Errorf("machine %s was deregistered while waiting", id)
		}
		if failed != "" {
			return fmt.Errorf("the machine reported a failure: %s", failed)
		}
		if reached {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrProvisionTimeout, ctx.Err())
		}
	}
}

func (s *bootService) leasedIP(id string) netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.byID[id]; ok {
		if r.ip.IsValid() {
			return r.ip
		}
		return r.leased
	}
	return netip.Addr{}
}

func discoveredID(mac string) string { return "discovered-" + mac }

// --- dhcp.Backend ---

func (s *bootService) Lookup(_ context.Context, req dhcp.LookupRequest) (*dhcp.Machine, error) {
	s.mu.Lock()
	r, ok := s.byMAC[req.MAC.String()]
	s.mu.Unlock()
	if !ok {
		return nil, dhcp.ErrUnknownMachine
	}
	m := &dhcp.Machine{MAC: req.MAC, IP: r.ip, Hostname: r.hostname, Netboot: true}
	if r.provisionedAt.IsZero() {
		m.ScriptURL = httpboot.ScriptURL(s.baseURL, r.token)
	} else {
		// Done installing: the next network boot goes on to the local disk.
		m.ScriptURL = httpboot.LocalBootURL(s.baseURL)
	}
	return m, nil
}

func (s *bootService) RecordDiscovery(_ context.Context, d dhcp.Discovery) error {
	mac := d.MAC.String()
	if _, err := s.store.GetMachine(discoveredID(mac)); err == nil {
		return nil // already known; DHCP retries would otherwise write on every packet
	}
	_, err := s.store.PutMachine(store.Machine{
		ID: discoveredID(mac), MACs: []string{mac}, Status: statusDiscovered,
		InstallInputs: map[string]string{
			"vendor_class": d.VendorClass, "user_class": d.UserClass, "arch": archName(d),
			"circuit_id": d.CircuitID, "remote_id": d.RemoteID, "relay": addrString(d.RelayAddr), "interface": d.Interface,
		},
	})
	return err
}

func archName(d dhcp.Discovery) string {
	if !d.HasArch {
		return ""
	}
	return d.Arch.String()
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func (s *bootService) ReservedBy(_ context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	// Called with the allocator's lock held: memory only.
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.byID {
		if r.ip == ip && len(r.macs) > 0 {
			return net.ParseMAC(r.macs[0])
		}
	}
	return nil, nil
}

func (s *bootService) observeDHCP(_ context.Context, e dhcp.Event) {
	if e.MAC == nil || e.Type == dhcp.EventIgnored {
		return
	}
	s.mu.Lock()
	r, ok := s.byMAC[e.MAC.String()]
	if ok && e.Type == dhcp.EventAck && e.IP.IsValid() {
		r.leased = e.IP
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	msg := ""
	if e.IP.IsValid() {
		msg = e.IP.String()
	}
	if e.Reason != "" {
		msg += " (" + string(e.Reason) + ")"
	}
	// Recorded before waking waiters, so their timeline includes it.
	s.record(r.id, "dhcp", string(e.Type), msg)
	if e.Type != dhcp.EventAck {
		return
	}
	s.mu.Lock()
	if !r.provisionedAt.IsZero() && r.bootedAt.IsZero() {
		// The machine asked for an address again after it finished
		// installing: it has rebooted into the installed system.
		r.bootedAt = time.Now()
		s.notify()
	}
	s.mu.Unlock()
}

func (s *bootService) observeTFTP(e tftp.Event) {
	addr := e.Peer.Addr().Unmap()
	s.mu.Lock()
	var id string
	for _, r := range s.byID {
		if r.leased == addr || r.ip == addr {
			id = r.id
			break
		}
	}
	s.mu.Unlock()
	if id == "" {
		return
	}
	msg := e.File + " " + strconv.FormatInt(e.Bytes, 10) + " bytes"
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	s.record(id, "tftp", "tftp", msg)
}

// --- httpboot.Backend ---

func (s *bootService) MachineByToken(_ context.Context, token string) (*httpboot.Machine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byHash[httpboot.TokenHash(token)]
	if !ok || !httpboot.TokensEqual(r.token, token) || !r.provisionedAt.IsZero() {
		return nil, httpboot.ErrInvalidToken
	}
	vars := s.varsLocked(r)
	return &httpboot.Machine{ID: r.id, Action: r.action, Vars: vars}, nil
}

func (s *bootService) Record(_ context.Context, machineID string, e httpboot.Event) {
	if e.Reported && e.Stage == httpboot.StageProvisioned {
		return // MarkProvisioned recorded it before waking waiters
	}
	msg := e.Message
	if !e.Reported {
		s.httpBytes.Add(uint64(max(e.Bytes, 0)))
	}
	if !e.Reported && e.Bytes > 0 {
		msg = strconv.FormatInt(e.Bytes, 10) + " bytes"
	}
	s.record(machineID, "http", e.Stage, msg)
	s.mu.Lock()
	if r, ok := s.byID[machineID]; ok && e.Reported && e.Stage == "failed" {
		r.failed = e.Message
		if r.failed == "" {
			r.failed = "boot failed (reported by the boot script)"
		}
	}
	s.notify()
	s.mu.Unlock()
}

func (s *bootService) MarkProvisioned(_ context.Context, machineID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byID[machineID]
	if !ok || !r.provisionedAt.IsZero() {
		return httpboot.ErrInvalidToken
	}
	status := statusProvisioned
	if r.action == httpboot.ActionWipe {
		status = statusWiped
	}
	if _, err := s.store.UpdateMachine(machineID, func(m *store.Machine) error {
		m.Status = status
		return nil
	}); err != nil {
		return err
	}
	r.status = status
	r.provisionedAt = time.Now()
	// Recorded here, not in Record, so a waiter woken below sees it.
	s.record(machineID, "http", httpboot.StageProvisioned, "")
	// The token stops working now.
	delete(s.byHash, httpboot.TokenHash(r.token))
	s.notify()
	return nil
}

// DHCPLeaseStore persists DHCP leases in the store: the boot service's own
// lease store, exported for the benchmarks that measure that path.
func DHCPLeaseStore(st *store.Store) dhcp.LeaseStore { return leaseAdapter{st} }

// leaseAdapter persists DHCP leases in the store.
type leaseAdapter struct{ st *store.Store }

func (a leaseAdapter) List(context.Context) ([]dhcp.Lease, error) {
	ls, err := a.st.ListLeases()
	if err != nil {
		return nil, err
	}
	out := make([]dhcp.Lease, 0, len(ls))
	for _, l := range ls {
		mac, err := net.ParseMAC(l.MAC)
		if err != nil {
			continue
		}
		out = append(out, dhcp.Lease{MAC: mac, IP: l.IP, Expires: l.Expiry})
	}
	return out, nil
}

func (a leaseAdapter) Put(_ context.Context, l dhcp.Lease) error {
	_, err := a.st.PutLease(store.Lease{MAC: l.MAC.String(), IP: l.IP, Expiry: l.Expires})
	return err
}

func (a leaseAdapter) Delete(_ context.Context, mac net.HardwareAddr) error {
	err := a.st.DeleteLease(mac.String())
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
