package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Lease is a bound address, persisted through the LeaseStore.
type Lease struct {
	MAC     net.HardwareAddr
	IP      netip.Addr
	Expires time.Time
	// Subnet is the name of the subnet the lease is on (informational).
	Subnet string
}

// LeaseStore persists bound leases so the allocator survives restarts. It
// holds at most one lease per MAC: Put replaces the MAC's previous lease.
// The handler loads everything with List once, before the first allocation,
// and afterwards answers from memory, writing through Put and Delete (called
// with the allocator's lock held: keep them quick). Offers are not stored.
type LeaseStore interface {
	List(ctx context.Context) ([]Lease, error)
	Put(ctx context.Context, l Lease) error
	Delete(ctx context.Context, mac net.HardwareAddr) error
}

// MemoryLeaseStore is a LeaseStore in memory, for tests, benchmarks and
// throw-away servers. The zero value is ready to use.
type MemoryLeaseStore struct {
	mu     sync.Mutex
	leases map[string]Lease
}

// List returns all leases, sorted by IP.
func (m *MemoryLeaseStore) List(context.Context) ([]Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Lease, 0, len(m.leases))
	for _, l := range m.leases {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out, nil
}

// Put stores l, replacing the previous lease of l.MAC.
func (m *MemoryLeaseStore) Put(_ context.Context, l Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leases == nil {
		m.leases = map[string]Lease{}
	}
	l.MAC = slices.Clone(l.MAC)
	m.leases[string(l.MAC)] = l
	return nil
}

// Delete removes the lease of mac, if any.
func (m *MemoryLeaseStore) Delete(_ context.Context, mac net.HardwareAddr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.leases, string(mac))
	return nil
}

var (
	errRangeExhausted = errors.New("address range exhausted")
	errConflict       = errors.New("reserved address leased to another client")
	errNoRange        = errors.New("subnet has no dynamic range")
)

// entry is an address held by a MAC: an offer (in memory only) or a bound
// lease (also in the store).
type entry struct {
	mac     string
	ip      netip.Addr
	subnet  string
	expires time.Time
	bound   bool
}

// allocator hands out addresses. All state is in memory, loaded from the
// store once; bound leases are written through.
type allocator struct {
	store       LeaseStore
	reservedBy  func(context.Context, netip.Addr) (net.HardwareAddr, error)
	now         func() time.Time
	offerHold   time.Duration
	declineHold time.Duration

	mu       sync.Mutex
	loaded   bool
	byMAC    map[string]*entry
	byIP     map[netip.Addr]*entry
	declined map[netip.Addr]time.Time
	cursor   map[string]netip.Addr // next-fit position per subnet
}

func newAllocator(store LeaseStore, reservedBy func(context.Context, netip.Addr) (net.HardwareAddr, error), now func() time.Time, offerHold, declineHold time.Duration) *allocator {
	return &allocator{
		store: store, reservedBy: reservedBy, now: now,
		offerHold: offerHold, declineHold: declineHold,
		byMAC:    map[string]*entry{},
		byIP:     map[netip.Addr]*entry{},
		declined: map[netip.Addr]time.Time{},
		cursor:   map[string]netip.Addr{},
	}
}

// load reads the store once. Called with mu held; retried on the next call
// after a failure.
func (a *allocator) load(ctx context.Context) error {
	if a.loaded {
		return nil
	}
	leases, err := a.store.List(ctx)
	if err != nil {
		return fmt.Errorf("loading leases: %w", err)
	}
	for _, l := range leases {
		if len(l.MAC) == 0 || !l.IP.Is4() {
			continue
		}
		e := &entry{mac: string(l.MAC), ip: l.IP, subnet: l.Subnet, expires: l.Expires, bound: true}
		if old := a.byIP[l.IP]; old != nil {
			// Two stored leases on one address: keep the newer.
			if !e.expires.After(old.expires) {
				continue
			}
			delete(a.byMAC, old.mac)
		}
		if old := a.byMAC[e.mac]; old != nil {
			delete(a.byIP, old.ip)
		}
		a.byMAC[e.mac] = e
		a.byIP[e.ip] = e
	}
	a.loaded = true
	return nil
}

func (e *entry) active(now time.Time) bool { return e.expires.After(now) }

// heldByOther reports whether ip is held by an unexpired offer or lease of a
// MAC other than mac.
func (a *allocator) heldByOther(ip netip.Addr, mac string, now time.Time) bool {
	e := a.byIP[ip]
	return e != nil && e.mac != mac && e.active(now)
}

// usable reports whether ip may go to mac: not held by another client, not
// recently declined, not reserved for another machine.
func (a *allocator) usable(ctx context.Context, ip netip.Addr, mac string, now time.Time) (bool, error) {
	if a.heldByOther(ip, mac, now) {
		return false, nil
	}
	if until, ok := a.declined[ip]; ok {
		if until.After(now) {
			return false, nil
		}
		delete(a.declined, ip)
	}
	owner, err := a.reservedBy(ctx, ip)
	if err != nil {
		return false, fmt.Errorf("checking reservation of %s: %w", ip, err)
	}
	return owner == nil || string(owner) == mac, nil
}

// take makes ip mac's, dropping mac's previous address and an expired holder
// of ip. A bound entry is written to the store first; on error nothing
// changes.
func (a *allocator) take(ctx context.Context, mac string, ip netip.Addr, subnetName string, expires time.Time, bound bool) error {
	prev := a.byIP[ip]
	if prev != nil && prev.mac != mac && prev.bound {
		// An expired lease of another client is being reused.
		if err := a.store.Delete(ctx, net.HardwareAddr(prev.mac)); err != nil {
			return fmt.Errorf("deleting expired lease of %s: %w", net.HardwareAddr(prev.mac), err)
		}
	}
	if prev != nil && prev.mac != mac {
		delete(a.byMAC, prev.mac)
		delete(a.byIP, ip)
	}
	if bound {
		l := Lease{MAC: net.HardwareAddr(mac), IP: ip, Expires: expires, Subnet: subnetName}
		if err := a.store.Put(ctx, l); err != nil {
			return fmt.Errorf("storing lease: %w", err)
		}
	}
	if old := a.byMAC[mac]; old != nil && old.ip != ip {
		delete(a.byIP, old.ip)
	}
	e := &entry{mac: mac, ip: ip, subnet: subnetName, expires: expires, bound: bound}
	if old := a.byMAC[mac]; old != nil && old.ip == ip && old.bound && !bound {
		// Re-offering a bound lease: keep it bound and its expiry.
		e.bound, e.expires = true, old.expires
	}
	a.byMAC[mac] = e
	a.byIP[ip] = e
	return nil
}

// offer picks the address for a DISCOVER: the reservation when there is one,
// else the MAC's current address if still usable, else the next free address
// of the range. The address is held for offerHold.
func (a *allocator) offer(ctx context.Context, mac net.HardwareAddr, s *subnet, reserved netip.Addr) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.load(ctx); err != nil {
		return netip.Addr{}, err
	}
	now := a.now()
	key := string(mac)
	hold := now.Add(a.offerHold)
	if reserved.IsValid() {
		if a.heldByOther(reserved, key, now) {
			return netip.Addr{}, errConflict
		}
		return reserved, a.take(ctx, key, reserved, s.Name, hold, false)
	}
	if !s.hasRange {
		return netip.Addr{}, errNoRange
	}
	if e := a.byMAC[key]; e != nil && s.inRange(e.ip) {
		ok, err := a.usable(ctx, e.ip, key, now)
		if err != nil {
			return netip.Addr{}, err
		}
		if ok {
			return e.ip, a.take(ctx, key, e.ip, s.Name, hold, false)
		}
	}
	ip, err := a.nextFree(ctx, s, key, now)
	if err != nil {
		return netip.Addr{}, err
	}
	return ip, a.take(ctx, key, ip, s.Name, hold, false)
}

// nextFree scans the range once, starting after the last address handed out
// (next-fit), and returns the first usable address.
func (a *allocator) nextFree(ctx context.Context, s *subnet, mac string, now time.Time) (netip.Addr, error) {
	start := a.cursor[s.Name]
	if !s.inRange(start) {
		start = s.RangeStart
	}
	ip := start
	for {
		ok, err := a.usable(ctx, ip, mac, now)
		if err != nil {
			return netip.Addr{}, err
		}
		if ok {
			next := ip.Next()
			if !s.inRange(next) {
				next = s.RangeStart
			}
			a.cursor[s.Name] = next
			return ip, nil
		}
		ip = ip.Next()
		if !s.inRange(ip) {
			ip = s.RangeStart
		}
		if ip == start {
			return netip.Addr{}, errRangeExhausted
		}
	}
}

// confirm binds requested to mac for a REQUEST, or reports false (NAK) when
// the client may not have it.
func (a *allocator) confirm(ctx context.Context, mac net.HardwareAddr, s *subnet, reserved, requested netip.Addr) (Lease, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.load(ctx); err != nil {
		return Lease{}, false, err
	}
	now := a.now()
	key := string(mac)
	switch {
	case reserved.IsValid():
		if requested != reserved || a.heldByOther(reserved, key, now) {
			return Lease{}, false, nil
		}
	default:
		e := a.byMAC[key]
		mine := e != nil && e.ip == requested
		// A client may keep an address it holds, or take a free one of
		// the range (INIT-REBOOT after the store was lost).
		if !mine && !s.inRange(requested) {
			return Lease{}, false, nil
		}
		if mine && !s.Prefix.Contains(requested) {
			return Lease{}, false, nil
		}
		ok, err := a.usable(ctx, requested, key, now)
		if err != nil || !ok {
			return Lease{}, false, err
		}
	}
	expires := now.Add(s.LeaseTime)
	if err := a.take(ctx, key, requested, s.Name, expires, true); err != nil {
		return Lease{}, false, err
	}
	return Lease{MAC: mac, IP: requested, Expires: expires, Subnet: s.Name}, true, nil
}

// cancelOffer drops mac's unbound offer (the client chose another server).
func (a *allocator) cancelOffer(mac net.HardwareAddr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e := a.byMAC[string(mac)]; e != nil && !e.bound {
		delete(a.byMAC, e.mac)
		delete(a.byIP, e.ip)
	}
}

// release frees mac's address if it is ip.
func (a *allocator) release(ctx context.Context, mac net.HardwareAddr, ip netip.Addr) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.load(ctx); err != nil {
		return false, err
	}
	e := a.byMAC[string(mac)]
	if e == nil || e.ip != ip {
		return false, nil
	}
	if e.bound {
		if err := a.store.Delete(ctx, mac); err != nil {
			return false, fmt.Errorf("deleting lease: %w", err)
		}
	}
	delete(a.byMAC, e.mac)
	delete(a.byIP, e.ip)
	return true, nil
}

// decline frees mac's address ip and keeps it out of the range for
// declineHold: something else on the link answers ARP for it.
func (a *allocator) decline(ctx context.Context, mac net.HardwareAddr, ip netip.Addr) (bool, error) {
	released, err := a.release(ctx, mac, ip)
	if err != nil || !released {
		return released, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.declined[ip] = a.now().Add(a.declineHold)
	return true, nil
}
