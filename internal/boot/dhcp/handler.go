package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Inbound describes how a request reached the server.
type Inbound struct {
	// IfIndex, Interface and InterfaceAddrs describe the ingress
	// interface; zero values when unknown.
	IfIndex        int
	Interface      string
	InterfaceAddrs []netip.Prefix
	// Peer is the UDP source of the request.
	Peer netip.AddrPort
	// PXEPort is true for requests received on the PXE boot-server port
	// 4011.
	PXEPort bool
}

// Handler decides the reply to each request. It is safe for concurrent use.
type Handler struct {
	cfg     Config
	boot    BootConfig
	subnets []*subnet
	def     *subnet
	backend Backend
	alloc   *allocator
	log     *slog.Logger
}

// NewHandler validates cfg and returns a Handler. leases is required in
// authoritative mode and ignored in proxy mode. Nothing is read from leases
// until the first allocation.
func NewHandler(cfg Config, backend Backend, leases LeaseStore) (*Handler, error) {
	if backend == nil {
		return nil, invalid("nil backend")
	}
	subnets, def, err := normalize(&cfg)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, boot: cfg.Boot, subnets: subnets, def: def, backend: backend, log: cfg.Logger}
	if cfg.Mode == ModeAuthoritative {
		if leases == nil {
			return nil, invalid("authoritative mode needs a LeaseStore")
		}
		h.alloc = newAllocator(leases, backend.ReservedBy, cfg.Now, cfg.OfferHold, cfg.DeclineHold)
	}
	return h, nil
}

// Mode returns the handler's mode.
func (h *Handler) Mode() Mode { return h.cfg.Mode }

// request is one request being handled, with everything derived from it.
type request struct {
	pkt   *dhcpv4.DHCPv4
	mt    dhcpv4.MessageType
	facts ClientFacts
	in    Inbound
	log   *slog.Logger
}

// Handle returns the reply to req, or nil when nothing is to be answered. An
// error means a backend or lease-store failure; the request is unanswered and
// the client will retry.
func (h *Handler) Handle(ctx context.Context, pkt *dhcpv4.DHCPv4, in Inbound) (*dhcpv4.DHCPv4, error) {
	if pkt == nil || pkt.OpCode != dhcpv4.OpcodeBootRequest ||
		pkt.HWType != iana.HWTypeEthernet || len(pkt.ClientHWAddr) != 6 {
		return nil, nil
	}
	r := &request{pkt: pkt, mt: pkt.MessageType(), in: in}
	r.facts = clientFacts(pkt, in)
	if h.log.Enabled(ctx, slog.LevelError) {
		r.log = h.log.With(
			slog.String("mac", r.facts.MAC.String()),
			slog.String("xid", pkt.TransactionID.String()),
			slog.String("msg_type", r.mt.String()),
			slog.String("interface", in.Interface),
			slog.String("peer", in.Peer.String()))
	} else {
		r.log = h.log
	}

	if in.PXEPort {
		return h.handleBootServer(ctx, r)
	}
	if h.cfg.Mode == ModeProxy {
		return h.handleProxy(ctx, r)
	}
	switch r.mt {
	case dhcpv4.MessageTypeDiscover:
		return h.handleDiscover(ctx, r)
	case dhcpv4.MessageTypeRequest:
		return h.handleRequest(ctx, r)
	case dhcpv4.MessageTypeRelease:
		return nil, h.handleRelease(ctx, r)
	case dhcpv4.MessageTypeDecline:
		return nil, h.handleDecline(ctx, r)
	case dhcpv4.MessageTypeInform:
		return h.handleInform(ctx, r)
	}
	return nil, nil
}

func clientFacts(pkt *dhcpv4.DHCPv4, in Inbound) ClientFacts {
	f := ClientFacts{
		MAC:         slices.Clone(pkt.ClientHWAddr),
		Client:      classify(pkt),
		VendorClass: pkt.ClassIdentifier(),
		UserClass:   strings.Join(pkt.UserClass(), ","),
		Hostname:    pkt.HostName(),
		RelayAddr:   addrOf(pkt.GatewayIPAddr),
		Interface:   in.Interface,
	}
	f.Arch, f.HasArch = clientArch(pkt, f.VendorClass)
	if rai := pkt.RelayAgentInfo(); rai != nil {
		f.CircuitID = string(rai.Get(dhcpv4.AgentCircuitIDSubOption))
		f.RemoteID = string(rai.Get(dhcpv4.AgentRemoteIDSubOption))
	}
	return f
}

// observe sends an event to the observer.
func (h *Handler) observe(ctx context.Context, r *request, e Event) {
	if h.cfg.Observer == nil {
		return
	}
	e.Time = h.cfg.Now()
	e.XID = r.pkt.TransactionID
	e.ClientFacts = r.facts
	e.MessageType = r.mt
	h.cfg.Observer.Observe(ctx, e)
}

// ignore records why a request of a known (or served) client is unanswered.
func (h *Handler) ignore(ctx context.Context, r *request, why Reason, level slog.Level, s *subnet) {
	r.log.Log(ctx, level, "dhcp request ignored", slog.String("reason", string(why)))
	e := Event{Type: EventIgnored, Reason: why}
	if s != nil {
		e.Subnet = s.Name
	}
	h.observe(ctx, r, e)
}

// machine resolves the client. nil with a nil error means "do not answer"
// (unknown client, handled per policy).
func (h *Handler) machine(ctx context.Context, r *request) (*Machine, error) {
	m, err := h.backend.Lookup(ctx, LookupRequest{ClientFacts: r.facts, MessageType: r.mt})
	switch {
	case err == nil && m != nil:
		return m, nil
	case err == nil || errors.Is(err, ErrUnknownMachine):
	default:
		r.log.Warn("machine lookup failed", slog.Any("error", err))
		h.observe(ctx, r, Event{Type: EventIgnored, Reason: ReasonBackendError})
		return nil, fmt.Errorf("lookup %s: %w", r.facts.MAC, err)
	}
	switch h.cfg.Unknown {
	case UnknownServe:
		return &Machine{MAC: r.facts.MAC, Netboot: true, ScriptURL: h.boot.UnknownScriptURL}, nil
	case UnknownDiscover:
		if r.mt != dhcpv4.MessageTypeDiscover && r.mt != dhcpv4.MessageTypeRequest && r.mt != dhcpv4.MessageTypeInform {
			return nil, nil
		}
		d := Discovery{ClientFacts: r.facts, Seen: h.cfg.Now()}
		if err := h.backend.RecordDiscovery(ctx, d); err != nil {
			r.log.Warn("recording discovery failed", slog.Any("error", err))
			return nil, fmt.Errorf("record discovery %s: %w", r.facts.MAC, err)
		}
		r.log.Debug("unknown client recorded")
		h.observe(ctx, r, Event{Type: EventDiscovered})
		return nil, nil
	}
	r.log.Debug("unknown client ignored")
	h.observe(ctx, r, Event{Type: EventIgnored, Reason: ReasonUnknownMachine})
	return nil, nil
}

// pickSubnet places a request on a subnet: by RFC 3527 link selection, option
// 118 or giaddr when relayed; else by ciaddr, by the ingress interface's name
// or addresses, or the default subnet.
func (h *Handler) pickSubnet(pkt *dhcpv4.DHCPv4, in Inbound) *subnet {
	if giaddr := addrOf(pkt.GatewayIPAddr); giaddr.IsValid() {
		if rai := pkt.RelayAgentInfo(); rai != nil {
			if sel := addrOf(net.IP(rai.Get(dhcpv4.LinkSelectionSubOption))); sel.IsValid() {
				return h.subnetContaining(sel)
			}
		}
		if sel := addrOf(net.IP(pkt.Options.Get(dhcpv4.OptionSubnetSelection))); sel.IsValid() {
			return h.subnetContaining(sel)
		}
		return h.subnetContaining(giaddr)
	}
	if sel := addrOf(net.IP(pkt.Options.Get(dhcpv4.OptionSubnetSelection))); sel.IsValid() {
		return h.subnetContaining(sel)
	}
	if ciaddr := addrOf(pkt.ClientIPAddr); ciaddr.IsValid() {
		if s := h.subnetContaining(ciaddr); s != nil {
			return s
		}
	}
	if in.Interface != "" {
		for _, s := range h.subnets {
			if s.Interface == in.Interface {
				return s
			}
		}
	}
	for _, p := range in.InterfaceAddrs {
		if s := h.subnetContaining(p.Addr()); s != nil {
			return s
		}
	}
	return h.def
}

func (h *Handler) subnetContaining(a netip.Addr) *subnet {
	for _, s := range h.subnets {
		if s.Prefix.Contains(a) {
			return s
		}
	}
	return nil
}

// placement resolves the subnet for a machine and checks its reservation
// is on it.
func (h *Handler) placement(ctx context.Context, r *request, m *Machine) *subnet {
	s := h.pickSubnet(r.pkt, r.in)
	if s == nil && m.IP.IsValid() && !r.facts.RelayAddr.IsValid() {
		s = h.subnetContaining(m.IP)
	}
	if s == nil {
		h.ignore(ctx, r, ReasonNoSubnet, slog.LevelWarn, nil)
		return nil
	}
	if m.IP.IsValid() && !s.Prefix.Contains(m.IP) {
		r.log.Warn("dhcp request ignored", slog.String("reason", string(ReasonWrongSubnet)),
			slog.String("reserved_ip", m.IP.String()), slog.String("subnet", s.Name))
		h.observe(ctx, r, Event{Type: EventIgnored, Reason: ReasonWrongSubnet, Subnet: s.Name})
		return nil
	}
	return s
}

func (h *Handler) handleDiscover(ctx context.Context, r *request) (*dhcpv4.DHCPv4, error) {
	m, err := h.machine(ctx, r)
	if m == nil {
		return nil, err
	}
	s := h.placement(ctx, r, m)
	if s == nil {
		return nil, nil
	}
	ip, err := h.alloc.offer(ctx, r.facts.MAC, s, m.IP)
	switch {
	case errors.Is(err, errRangeExhausted), errors.Is(err, errNoRange):
		h.ignore(ctx, r, ReasonRangeExhausted, slog.LevelWarn, s)
		return nil, nil
	case errors.Is(err, errConflict):
		h.ignore(ctx, r, ReasonReservationConflict, slog.LevelWarn, s)
		return nil, nil
	case err != nil:
		r.log.Error("allocating address failed", slog.Any("error", err))
		return nil, err
	}
	boot, why := selectBoot(r.facts, m, &h.boot, s.serverID, false)
	reply, err := buildAddressReply(r.pkt, dhcpv4.MessageTypeOffer, binding{machine: m, subnet: s, ip: ip}, boot)
	if err != nil {
		return nil, err
	}
	h.answered(ctx, r, EventOffer, ip, s.Name, boot, why, false)
	return reply, nil
}

func (h *Handler) handleRequest(ctx context.Context, r *request) (*dhcpv4.DHCPv4, error) {
	requested := addrOf(r.pkt.RequestedIPAddress())
	if !requested.IsValid() {
		requested = addrOf(r.pkt.ClientIPAddr)
	}
	if !requested.IsValid() {
		return nil, nil
	}
	if sid := addrOf(r.pkt.ServerIdentifier()); sid.IsValid() && !h.isServerID(sid) {
		// SELECTING state, another server's offer was chosen.
		h.alloc.cancelOffer(r.facts.MAC)
		r.log.Debug("client selected another server", slog.String("server_id", sid.String()))
		return nil, nil
	}
	m, err := h.machine(ctx, r)
	if m == nil {
		return nil, err
	}
	s := h.placement(ctx, r, m)
	if s == nil {
		return nil, nil
	}
	if !s.Prefix.Contains(requested) {
		return h.nak(ctx, r, s, requested, ReasonWrongNetwork)
	}
	lease, ok, err := h.alloc.confirm(ctx, r.facts.MAC, s, m.IP, requested)
	if err != nil {
		r.log.Error("binding lease failed", slog.Any("error", err))
		return nil, err
	}
	if !ok {
		return h.nak(ctx, r, s, requested, ReasonAddressUnavailable)
	}
	boot, why := selectBoot(r.facts, m, &h.boot, s.serverID, false)
	reply, err := buildAddressReply(r.pkt, dhcpv4.MessageTypeAck, binding{machine: m, subnet: s, ip: lease.IP}, boot)
	if err != nil {
		return nil, err
	}
	h.answered(ctx, r, EventAck, lease.IP, s.Name, boot, why, false)
	return reply, nil
}

func (h *Handler) isServerID(a netip.Addr) bool {
	if a == h.cfg.ServerIP {
		return true
	}
	for _, s := range h.subnets {
		if s.serverID == a {
			return true
		}
	}
	return false
}

func (h *Handler) nak(ctx context.Context, r *request, s *subnet, requested netip.Addr, why Reason) (*dhcpv4.DHCPv4, error) {
	reply, err := buildNak(r.pkt, s.serverID, why)
	if err != nil {
		return nil, err
	}
	r.log.Info("dhcp nak", slog.String("ip", requested.String()), slog.String("reason", string(why)))
	h.observe(ctx, r, Event{Type: EventNak, IP: requested, Subnet: s.Name, Reason: why})
	return reply, nil
}

func (h *Handler) handleRelease(ctx context.Context, r *request) error {
	ip := addrOf(r.pkt.ClientIPAddr)
	if !ip.IsValid() {
		return nil
	}
	if sid := addrOf(r.pkt.ServerIdentifier()); sid.IsValid() && !h.isServerID(sid) {
		return nil
	}
	released, err := h.alloc.release(ctx, r.facts.MAC, ip)
	if err != nil {
		r.log.Error("releasing lease failed", slog.Any("error", err))
		return err
	}
	if released {
		r.log.Info("dhcp release", slog.String("ip", ip.String()))
		h.observe(ctx, r, Event{Type: EventRelease, IP: ip})
	}
	return nil
}

func (h *Handler) handleDecline(ctx context.Context, r *request) error {
	ip := addrOf(r.pkt.RequestedIPAddress())
	if !ip.IsValid() {
		return nil
	}
	if sid := addrOf(r.pkt.ServerIdentifier()); sid.IsValid() && !h.isServerID(sid) {
		return nil
	}
	declined, err := h.alloc.decline(ctx, r.facts.MAC, ip)
	if err != nil {
		r.log.Error("declining lease failed", slog.Any("error", err))
		return err
	}
	if declined {
		r.log.Warn("dhcp decline: address in use on the link", slog.String("ip", ip.String()))
		h.observe(ctx, r, Event{Type: EventDecline, IP: ip})
	}
	return nil
}

// handleInform answers DHCPINFORM with the subnet's parameters and no lease.
func (h *Handler) handleInform(ctx context.Context, r *request) (*dhcpv4.DHCPv4, error) {
	if !addrOf(r.pkt.ClientIPAddr).IsValid() {
		return nil, nil
	}
	m, err := h.machine(ctx, r)
	if m == nil {
		return nil, err
	}
	s := h.pickSubnet(r.pkt, r.in)
	if s == nil {
		h.ignore(ctx, r, ReasonNoSubnet, slog.LevelWarn, nil)
		return nil, nil
	}
	reply, err := buildAddressReply(r.pkt, dhcpv4.MessageTypeAck, binding{machine: m, subnet: s}, bootPlan{})
	if err != nil {
		return nil, err
	}
	h.answered(ctx, r, EventAck, netip.Addr{}, s.Name, bootPlan{}, "", false)
	return reply, nil
}

// handleProxy answers DISCOVERs of netboot clients with a proxyDHCP offer.
// Everything else on port 67 belongs to the real DHCP server.
func (h *Handler) handleProxy(ctx context.Context, r *request) (*dhcpv4.DHCPv4, error) {
	if r.mt != dhcpv4.MessageTypeDiscover || r.facts.Client == ClientOS {
		return nil, nil
	}
	return h.bootOnly(ctx, r, dhcpv4.MessageTypeOffer, EventOffer)
}

// handleBootServer answers PXE boot-server requests on port 4011 (REQUEST or
// INFORM from firmware or iPXE that already has an address).
func (h *Handler) handleBootServer(ctx context.Context, r *request) (*dhcpv4.DHCPv4, error) {
	if (r.mt != dhcpv4.MessageTypeRequest && r.mt != dhcpv4.MessageTypeInform) || r.facts.Client == ClientOS {
		return nil, nil
	}
	return h.bootOnly(ctx, r, dhcpv4.MessageTypeAck, EventAck)
}

func (h *Handler) bootOnly(ctx context.Context, r *request, mt dhcpv4.MessageType, et EventType) (*dhcpv4.DHCPv4, error) {
	m, err := h.machine(ctx, r)
	if m == nil {
		return nil, err
	}
	serverID := h.cfg.ServerIP
	if s := h.pickSubnet(r.pkt, r.in); s != nil {
		serverID = s.serverID
	}
	if !serverID.IsValid() {
		h.ignore(ctx, r, ReasonNoSubnet, slog.LevelWarn, nil)
		return nil, nil
	}
	boot, why := selectBoot(r.facts, m, &h.boot, serverID, true)
	if boot.none() {
		h.ignore(ctx, r, why, slog.LevelInfo, nil)
		return nil, nil
	}
	reply, err := buildProxyReply(r.pkt, mt, serverID, boot)
	if err != nil {
		return nil, err
	}
	h.answered(ctx, r, et, netip.Addr{}, "", boot, "", true)
	return reply, nil
}

// answered logs and records a reply. The boot file is only ever logged by its
// display name: script URLs carry secrets.
func (h *Handler) answered(ctx context.Context, r *request, et EventType, ip netip.Addr, subnetName string, boot bootPlan, why Reason, proxy bool) {
	e := Event{Type: et, IP: ip, Subnet: subnetName, BootFile: boot.logName, Proxy: proxy}
	if boot.none() && r.facts.Client != ClientOS {
		e.Reason = why
	}
	h.observe(ctx, r, e)
	if !r.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{slog.String("client", r.facts.Client.String())}
	if ip.IsValid() {
		attrs = append(attrs, slog.String("ip", ip.String()))
	}
	if !boot.none() {
		attrs = append(attrs, slog.String("boot", boot.logName))
	} else if why != "" && r.facts.Client != ClientOS {
		attrs = append(attrs, slog.String("reason", string(why)))
	}
	if proxy {
		attrs = append(attrs, slog.Bool("proxy", true))
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "dhcp "+string(et), attrs...)
}
