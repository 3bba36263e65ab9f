package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// fakeClock returns a clock the test advances by hand.
func fakeClock(s *Store) *time.Time {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.now = func() time.Time { return now }
	return &now
}

func TestTokenHash(t *testing.T) {
	h := HashToken("s3cret")
	if !h.Matches("s3cret") || h.Matches("s3cret ") || h.Matches("") {
		t.Fatal("Matches")
	}
	var zero TokenHash
	if !zero.IsZero() || zero.Matches("") {
		t.Fatal("zero hash must match nothing")
	}
	b, err := json.Marshal(struct {
		H TokenHash `json:"h"`
	}{h})
	must(t, err)
	if want := `{"h":"` + h.String() + `"}`; string(b) != want || len(h.String()) != 64 {
		t.Fatalf("json %s", b)
	}
	var back TokenHash
	must(t, back.UnmarshalText([]byte(h.String())))
	if back != h {
		t.Fatal("round trip")
	}
	for _, bad := range []string{"abc", strings.Repeat("zz", 32)} {
		if err := back.UnmarshalText([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("UnmarshalText(%q) = %v", bad, err)
		}
	}
	must(t, back.UnmarshalText(nil))
	if !back.IsZero() {
		t.Fatal("empty text should give zero hash")
	}
}

func TestMachines(t *testing.T) {
	s := newStore(t, Options{})
	now := fakeClock(s)

	m := Machine{
		ID: "rack1-node01", MACs: []string{"52:54:00:AA:BB:01", "52-54-00-aa-bb-02", "52:54:00:aa:bb:01"},
		Hostname: "node01", IP: mustAddr("::ffff:10.0.0.11"), TokenHash: HashToken("tok"),
		Status: "registered", SystemEndpoint: "https://bmc1/redfish/v1/Systems/1", Image: "debian-13",
		InstallInputs: map[string]string{"disk": "/dev/sda", "timezone": "UTC"},
	}
	got, err := s.PutMachine(m)
	must(t, err)
	if !reflect.DeepEqual(got.MACs, []string{"52:54:00:aa:bb:01", "52:54:00:aa:bb:02"}) {
		t.Fatalf("MACs %v", got.MACs)
	}
	if got.IP != mustAddr("10.0.0.11") || !got.CreatedAt.Equal(*now) || !got.UpdatedAt.Equal(*now) {
		t.Fatalf("stored %+v", got)
	}
	back, err := s.GetMachine(m.ID)
	must(t, err)
	if !reflect.DeepEqual(back, got) {
		t.Fatalf("Get = %+v\nwant  %+v", back, got)
	}
	if !back.TokenHash.Matches("tok") {
		t.Fatal("token hash lost")
	}
	for _, mac := range []string{"52:54:00:aa:bb:01", "52:54:00:AA:BB:02", "5254.00aa.bb02"} {
		byMAC, err := s.GetMachineByMAC(mac)
		if err != nil || byMAC.ID != m.ID {
			t.Fatalf("GetMachineByMAC(%s) = %v, %v", mac, byMAC.ID, err)
		}
	}

	// Another machine can't take a MAC that is in use.
	_, err = s.PutMachine(Machine{ID: "rack1-node02", MACs: []string{"52:54:00:aa:bb:02"}})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("MAC conflict: %v", err)
	}
	if _, err := s.GetMachine("rack1-node02"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("conflicting machine was stored: %v", err)
	}

	// Replacing drops a MAC from the index and keeps CreatedAt.
	*now = now.Add(time.Hour)
	got.MACs = []string{"52:54:00:aa:bb:01"}
	got.Status = "installing"
	upd, err := s.PutMachine(got)
	must(t, err)
	if !upd.CreatedAt.Equal(got.CreatedAt) || !upd.UpdatedAt.Equal(*now) {
		t.Fatalf("timestamps %v %v", upd.CreatedAt, upd.UpdatedAt)
	}
	if _, err := s.GetMachineByMAC("52:54:00:aa:bb:02"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("dropped MAC still indexed: %v", err)
	}
	// ...so the other machine can now have it.
	_, err = s.PutMachine(Machine{ID: "rack1-node02", MACs: []string{"52:54:00:aa:bb:02"}})
	must(t, err)

	// UpdateMachine: read-modify-write.
	upd, err = s.UpdateMachine(m.ID, func(m *Machine) error {
		m.Status = "ready"
		m.MACs = append(m.MACs, "52:54:00:aa:bb:03")
		return nil
	})
	must(t, err)
	if upd.Status != "ready" || len(upd.MACs) != 2 {
		t.Fatalf("UpdateMachine %+v", upd)
	}
	if byMAC, err := s.GetMachineByMAC("52:54:00:aa:bb:03"); err != nil || byMAC.ID != m.ID {
		t.Fatalf("new MAC not indexed: %v", err)
	}
	sentinel := errors.New("nope")
	if _, err := s.UpdateMachine(m.ID, func(m *Machine) error { m.Status = "x"; return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("fn error: %v", err)
	}
	if _, err := s.UpdateMachine(m.ID, func(m *Machine) error { m.ID = "other"; return nil }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ID change: %v", err)
	}
	if _, err := s.UpdateMachine(m.ID, func(m *Machine) error { m.MACs = []string{"52:54:00:aa:bb:02"}; return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflict via update: %v", err)
	}
	if _, err := s.UpdateMachine("ghost", func(*Machine) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	if cur, _ := s.GetMachine(m.ID); cur.Status != "ready" {
		t.Fatalf("failed updates changed the record: %q", cur.Status)
	}

	list, err := s.ListMachines()
	must(t, err)
	if len(list) != 2 || list[0].ID != "rack1-node01" || list[1].ID != "rack1-node02" {
		t.Fatalf("List %v", list)
	}

	// Delete removes the record, its MAC index and its timeline.
	_, err = s.AppendEvent(Event{MachineID: m.ID, Type: "dhcp.ack"})
	must(t, err)
	must(t, s.DeleteMachine(m.ID))
	if _, err := s.GetMachine(m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	var nf *NotFoundError
	if _, err := s.GetMachineByMAC("52:54:00:aa:bb:01"); !errors.As(err, &nf) || nf.Key != "52:54:00:aa:bb:01" {
		t.Fatalf("MAC index after delete: %v", err)
	}
	if evs, err := s.ListEvents(m.ID, 0); err != nil || len(evs) != 0 {
		t.Fatalf("events after delete: %v %v", evs, err)
	}
	if err := s.DeleteMachine(m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("double delete: %v", err)
	}
	if _, err := s.PutMachine(Machine{ID: "reuse", MACs: []string{"52:54:00:aa:bb:01"}}); err != nil {
		t.Fatalf("freed MAC: %v", err)
	}

	// Validation.
	for _, bad := range []Machine{{}, {ID: strings.Repeat("x", MaxKeyLen+1)}, {ID: "\xff"}, {ID: "m", MACs: []string{"not-a-mac"}}} {
		if _, err := s.PutMachine(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutMachine(%.20q) = %v", bad.ID, err)
		}
	}
	if _, err := s.GetMachineByMAC("zz"); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
}

func TestLeases(t *testing.T) {
	s := newStore(t, Options{})
	now := fakeClock(s)
	exp := now.Add(time.Hour)

	l, err := s.PutLease(Lease{MAC: "52:54:00:00:00:01", IP: mustAddr("10.0.0.50"), Hostname: "a", MachineID: "m1", Expiry: exp})
	must(t, err)
	if !l.CreatedAt.Equal(*now) || l.MAC != "52:54:00:00:00:01" {
		t.Fatalf("%+v", l)
	}
	got, err := s.GetLease("52-54-00-00-00-01")
	must(t, err)
	if !reflect.DeepEqual(got, l) {
		t.Fatalf("GetLease %+v, want %+v", got, l)
	}
	if got, err := s.GetLeaseByIP(mustAddr("::ffff:10.0.0.50")); err != nil || got.MAC != l.MAC {
		t.Fatalf("GetLeaseByIP %v %v", got, err)
	}

	// Another MAC can't take an active lease's IP.
	_, err = s.PutLease(Lease{MAC: "52:54:00:00:00:02", IP: mustAddr("10.0.0.50"), Expiry: exp})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("IP conflict: %v", err)
	}
	if _, err := s.GetLease("52:54:00:00:00:02"); !errors.Is(err, ErrNotFound) {
		t.Fatal("conflicting lease stored")
	}

	// Renewal keeps CreatedAt; moving to a new IP frees the old one.
	*now = now.Add(time.Minute)
	l2, err := s.PutLease(Lease{MAC: "52:54:00:00:00:01", IP: mustAddr("10.0.0.51"), Expiry: now.Add(time.Hour)})
	must(t, err)
	if !l2.CreatedAt.Equal(l.CreatedAt) || !l2.UpdatedAt.Equal(*now) {
		t.Fatalf("renewal timestamps %+v", l2)
	}
	if _, err := s.GetLeaseByIP(mustAddr("10.0.0.50")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old IP still indexed: %v", err)
	}
	_, err = s.PutLease(Lease{MAC: "52:54:00:00:00:02", IP: mustAddr("10.0.0.50"), Expiry: now.Add(time.Minute)})
	must(t, err)

	// An expired lease's IP is reclaimed by another MAC.
	*now = now.Add(2 * time.Minute) // 52:54:00:00:00:02 has expired
	_, err = s.PutLease(Lease{MAC: "52:54:00:00:00:03", IP: mustAddr("10.0.0.50"), Expiry: now.Add(time.Hour)})
	must(t, err)
	if _, err := s.GetLease("52:54:00:00:00:02"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reclaimed lease still present: %v", err)
	}
	if got, _ := s.GetLeaseByIP(mustAddr("10.0.0.50")); got.MAC != "52:54:00:00:00:03" {
		t.Fatalf("IP owner %s", got.MAC)
	}

	// IPv6 leases work too.
	_, err = s.PutLease(Lease{MAC: "52:54:00:00:00:06", IP: mustAddr("fd00::6"), Expiry: now.Add(time.Hour)})
	must(t, err)

	list, err := s.ListLeases()
	must(t, err)
	var macs []string
	for _, l := range list {
		macs = append(macs, l.MAC)
	}
	if !reflect.DeepEqual(macs, []string{"52:54:00:00:00:01", "52:54:00:00:00:03", "52:54:00:00:00:06"}) {
		t.Fatalf("ListLeases %v", macs)
	}

	// Prune deletes exactly the expired ones.
	_, err = s.PutLease(Lease{MAC: "52:54:00:00:00:07", IP: mustAddr("10.0.0.57"), Expiry: now.Add(-time.Second)})
	must(t, err)
	n, err := s.PruneLeases(*now)
	must(t, err)
	if n != 1 {
		t.Fatalf("pruned %d", n)
	}
	if _, err := s.GetLeaseByIP(mustAddr("10.0.0.57")); !errors.Is(err, ErrNotFound) {
		t.Fatal("pruned lease's IP still indexed")
	}

	must(t, s.DeleteLease("52:54:00:00:00:01"))
	if _, err := s.GetLeaseByIP(mustAddr("10.0.0.51")); !errors.Is(err, ErrNotFound) {
		t.Fatal("deleted lease's IP still indexed")
	}
	if err := s.DeleteLease("52:54:00:00:00:01"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("double delete: %v", err)
	}
	for _, bad := range []Lease{{MAC: "x", IP: mustAddr("10.0.0.1")}, {MAC: "52:54:00:00:00:09"}} {
		if _, err := s.PutLease(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutLease(%+v) = %v", bad, err)
		}
	}
	if !(Lease{Expiry: *now}).Expired(*now) || (Lease{Expiry: now.Add(1)}).Expired(*now) {
		t.Fatal("Expired boundary")
	}
}

func TestEvents(t *testing.T) {
	s := newStore(t, Options{MaxEventsPerMachine: 5})
	now := fakeClock(s)
	for i := 1; i <= 12; i++ {
		e, err := s.AppendEvent(Event{MachineID: "m1", Source: "tftp", Type: "tftp.done", Message: fmt.Sprint(i), Attrs: map[string]string{"i": fmt.Sprint(i)}})
		must(t, err)
		if e.Seq != uint64(i) || !e.Time.Equal(*now) {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	explicit := time.Date(2020, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600))
	e, err := s.AppendEvent(Event{MachineID: "m2", Type: "dhcp.offer", Time: explicit})
	must(t, err)
	if e.Seq != 1 || !e.Time.Equal(explicit) || e.Time.Location() != time.UTC {
		t.Fatalf("m2 event %+v", e)
	}

	all, err := s.ListEvents("m1", 0)
	must(t, err)
	if len(all) != 5 || all[0].Seq != 8 || all[4].Seq != 12 || all[4].Message != "12" || all[4].Attrs["i"] != "12" {
		t.Fatalf("capped timeline %+v", all)
	}
	since, err := s.ListEvents("m1", 10)
	must(t, err)
	if len(since) != 2 || since[0].Seq != 11 {
		t.Fatalf("since 10: %+v", since)
	}
	for _, q := range []struct {
		id    string
		since uint64
	}{{"m1", 12}, {"m1", 1 << 63}, {"m1", ^uint64(0)}, {"nobody", 0}} {
		evs, err := s.ListEvents(q.id, q.since)
		if err != nil || evs == nil || len(evs) != 0 {
			t.Fatalf("ListEvents(%s, %d) = %v, %v", q.id, q.since, evs, err)
		}
	}
	for _, bad := range []Event{{Type: "x"}, {MachineID: "m1"}} {
		if _, err := s.AppendEvent(bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("AppendEvent(%+v) = %v", bad, err)
		}
	}

	unlimited := newStore(t, Options{MaxEventsPerMachine: -1})
	for range 1500 {
		_, err := unlimited.AppendEvent(Event{MachineID: "m", Type: "x"})
		must(t, err)
	}
	if evs, _ := unlimited.ListEvents("m", 0); len(evs) != 1500 {
		t.Fatalf("unlimited kept %d", len(evs))
	}
}

func TestOperations(t *testing.T) {
	s := newStore(t, Options{})
	now := fakeClock(s)
	op, err := s.PutOperation(Operation{ID: "op1", MachineID: "m1", Kind: "provision", Params: map[string]string{"image": "debian-13"}, Deadline: now.Add(time.Hour)})
	must(t, err)
	if op.State != OperationPending || !op.CreatedAt.Equal(*now) {
		t.Fatalf("%+v", op)
	}
	_, err = s.PutOperation(Operation{ID: "op2", MachineID: "m2", Kind: "provision"})
	must(t, err)
	_, err = s.PutOperation(Operation{ID: "op3", MachineID: "m1", Kind: "deprovision", State: OperationCanceled})
	must(t, err)

	*now = now.Add(time.Minute)
	upd, err := s.UpdateOperation("op1", func(op *Operation) error {
		op.State, op.StartedAt = OperationRunning, time.Now().UTC()
		return nil
	})
	must(t, err)
	if upd.State != OperationRunning || !upd.CreatedAt.Equal(op.CreatedAt) || !upd.UpdatedAt.Equal(*now) {
		t.Fatalf("%+v", upd)
	}
	got, err := s.GetOperation("op1")
	must(t, err)
	if !reflect.DeepEqual(got, upd) {
		t.Fatalf("Get %+v want %+v", got, upd)
	}
	if _, err := s.UpdateOperation("op1", func(op *Operation) error { op.State = "bogus"; return nil }); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := s.UpdateOperation("op1", func(op *Operation) error { op.ID = "x"; return nil }); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := s.UpdateOperation("nope", func(*Operation) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}

	m1, err := s.ListOperations("m1")
	must(t, err)
	all, err := s.ListOperations("")
	must(t, err)
	if len(m1) != 2 || m1[0].ID != "op1" || m1[1].ID != "op3" || len(all) != 3 {
		t.Fatalf("list m1=%v all=%v", m1, all)
	}
	if !OperationCanceled.Done() || OperationRunning.Done() {
		t.Fatal("Done")
	}
	must(t, s.DeleteOperation("op2"))
	if _, err := s.GetOperation("op2"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.DeleteOperation("op2"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	for _, bad := range []Operation{{MachineID: "m"}, {ID: "x"}, {ID: "x", MachineID: "m", State: "weird"}} {
		if _, err := s.PutOperation(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutOperation(%+v) = %v", bad, err)
		}
	}
}

func TestImages(t *testing.T) {
	s := newStore(t, Options{})
	now := fakeClock(s)
	img := Image{Name: "debian-13", Kind: "kernel-initrd", Source: "https://deb.debian.org/...", SHA256: strings.Repeat("ab", 32),
		Size: 123, Path: "/var/cache/metal/debian-13", Files: map[string]string{"kernel": "linux", "initrd": "initrd.gz"}}
	got, err := s.PutImage(img)
	must(t, err)
	*now = now.Add(time.Minute)
	img.Size = 456
	got2, err := s.PutImage(img)
	must(t, err)
	if !got2.CreatedAt.Equal(got.CreatedAt) || !got2.UpdatedAt.Equal(*now) {
		t.Fatalf("%+v", got2)
	}
	back, err := s.GetImage("debian-13")
	must(t, err)
	if !reflect.DeepEqual(back, got2) {
		t.Fatalf("Get %+v want %+v", back, got2)
	}
	_, err = s.PutImage(Image{Name: "alma-10"})
	must(t, err)
	list, err := s.ListImages()
	must(t, err)
	if len(list) != 2 || list[0].Name != "alma-10" {
		t.Fatalf("%v", list)
	}
	must(t, s.DeleteImage("alma-10"))
	if _, err := s.GetImage("alma-10"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.DeleteImage("alma-10"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := s.PutImage(Image{}); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	var nf *NotFoundError
	if _, err := s.GetImage("x"); !errors.As(err, &nf) || nf.Kind != "image" || err.Error() != `store: image "x" not found` {
		t.Fatalf("%v", err)
	}
}

// TestStoredJSON pins the on-disk encoding of a machine so schema changes
// are deliberate.
func TestStoredJSON(t *testing.T) {
	s := newStore(t, Options{})
	fakeClock(s)
	_, err := s.PutMachine(Machine{ID: "m1", MACs: []string{"52:54:00:00:00:01"}, TokenHash: HashToken("t")})
	must(t, err)
	var raw string
	must(t, s.view(func(tx *bolt.Tx) error {
		raw = string(tx.Bucket(bucketMachines).Get([]byte("m1")))
		return nil
	}))
	want := `{"id":"m1","macs":["52:54:00:00:00:01"],"token_hash":"` + HashToken("t").String() +
		`","created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`
	if raw != want {
		t.Fatalf("stored\n%s\nwant\n%s", raw, want)
	}
	if strings.Contains(raw, `"t"`) {
		t.Fatal("token stored in clear")
	}
}
