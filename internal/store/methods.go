package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ---- Machines ----

// prepMachine validates and normalises m in place.
func prepMachine(m *Machine) error {
	if err := checkKey("machine", m.ID); err != nil {
		return err
	}
	seen := make(map[string]bool, len(m.MACs))
	macs := make([]string, 0, len(m.MACs))
	for _, raw := range m.MACs {
		mac, err := NormalizeMAC(raw)
		if err != nil {
			return fmt.Errorf("machine %q: %w", m.ID, err)
		}
		if !seen[mac] {
			seen[mac] = true
			macs = append(macs, mac)
		}
	}
	m.MACs = macs
	m.IP = m.IP.Unmap()
	return nil
}

func putMachineTx(tx *bolt.Tx, m Machine, now time.Time) (Machine, error) {
	b, idx := tx.Bucket(bucketMachines), tx.Bucket(bucketMachineMAC)
	key := []byte(m.ID)
	old, exists, err := getJSON[Machine](b, key)
	if err != nil {
		return Machine{}, err
	}
	m.CreatedAt, m.UpdatedAt = now, now
	if exists {
		m.CreatedAt = old.CreatedAt
		for _, mac := range old.MACs {
			if string(idx.Get([]byte(mac))) == m.ID {
				if err := idx.Delete([]byte(mac)); err != nil {
					return Machine{}, err
				}
			}
		}
	}
	for _, mac := range m.MACs {
		if owner := idx.Get([]byte(mac)); owner != nil {
			return Machine{}, fmt.Errorf("%w: MAC %s already belongs to machine %q", ErrConflict, mac, owner)
		}
		if err := idx.Put([]byte(mac), key); err != nil {
			return Machine{}, err
		}
	}
	return m, putJSON(b, key, m)
}

// PutMachine creates or replaces the machine m.ID and returns the stored
// record (normalised MACs, timestamps). CreatedAt is kept from an existing
// record. A MAC owned by another machine fails with ErrConflict.
func (s *Store) PutMachine(m Machine) (Machine, error) {
	if err := prepMachine(&m); err != nil {
		return Machine{}, err
	}
	now := s.now()
	var out Machine
	err := s.update(func(tx *bolt.Tx) (err error) {
		out, err = putMachineTx(tx, m, now)
		return err
	})
	return out, err
}

// UpdateMachine atomically reads machine id, applies fn and stores the
// result (read-modify-write without lost updates). fn must not change ID;
// if fn returns an error nothing is written and that error is returned.
func (s *Store) UpdateMachine(id string, fn func(*Machine) error) (Machine, error) {
	now := s.now()
	var out Machine
	err := s.update(func(tx *bolt.Tx) error {
		m, ok, err := getJSON[Machine](tx.Bucket(bucketMachines), []byte(id))
		if err != nil {
			return err
		}
		if !ok {
			return &NotFoundError{Kind: "machine", Key: id}
		}
		if err := fn(&m); err != nil {
			return err
		}
		if m.ID != id {
			return fmt.Errorf("%w: UpdateMachine may not change the ID", ErrInvalid)
		}
		if err := prepMachine(&m); err != nil {
			return err
		}
		out, err = putMachineTx(tx, m, now)
		return err
	})
	return out, err
}

// GetMachine returns machine id.
func (s *Store) GetMachine(id string) (Machine, error) {
	return getOne[Machine](s, bucketMachines, "machine", id)
}

// GetMachineByMAC returns the machine owning mac (any net.ParseMAC form).
func (s *Store) GetMachineByMAC(mac string) (Machine, error) {
	norm, err := NormalizeMAC(mac)
	if err != nil {
		return Machine{}, err
	}
	var m Machine
	err = s.view(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketMachineMAC).Get([]byte(norm))
		if id == nil {
			return &NotFoundError{Kind: "machine with MAC", Key: norm}
		}
		var ok bool
		var err error
		m, ok, err = getJSON[Machine](tx.Bucket(bucketMachines), id)
		if err == nil && !ok {
			err = &NotFoundError{Kind: "machine", Key: string(id)}
		}
		return err
	})
	return m, err
}

// DeleteMachine deletes machine id, its MAC index entries and its timeline.
// Its leases and operations are kept.
func (s *Store) DeleteMachine(id string) error {
	return s.update(func(tx *bolt.Tx) error {
		b, idx := tx.Bucket(bucketMachines), tx.Bucket(bucketMachineMAC)
		m, ok, err := getJSON[Machine](b, []byte(id))
		if err != nil {
			return err
		}
		if !ok {
			return &NotFoundError{Kind: "machine", Key: id}
		}
		for _, mac := range m.MACs {
			if string(idx.Get([]byte(mac))) == id {
				if err := idx.Delete([]byte(mac)); err != nil {
					return err
				}
			}
		}
		if err := tx.Bucket(bucketEvents).DeleteBucket([]byte(id)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		return b.Delete([]byte(id))
	})
}

// ListMachines returns all machines ordered by ID.
func (s *Store) ListMachines() ([]Machine, error) {
	var out []Machine
	err := s.view(func(tx *bolt.Tx) (err error) {
		out, err = listJSON[Machine](tx.Bucket(bucketMachines), nil)
		return err
	})
	return out, err
}

// ---- Leases ----

// PutLease creates or replaces the lease for l.MAC and returns the stored
// record. An IP held by another MAC's unexpired lease fails with
// ErrConflict; an expired one is reclaimed (that lease is deleted). Moving a
// MAC to a new IP frees the old one. Concurrent calls are group-committed.
func (s *Store) PutLease(l Lease) (Lease, error) {
	mac, err := NormalizeMAC(l.MAC)
	if err != nil {
		return Lease{}, err
	}
	l.MAC = mac
	if !l.IP.IsValid() {
		return Lease{}, fmt.Errorf("%w: lease for %s has no IP", ErrInvalid, mac)
	}
	l.IP = l.IP.Unmap()
	l.Expiry = l.Expiry.UTC()
	now := s.now()
	key, ipKey := []byte(mac), []byte(l.IP.String())
	var out Lease
	err = s.batch(func(tx *bolt.Tx) error {
		lb, ib := tx.Bucket(bucketLeases), tx.Bucket(bucketLeaseIP)
		rec := l
		rec.CreatedAt, rec.UpdatedAt = now, now
		old, ok, err := getJSON[Lease](lb, key)
		if err != nil {
			return err
		}
		if ok {
			rec.CreatedAt = old.CreatedAt
			if oldIP := []byte(old.IP.String()); old.IP != rec.IP && string(ib.Get(oldIP)) == mac {
				if err := ib.Delete(oldIP); err != nil {
					return err
				}
			}
		}
		if owner := string(ib.Get(ipKey)); owner != "" && owner != mac {
			other, ok, err := getJSON[Lease](lb, []byte(owner))
			if err != nil {
				return err
			}
			if ok && !other.Expired(now) {
				return fmt.Errorf("%w: %s is leased to %s until %s", ErrConflict, l.IP, owner, other.Expiry.Format(time.RFC3339))
			}
			if ok {
				if err := lb.Delete([]byte(owner)); err != nil {
					return err
				}
			}
		}
		if err := ib.Put(ipKey, key); err != nil {
			return err
		}
		out = rec
		return putJSON(lb, key, rec)
	})
	if err != nil {
		return Lease{}, err
	}
	return out, nil
}

// GetLease returns the lease of mac.
func (s *Store) GetLease(mac string) (Lease, error) {
	norm, err := NormalizeMAC(mac)
	if err != nil {
		return Lease{}, err
	}
	return getOne[Lease](s, bucketLeases, "lease", norm)
}

// GetLeaseByIP returns the lease holding ip (expired or not).
func (s *Store) GetLeaseByIP(ip netip.Addr) (Lease, error) {
	ip = ip.Unmap()
	var l Lease
	err := s.view(func(tx *bolt.Tx) error {
		mac := tx.Bucket(bucketLeaseIP).Get([]byte(ip.String()))
		if mac == nil {
			return &NotFoundError{Kind: "lease for IP", Key: ip.String()}
		}
		var ok bool
		var err error
		l, ok, err = getJSON[Lease](tx.Bucket(bucketLeases), mac)
		if err == nil && !ok {
			err = &NotFoundError{Kind: "lease", Key: string(mac)}
		}
		return err
	})
	return l, err
}

func deleteLeaseTx(tx *bolt.Tx, mac string) (bool, error) {
	lb, ib := tx.Bucket(bucketLeases), tx.Bucket(bucketLeaseIP)
	l, ok, err := getJSON[Lease](lb, []byte(mac))
	if err != nil || !ok {
		return false, err
	}
	if ipKey := []byte(l.IP.String()); string(ib.Get(ipKey)) == mac {
		if err := ib.Delete(ipKey); err != nil {
			return false, err
		}
	}
	return true, lb.Delete([]byte(mac))
}

// DeleteLease deletes the lease of mac (DHCPRELEASE, DHCPDECLINE).
func (s *Store) DeleteLease(mac string) error {
	norm, err := NormalizeMAC(mac)
	if err != nil {
		return err
	}
	return s.batch(func(tx *bolt.Tx) error {
		ok, err := deleteLeaseTx(tx, norm)
		if err == nil && !ok {
			err = &NotFoundError{Kind: "lease", Key: norm}
		}
		return err
	})
}

// ListLeases returns all leases, expired or not, ordered by MAC.
func (s *Store) ListLeases() ([]Lease, error) {
	var out []Lease
	err := s.view(func(tx *bolt.Tx) (err error) {
		out, err = listJSON[Lease](tx.Bucket(bucketLeases), nil)
		return err
	})
	return out, err
}

// PruneLeases deletes leases that are expired at time at and returns how
// many were deleted.
func (s *Store) PruneLeases(at time.Time) (int, error) {
	n := 0
	err := s.update(func(tx *bolt.Tx) error {
		n = 0
		expired, err := listJSON[Lease](tx.Bucket(bucketLeases), func(l *Lease) bool { return l.Expired(at) })
		if err != nil {
			return err
		}
		for _, l := range expired {
			if _, err := deleteLeaseTx(tx, l.MAC); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// ---- Events ----

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// AppendEvent appends e to the timeline of e.MachineID (which need not be a
// registered machine) and returns it with Seq (and Time, if zero) set. When
// the timeline exceeds MaxEventsPerMachine the oldest events are dropped;
// sequence numbers are never reused. Concurrent calls are group-committed.
func (s *Store) AppendEvent(e Event) (Event, error) {
	if err := checkKey("machine", e.MachineID); err != nil {
		return Event{}, err
	}
	if e.Type == "" {
		return Event{}, fmt.Errorf("%w: event without Type", ErrInvalid)
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e.Time = e.Time.UTC()
	var out Event
	err := s.batch(func(tx *bolt.Tx) error {
		mb, err := tx.Bucket(bucketEvents).CreateBucketIfNotExists([]byte(e.MachineID))
		if err != nil {
			return err
		}
		rec := e
		if rec.Seq, err = mb.NextSequence(); err != nil {
			return err
		}
		if err := putJSON(mb, seqKey(rec.Seq), rec); err != nil {
			return err
		}
		if s.maxEvents > 0 {
			c := mb.Cursor()
			for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k)+uint64(s.maxEvents) <= rec.Seq; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		out = rec
		return nil
	})
	if err != nil {
		return Event{}, err
	}
	return out, nil
}

// ListEvents returns the events of machineID with Seq > sinceSeq, oldest
// first (sinceSeq 0 lists everything retained). An unknown machine has no
// events.
func (s *Store) ListEvents(machineID string, sinceSeq uint64) ([]Event, error) {
	out := []Event{}
	if sinceSeq == math.MaxUint64 {
		return out, nil
	}
	err := s.view(func(tx *bolt.Tx) error {
		mb := tx.Bucket(bucketEvents).Bucket([]byte(machineID))
		if mb == nil {
			return nil
		}
		c := mb.Cursor()
		for k, raw := c.Seek(seqKey(sinceSeq + 1)); k != nil; k, raw = c.Next() {
			var e Event
			if err := json.Unmarshal(raw, &e); err != nil {
				return fmt.Errorf("store: decode event %s/%d: %w", machineID, binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// ---- Operations ----

func prepOperation(op *Operation) error {
	if err := checkKey("operation", op.ID); err != nil {
		return err
	}
	if err := checkKey("machine", op.MachineID); err != nil {
		return err
	}
	switch op.State {
	case "":
		op.State = OperationPending
	case OperationPending, OperationRunning, OperationSucceeded, OperationFailed, OperationCanceled:
	default:
		return fmt.Errorf("%w: operation state %q", ErrInvalid, op.State)
	}
	return nil
}

func putOperationTx(tx *bolt.Tx, op Operation, now time.Time) (Operation, error) {
	b := tx.Bucket(bucketOperations)
	old, ok, err := getJSON[Operation](b, []byte(op.ID))
	if err != nil {
		return Operation{}, err
	}
	op.CreatedAt, op.UpdatedAt = now, now
	if ok {
		op.CreatedAt = old.CreatedAt
	}
	return op, putJSON(b, []byte(op.ID), op)
}

// PutOperation creates or replaces operation op.ID (State defaults to
// pending) and returns the stored record.
func (s *Store) PutOperation(op Operation) (Operation, error) {
	if err := prepOperation(&op); err != nil {
		return Operation{}, err
	}
	now := s.now()
	var out Operation
	err := s.update(func(tx *bolt.Tx) (err error) {
		out, err = putOperationTx(tx, op, now)
		return err
	})
	return out, err
}

// UpdateOperation atomically reads operation id, applies fn and stores the
// result. fn must not change ID; if it returns an error nothing is written.
func (s *Store) UpdateOperation(id string, fn func(*Operation) error) (Operation, error) {
	now := s.now()
	var out Operation
	err := s.update(func(tx *bolt.Tx) error {
		op, ok, err := getJSON[Operation](tx.Bucket(bucketOperations), []byte(id))
		if err != nil {
			return err
		}
		if !ok {
			return &NotFoundError{Kind: "operation", Key: id}
		}
		if err := fn(&op); err != nil {
			return err
		}
		if op.ID != id {
			return fmt.Errorf("%w: UpdateOperation may not change the ID", ErrInvalid)
		}
		if err := prepOperation(&op); err != nil {
			return err
		}
		out, err = putOperationTx(tx, op, now)
		return err
	})
	return out, err
}

// GetOperation returns operation id.
func (s *Store) GetOperation(id string) (Operation, error) {
	return getOne[Operation](s, bucketOperations, "operation", id)
}

// ListOperations returns the operations of machineID ("" for all), ordered
// by operation ID.
func (s *Store) ListOperations(machineID string) ([]Operation, error) {
	var out []Operation
	err := s.view(func(tx *bolt.Tx) (err error) {
		out, err = listJSON(tx.Bucket(bucketOperations), func(op *Operation) bool {
			return machineID == "" || op.MachineID == machineID
		})
		return err
	})
	return out, err
}

// DeleteOperation deletes operation id.
func (s *Store) DeleteOperation(id string) error {
	return deleteOne(s, bucketOperations, "operation", id)
}

// ---- Images ----

// PutImage creates or replaces image img.Name and returns the stored record.
func (s *Store) PutImage(img Image) (Image, error) {
	if err := checkKey("image", img.Name); err != nil {
		return Image{}, err
	}
	now := s.now()
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImages)
		old, ok, err := getJSON[Image](b, []byte(img.Name))
		if err != nil {
			return err
		}
		img.CreatedAt, img.UpdatedAt = now, now
		if ok {
			img.CreatedAt = old.CreatedAt
		}
		return putJSON(b, []byte(img.Name), img)
	})
	if err != nil {
		return Image{}, err
	}
	return img, nil
}

// GetImage returns image name.
func (s *Store) GetImage(name string) (Image, error) {
	return getOne[Image](s, bucketImages, "image", name)
}

// ListImages returns all images ordered by name.
func (s *Store) ListImages() ([]Image, error) {
	var out []Image
	err := s.view(func(tx *bolt.Tx) (err error) {
		out, err = listJSON[Image](tx.Bucket(bucketImages), nil)
		return err
	})
	return out, err
}

// DeleteImage deletes image name.
func (s *Store) DeleteImage(name string) error {
	return deleteOne(s, bucketImages, "image", name)
}

// ---- Roles ----

// PutRole creates or replaces role r.Name and returns the stored record.
func (s *Store) PutRole(r Role) (Role, error) {
	if err := checkKey("role", r.Name); err != nil {
		return Role{}, err
	}
	now := s.now()
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRoles)
		old, ok, err := getJSON[Role](b, []byte(r.Name))
		if err != nil {
			return err
		}
		r.CreatedAt, r.UpdatedAt = now, now
		if ok {
			r.CreatedAt = old.CreatedAt
		}
		return putJSON(b, []byte(r.Name), r)
	})
	if err != nil {
		return Role{}, err
	}
	return r, nil
}

// GetRole returns role name.
func (s *Store) GetRole(name string) (Role, error) {
	return getOne[Role](s, bucketRoles, "role", name)
}

// ListRoles returns every role, ordered by name.
func (s *Store) ListRoles() ([]Role, error) {
	var out []Role
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = listJSON[Role](tx.Bucket(bucketRoles), nil)
		return err
	})
	return out, err
}

// DeleteRole deletes role name.
func (s *Store) DeleteRole(name string) error {
	return deleteOne(s, bucketRoles, "role", name)
}

// PutRoleReport replaces the machine's last role report.
func (s *Store) PutRoleReport(r RoleReport) error {
	if err := checkKey("machine", r.MachineID); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketReports), []byte(r.MachineID), r)
	})
}

// GetRoleReport returns the machine's last role report.
func (s *Store) GetRoleReport(machineID string) (RoleReport, error) {
	return getOne[RoleReport](s, bucketReports, "role report", machineID)
}

// DeleteRoleReport forgets the machine's role report (none is not an error).
func (s *Store) DeleteRoleReport(machineID string) error {
	err := deleteOne(s, bucketReports, "role report", machineID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// ---- shared ----

func getOne[T any](s *Store, bucket []byte, kind, key string) (T, error) {
	var v T
	err := s.view(func(tx *bolt.Tx) error {
		var ok bool
		var err error
		v, ok, err = getJSON[T](tx.Bucket(bucket), []byte(key))
		if err == nil && !ok {
			err = &NotFoundError{Kind: kind, Key: key}
		}
		return err
	})
	return v, err
}

func deleteOne(s *Store, bucket []byte, kind, key string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b.Get([]byte(key)) == nil {
			return &NotFoundError{Kind: kind, Key: key}
		}
		return b.Delete([]byte(key))
	})
}
