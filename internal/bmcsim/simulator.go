package bmcsim

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// NIC is one host Ethernet interface of a simulated system.
type NIC struct {
	ID     string // default per vendor, e.g. "NIC.Integrated.1-1-1" (Dell)
	MAC    string // default derived from the system ID
	LinkUp bool
}

// SystemSpec describes a simulated ComputerSystem. Zero fields take vendor
// defaults.
type SystemSpec struct {
	// ID defaults per vendor: generic "437XR1138R2" (DMTF mockup), dell
	// "System.Embedded.1", hpe and supermicro "1"; later systems count on.
	ID                                                   string
	UUID, Manufacturer, Model, SerialNumber, BIOSVersion string
	CPUCount                                             int
	CPUModel                                             string
	MemoryGiB                                            float64
	// NICs defaults to two NICs, the first with link up, with MACs derived
	// from ID.
	NICs      []NIC
	PoweredOn bool
	// BootMode is the firmware boot mode, "UEFI" (default) or "Legacy". It
	// is also the initial BootSourceOverrideMode.
	BootMode string
	// Power optionally replaces the in-memory power model (e.g. with one
	// that drives a VM). PoweredOn and Options.PowerTransition are then
	// ignored for this system. A backend that also implements
	// BootOverrideAware is told the boot override before each power request.
	Power PowerBackend
	// OnBoot, when set, is called after every completed host boot (the end
	// of a power-on or restart), e.g. to have a simulated machine netboot
	// when the boot followed a "Pxe" override. See BootEvent for what it is
	// told and when.
	OnBoot func(BootEvent)
	// Storage replaces the vendor's default storage controllers and drives.
	Storage []StorageSpec
}

// BootEvent is one completed host boot of a simulated system, passed to
// SystemSpec.OnBoot.
//
// Delivery: OnBoot is called without the simulator's lock held, on a
// goroutine of its own, one call at a time per system and in boot order (a
// slow OnBoot delays the next boot's call, never the simulator). A boot is
// noticed when it completes: with the in-memory power model the simulator
// sets a timer for the end of each boot phase after a reset or an
// out-of-band power change; with a custom PowerBackend it polls Status
// every 25ms while the system is powering on or off or in POST and for 10s
// after each power request. Any read of the system's state (Redfish GET,
// Simulator.System) notices a completed boot as well.
type BootEvent struct {
	SystemID string
	// Target is the BootSourceOverrideTarget this boot followed ("Pxe",
	// "Hdd", "UefiHttp", ...) when an override was enabled (Once, which this
	// boot consumed, or Continuous), and "" for the normal boot order.
	Target string
	// Mode is the firmware mode of this boot, "UEFI" or "Legacy": the
	// BootSourceOverrideMode with an override, else SystemSpec.BootMode.
	Mode string
	// MACs are the system's NIC MAC addresses, in NIC order.
	MACs []string
	// Seq counts the system's boots seen by the simulator, from 1.
	Seq uint64
}

// Options configures a Simulator.
type Options struct {
	Vendor             Vendor // default Generic
	Username, Password string // default "admin"/"password"
	Systems            []SystemSpec
	// PowerTransition is how long a power change takes to show; meanwhile
	// PowerState reads PoweringOn/PoweringOff. A graceful shutdown first
	// waits for the OS (PowerState On) for the same time (HPE: three times
	// as long). 0 = instant.
	PowerTransition time.Duration
	// DisableSessionService models a BMC without SessionService: basic
	// auth only, no SessionService/Links.Sessions, session URIs 404.
	DisableSessionService bool
	// SessionTimeout is the idle time after which a session expires (401).
	// Default 30 minutes.
	SessionTimeout time.Duration
	// TaskPolls is how many TaskMonitor GETs a volume-creation task answers
	// 202 (running) before it finishes; 0 finishes it on the first GET.
	TaskPolls int
	Logger    *slog.Logger // default discards
}

// Request is one request as the simulator saw it.
type Request struct {
	Method, Path, RawQuery string
	// Status is the HTTP status sent; 0 when the connection was dropped
	// (DropNext) or the client went away during injected latency.
	Status int
	// Auth is the accepted credential kind: "session", "basic" or "none"
	// (no or invalid credentials).
	Auth string
}

// SystemState is the simulator's ground truth for one system, which may
// differ from what a vendor reports (see the Supermicro and HPE quirks).
type SystemState struct {
	PowerState  string // On, Off, PoweringOn, PoweringOff
	BootTarget  string // BootSourceOverrideTarget
	BootEnabled string // BootSourceOverrideEnabled: Disabled, Once, Continuous
	BootMode    string // BootSourceOverrideMode: UEFI, Legacy
	Resets      []string
	// LastPatch is the body of the last successful PATCH of the system.
	LastPatch map[string]any
}

type bootState struct {
	target, enabled, mode string
}

type system struct {
	spec      SystemSpec
	chassisID string
	power     PowerBackend
	seenBoots uint64
	boot      bootState
	resets    []string
	lastPatch map[string]any
	assetTag  string
	led       string
	locateLED bool

	bios       *biosState
	biosReject map[string]string // attribute -> rejected value ("" = any)
	storage    []*storageState

	// Boot hook delivery (only used when spec.OnBoot is set).
	bootSeq     uint64
	pending     []BootEvent // waiting for the delivery goroutine
	delivering  bool        // a delivery goroutine is running
	watching    bool        // a boot-watch timer is armed
	watchPollTo time.Time   // custom backends: poll at least until then
}

type session struct {
	id, token, user string
	lastUsed        time.Time
}

// maxRequests bounds the request log of a long-running simulator; the
// oldest half is dropped when it is exceeded.
const maxRequests = 100_000

// Simulator is a stateful Redfish BMC. It implements http.Handler and is safe
// for concurrent use.
type Simulator struct {
	opts Options
	prof *profile
	log  *slog.Logger
	uuid string
	// now is the time source for sessions and the in-memory power model;
	// tests replace it before serving.
	now func() time.Time

	mu         sync.Mutex
	systems    []*system           // creation order
	created    int                 // systems ever created, for default ids
	sessions   map[string]*session // by token
	sessionSeq int
	issued     []string // every token handed out, for leak checks
	requests   []Request
	latency    time.Duration
	slowBody   time.Duration
	failN      int
	failStatus int
	dropN      int
	jobs       []*dellJob
	jobSeq     int
	tasks      []*task
	taskSeq    int
	failTasks  []msg
}

// New creates a simulator. It never fails: unknown vendors fall back to
// Generic and invalid spec values to defaults.
func New(opts Options) *Simulator {
	if opts.Vendor == "" {
		opts.Vendor = Generic
	}
	if _, err := ParseVendor(string(opts.Vendor)); err != nil {
		opts.Vendor = Generic
	}
	if opts.Username == "" {
		opts.Username = "admin"
	}
	if opts.Password == "" {
		opts.Password = "password"
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = defaultSessionTimeout
	}
	if opts.PowerTransition < 0 {
		opts.PowerTransition = 0
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Simulator{
		opts:     opts,
		prof:     profileFor(opts.Vendor),
		log:      log,
		sessions: map[string]*session{},
		now:      time.Now,
	}
	s.uuid = derivedUUID("service-root/" + string(opts.Vendor))
	specs := opts.Systems
	if len(specs) == 0 {
		specs = []SystemSpec{{}}
	}
	for _, sp := range specs {
		s.addSystemLocked(sp)
	}
	return s
}

// Vendor reports the vendor being simulated.
func (s *Simulator) Vendor() Vendor { return s.prof.vendor }

func derivedHash(seed string) []byte {
	h := sha256.Sum256([]byte("bmcsim/" + seed))
	return h[:]
}

func derivedUUID(seed string) string {
	h := derivedHash(seed)
	h[6] = (h[6] & 0x0f) | 0x50 // version 5 layout
	h[8] = (h[8] & 0x3f) | 0x80
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func derivedMAC(systemID string, i int) string {
	h := derivedHash("mac/" + systemID)
	b := []byte{(h[0] | 0x02) &^ 0x01, h[1], h[2], h[3], h[4], byte(int(h[5]) + i)}
	parts := make([]string, len(b))
	for j, c := range b {
		parts[j] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

func derivedSerial(vendor Vendor, systemID string) string {
	const alnum = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
	h := derivedHash("serial/" + systemID)
	n := 10
	prefix := ""
	switch vendor {
	case Dell:
		n = 7 // service tag
	case HPE:
		prefix, n = "MXQ", 7
	case Supermicro:
		prefix, n = "S", 14
	case Generic:
		return systemID
	}
	b := []byte(prefix)
	for i := range n {
		b = append(b, alnum[int(h[i])%len(alnum)])
	}
	return string(b)
}

func (s *Simulator) applyDefaults(sp SystemSpec) SystemSpec {
	p := s.prof
	if sp.ID == "" {
		for i := s.created; ; i++ {
			id := p.systemID(i)
			if s.findLocked(id) == nil {
				sp.ID = id
				break
			}
		}
	}
	if sp.UUID == "" {
		sp.UUID = derivedUUID(string(p.vendor) + "/system/" + sp.ID)
	}
	if sp.Manufacturer == "" {
		sp.Manufacturer = p.manufacturer
	}
	if sp.Model == "" {
		sp.Model = p.model
	}
	if sp.SerialNumber == "" {
		sp.SerialNumber = derivedSerial(p.vendor, sp.ID)
	}
	if sp.BIOSVersion == "" {
		sp.BIOSVersion = p.biosVersion
	}
	if sp.CPUCount <= 0 {
		sp.CPUCount = p.cpuCount
	}
	if sp.CPUModel == "" {
		sp.CPUModel = p.cpuModel
	}
	if sp.MemoryGiB <= 0 {
		sp.MemoryGiB = p.memoryGiB
	}
	if sp.NICs == nil {
		sp.NICs = []NIC{{LinkUp: true}, {}}
	}
	nics := make([]NIC, len(sp.NICs))
	for i, n := range sp.NICs {
		if n.ID == "" {
			n.ID = p.nicID(i)
		}
		if n.MAC == "" {
			n.MAC = derivedMAC(sp.ID, i)
		}
		nics[i] = n
	}
	sp.NICs = nics
	if sp.BootMode != "Legacy" {
		sp.BootMode = "UEFI"
	}
	return sp
}

func (s *Simulator) addSystemLocked(sp SystemSpec) {
	sp = s.applyDefaults(sp)
	sys := &system{
		spec:      sp,
		chassisID: s.prof.chassisID(sp.ID, s.created),
		power:     sp.Power,
		boot:      bootState{target: "None", enabled: "Disabled", mode: sp.BootMode},
		led:       "Off",
		bios:      s.newBIOS(),
	}
	specs := sp.Storage
	if specs == nil {
		specs = s.prof.defaultStorage()
	}
	for _, st := range specs {
		sys.storage = append(sys.storage, &storageState{spec: st})
	}
	if sys.power == nil {
		t := s.opts.PowerTransition
		mp := newMemoryPower(sp.PoweredOn, t, t*time.Duration(max(s.prof.gracefulFactor, 1)))
		mp.now = s.clock
		sys.power = mp
	}
	sys.seenBoots = sys.power.Status().Boots
	s.created++
	for i, old := range s.systems {
		if old.spec.ID == sp.ID {
			s.systems[i] = sys
			return
		}
	}
	s.systems = append(s.systems, sys)
}

func (s *Simulator) clock() time.Time { return s.now() }

func (s *Simulator) findLocked(id string) *system {
	for _, sys := range s.systems {
		if sys.spec.ID == id {
			return sys
		}
	}
	return nil
}

// maxBootEvents bounds the boot events generated by one status read (a
// custom backend whose counter jumps far is not replayed boot by boot).
const maxBootEvents = 16

// status reads the backend and applies boot side effects: a completed boot
// consumes a one-time override and is reported to OnBoot. Caller holds s.mu.
func (s *Simulator) status(sys *system) PowerStatus {
	st := sys.power.Status()
	if st.Boots != sys.seenBoots {
		n := uint64(1) // a backend whose counter went back booted at least once
		if st.Boots > sys.seenBoots {
			n = min(st.Boots-sys.seenBoots, maxBootEvents)
		}
		sys.seenBoots = st.Boots
		for range n {
			s.bootCompletedLocked(sys)
		}
	}
	return st
}

// bootCompletedLocked applies one completed boot: the override it followed
// is consumed if it was Once, and OnBoot is told. Caller holds s.mu.
func (s *Simulator) bootCompletedLocked(sys *system) {
	ev := BootEvent{SystemID: sys.spec.ID, Mode: sys.spec.BootMode}
	if sys.boot.enabled == "Once" || sys.boot.enabled == "Continuous" {
		if sys.boot.target != "None" {
			ev.Target = sys.boot.target
		}
		if sys.boot.mode != "" {
			ev.Mode = sys.boot.mode
		}
	}
	if sys.boot.enabled == "Once" {
		sys.boot.enabled = "Disabled"
	}
	s.applyBIOSLocked(sys)
	hook := sys.spec.OnBoot
	if hook == nil {
		return
	}
	sys.bootSeq++
	ev.Seq = sys.bootSeq
	for _, n := range sys.spec.NICs {
		ev.MACs = append(ev.MACs, n.MAC)
	}
	sys.pending = append(sys.pending, ev)
	if !sys.delivering {
		sys.delivering = true
		go s.deliverBoots(sys, hook)
	}
}

// deliverBoots calls hook for each pending boot event of sys, in order,
// without the lock, until none is left.
func (s *Simulator) deliverBoots(sys *system, hook func(BootEvent)) {
	for {
		s.mu.Lock()
		if len(sys.pending) == 0 {
			sys.delivering = false
			s.mu.Unlock()
			return
		}
		ev := sys.pending[0]
		sys.pending = sys.pending[1:]
		s.mu.Unlock()
		s.callBootHook(hook, ev)
	}
}

func (s *Simulator) callBootHook(hook func(BootEvent), ev BootEvent) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("OnBoot hook panicked", slog.String("system", ev.SystemID), slog.Any("panic", r))
		}
	}()
	hook(ev)
}

// untilBooter is implemented by power backends that know when their next
// boot completes (the in-memory model), so boots are noticed on time
// without polling.
type untilBooter interface {
	// untilBoot reports how long until the next pending boot completes
	// (0 when one already has but was not counted yet), or false when no
	// boot is pending.
	untilBoot() (time.Duration, bool)
}

const (
	bootPollInterval = 25 * time.Millisecond
	bootPollWindow   = 10 * time.Second
)

// watchBootsLocked is called after a power request: it notices a boot that
// already completed and, for systems with OnBoot, arms a timer for the next
// one. Caller holds s.mu.
func (s *Simulator) watchBootsLocked(sys *system) {
	if sys.spec.OnBoot == nil {
		return
	}
	sys.watchPollTo = time.Now().Add(bootPollWindow)
	st := s.status(sys)
	if sys.watching {
		return
	}
	if d, ok := s.nextBootCheck(sys, st); ok {
		sys.watching = true
		time.AfterFunc(d, func() { s.bootTimer(sys) })
	}
}

// nextBootCheck says when to look for a completed boot next. Caller holds
// s.mu.
func (s *Simulator) nextBootCheck(sys *system, st PowerStatus) (time.Duration, bool) {
	if ub, ok := sys.power.(untilBooter); ok {
		d, pending := ub.untilBoot()
		return max(d, time.Millisecond), pending
	}
	busy := st.InPOST || st.State == PowerPoweringOn || st.State == PowerPoweringOff
	return bootPollInterval, busy || time.Now().Before(sys.watchPollTo)
}

func (s *Simulator) bootTimer(sys *system) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.findLocked(sys.spec.ID) != sys {
		sys.watching = false // removed or replaced
		return
	}
	st := s.status(sys)
	if d, ok := s.nextBootCheck(sys, st); ok {
		time.AfterFunc(d, func() { s.bootTimer(sys) })
		return
	}
	sys.watching = false
}

// tellBootOverrideLocked passes the system's override to a backend that
// implements BootOverrideAware. Caller holds s.mu and calls it right before
// Reset or SetPower.
func (s *Simulator) tellBootOverrideLocked(sys *system) {
	ba, ok := sys.power.(BootOverrideAware)
	if !ok {
		return
	}
	o := BootOverride{Mode: sys.spec.BootMode}
	if (sys.boot.enabled == "Once" || sys.boot.enabled == "Continuous") && sys.boot.target != "None" {
		o.Target, o.Enabled = sys.boot.target, sys.boot.enabled
		if sys.boot.mode != "" {
			o.Mode = sys.boot.mode
		}
	}
	ba.SetBootOverride(o)
}

// AddSystem adds a system (vendor defaults fill zero fields). A system with
// the same ID is replaced.
func (s *Simulator) AddSystem(spec SystemSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addSystemLocked(spec)
}

// RemoveSystem removes a system; its URIs then answer 404.
func (s *Simulator) RemoveSystem(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.systems = slices.DeleteFunc(s.systems, func(sys *system) bool { return sys.spec.ID == id })
}

// SystemIDs lists the current system ids in collection order.
func (s *Simulator) SystemIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, len(s.systems))
	for i, sys := range s.systems {
		ids[i] = sys.spec.ID
	}
	return ids
}

// System returns the ground-truth state of a system.
func (s *Simulator) System(id string) (SystemState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sys := s.findLocked(id)
	if sys == nil {
		return SystemState{}, false
	}
	st := s.status(sys)
	return SystemState{
		PowerState:  st.State,
		BootTarget:  sys.boot.target,
		BootEnabled: sys.boot.enabled,
		BootMode:    sys.boot.mode,
		Resets:      slices.Clone(sys.resets),
		LastPatch:   maps.Clone(sys.lastPatch),
	}, true
}

// SetPowerState toggles power out of band, as if someone pressed the button
// (on) or pulled the plug (off). Power takes PowerTransition to change.
func (s *Simulator) SetPowerState(id string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sys := s.findLocked(id); sys != nil {
		s.status(sys)
		s.tellBootOverrideLocked(sys)
		sys.power.SetPower(on)
		s.watchBootsLocked(sys)
	}
}

// SetLatency delays every response by d (0 disables).
func (s *Simulator) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = max(d, 0)
}

// SetSlowBody makes every response send its headers, then stall d before the
// body (0 disables).
func (s *Simulator) SetSlowBody(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slowBody = max(d, 0)
}

// FailNext makes the next n requests fail with status (e.g. 503, 429, 500)
// and a Redfish error body; 503 and 429 carry "Retry-After: 0".
func (s *Simulator) FailNext(n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failStatus = max(n, 0), status
}

// DropNext makes the next n requests end with the TCP connection closed and
// no response. Note that Go's http.Transport silently retries an idempotent
// request once when a reused keep-alive connection is closed like this; each
// retry is another request.
func (s *Simulator) DropNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropN = max(n, 0)
}

// ExpireSessions makes every current session token answer 401.
func (s *Simulator) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.sessions)
}

// ActiveSessions counts sessions that are not expired.
func (s *Simulator) ActiveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneSessionsLocked(s.clock())
	return len(s.sessions)
}

func (s *Simulator) pruneSessionsLocked(now time.Time) {
	for tok, se := range s.sessions {
		if now.Sub(se.lastUsed) > s.opts.SessionTimeout {
			delete(s.sessions, tok)
		}
	}
}

// IssuedTokens returns every session token the simulator has handed out,
// so tests can check that none of them leaks into logs.
func (s *Simulator) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.issued)
}

// Requests returns a copy of the request log.
func (s *Simulator) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ResetRequests clears the request log.
func (s *Simulator) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// Count counts logged requests with this method and path. The path is
// compared without query and without a trailing slash, so "/redfish/v1/Systems/1/"
// (as iLO links read) and "/redfish/v1/Systems/1" count together.
func (s *Simulator) Count(method, path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := normPath(path)
	n := 0
	for _, r := range s.requests {
		if r.Method == method && normPath(r.Path) == want {
			n++
		}
	}
	return n
}

func normPath(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	for len(p) > 1 && strings.HasSuffix(p, "/") {
		p = p[:len(p)-1]
	}
	return p
}

func (s *Simulator) record(r *http.Request, status int, auth string) {
	s.mu.Lock()
	if len(s.requests) >= maxRequests {
		s.requests = slices.Delete(s.requests, 0, maxRequests/2)
	}
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Status: status, Auth: auth})
	s.mu.Unlock()
}

// authResult is the outcome of checking a request's credentials.
type authResult struct {
	kind       string // "session", "basic", "none"
	tokenGiven bool
	session    *session
}

// authenticate checks X-Auth-Token first, then HTTP Basic. Caller holds s.mu.
func (s *Simulator) authenticateLocked(r *http.Request, now time.Time) authResult {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		if s.opts.DisableSessionService {
			return authResult{kind: "none", tokenGiven: true}
		}
		se, ok := s.sessions[tok]
		if !ok {
			return authResult{kind: "none", tokenGiven: true}
		}
		if now.Sub(se.lastUsed) > s.opts.SessionTimeout {
			delete(s.sessions, tok)
			return authResult{kind: "none", tokenGiven: true}
		}
		se.lastUsed = now
		return authResult{kind: "session", tokenGiven: true, session: se}
	}
	if u, p, ok := r.BasicAuth(); ok && s.credentialsOK(u, p) {
		return authResult{kind: "basic"}
	}
	return authResult{kind: "none"}
}

func (s *Simulator) credentialsOK(user, pass string) bool {
	uok := subtle.ConstantTimeCompare([]byte(user), []byte(s.opts.Username))
	pok := subtle.ConstantTimeCompare([]byte(pass), []byte(s.opts.Password))
	return uok&pok == 1
}
