package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

type boltTx = bolt.Tx

func newStore(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// rawVersion reads or writes schema_version with bare bbolt.
func rawVersion(t *testing.T, path string, set string) string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	must(t, err)
	defer db.Close()
	var v string
	must(t, db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if set != "" {
			return b.Put(keySchemaVersion, []byte(set))
		}
		v = string(b.Get(keySchemaVersion))
		return nil
	}))
	return v
}

func TestOpenCreatesSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	must(t, err)
	if s.Path() != path {
		t.Fatalf("Path %q", s.Path())
	}
	must(t, s.Check())
	must(t, s.Close())
	must(t, s.Close()) // idempotent
	if _, err := s.GetMachine("x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if _, err := s.PutLease(Lease{MAC: "52:54:00:00:00:01", IP: mustAddr("10.0.0.1")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutLease after Close: %v", err)
	}
	if v := rawVersion(t, path, ""); v != strconv.Itoa(SchemaVersion) {
		t.Fatalf("schema_version %q", v)
	}
	fi, err := os.Stat(path)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// Reopen keeps data.
	s, err = Open(path, Options{})
	must(t, err)
	defer s.Close()
	if _, err := s.PutMachine(Machine{ID: "m1"}); err != nil {
		t.Fatal(err)
	}
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	must(t, err)
	_, err = s.PutMachine(Machine{ID: "m1"})
	must(t, err)
	must(t, s.Close())
	rawVersion(t, path, strconv.Itoa(SchemaVersion+1))
	before, err := os.ReadFile(path)
	must(t, err)

	for _, ro := range []bool{false, true} {
		_, err = Open(path, Options{ReadOnly: ro})
		var se *SchemaError
		if !errors.Is(err, ErrSchemaTooNew) || !errors.As(err, &se) || se.Found != SchemaVersion+1 || se.Supported != SchemaVersion {
			t.Fatalf("ReadOnly=%v: Open = %v", ro, err)
		}
	}
	after, err := os.ReadFile(path)
	must(t, err)
	if !bytes.Equal(before, after) {
		t.Fatal("failed open modified the file")
	}
	if v := rawVersion(t, path, ""); v != strconv.Itoa(SchemaVersion+1) {
		t.Fatalf("version rewritten to %q", v)
	}
}

func TestCorruptOrForeignFile(t *testing.T) {
	dir := t.TempDir()
	// A bbolt file with someone else's buckets.
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	must(t, err)
	must(t, db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("theirs")); return err }))
	must(t, db.Close())
	if _, err := Open(foreign, Options{}); err == nil {
		t.Fatal("opened a foreign bbolt file")
	}
	// A garbage version.
	path := filepath.Join(dir, "state.db")
	s, err := Open(path, Options{})
	must(t, err)
	must(t, s.Close())
	rawVersion(t, path, "banana")
	if _, err := Open(path, Options{}); err == nil {
		t.Fatal("opened a file with a corrupt version")
	}
	// Not a bbolt file at all.
	junk := filepath.Join(dir, "junk.db")
	must(t, os.WriteFile(junk, bytes.Repeat([]byte("junk"), 4096), 0o600))
	if _, err := Open(junk, Options{}); err == nil {
		t.Fatal("opened junk")
	}
}

func TestMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := open(path, Options{}, 1, nil)
	must(t, err)
	_, err = s.PutMachine(Machine{ID: "m1", Status: "old"})
	must(t, err)
	must(t, s.Close())

	// A failing migration leaves the file at v1, data intact.
	failing := map[int]migration{1: func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMachines).Delete([]byte("m1")); err != nil {
			return err
		}
		return errors.New("boom")
	}}
	if _, err := open(path, Options{}, 2, failing); err == nil {
		t.Fatal("failing migration succeeded")
	}
	if v := rawVersion(t, path, ""); v != "1" {
		t.Fatalf("version %q after failed migration", v)
	}
	// A missing step is an error.
	if _, err := open(path, Options{}, 3, map[int]migration{1: func(*bolt.Tx) error { return nil }}); err == nil {
		t.Fatal("migration with a gap succeeded")
	}

	// v1 -> v2 rewrites every machine's status.
	ran := 0
	up := map[int]migration{1: func(tx *bolt.Tx) error {
		ran++
		b := tx.Bucket(bucketMachines)
		ms, err := listJSON[Machine](b, nil)
		if err != nil {
			return err
		}
		for _, m := range ms {
			m.Status = "migrated-from-" + m.Status
			if err := putJSON(b, []byte(m.ID), m); err != nil {
				return err
			}
		}
		return nil
	}}
	s2, err := open(path, Options{}, 2, up)
	must(t, err)
	m, err := s2.GetMachine("m1")
	must(t, err)
	if m.Status != "migrated-from-old" || ran != 1 {
		t.Fatalf("migration result %q, ran %d", m.Status, ran)
	}
	must(t, s2.Close())
	if v := rawVersion(t, path, ""); v != "2" {
		t.Fatalf("version %q", v)
	}
	// Opening again at v2 does not re-run it; current code (v1) refuses.
	s2, err = open(path, Options{}, 2, up)
	must(t, err)
	must(t, s2.Close())
	if ran != 1 {
		t.Fatalf("migration ran %d times", ran)
	}
	if _, err := open(path, Options{}, 1, nil); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("v1 code opened v2 file: %v", err)
	}
	// Read-only opening of an old file can't migrate.
	path1 := filepath.Join(t.TempDir(), "v1.db")
	s, err = open(path1, Options{}, 1, nil)
	must(t, err)
	must(t, s.Close())
	if _, err := open(path1, Options{ReadOnly: true}, 2, up); err == nil {
		t.Fatal("read-only open migrated")
	}
}

func TestLockedAndReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	must(t, err)
	_, err = s.PutMachine(Machine{ID: "m1"})
	must(t, err)
	if _, err := Open(path, Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: %v", err)
	}
	must(t, s.Close())

	ro, err := Open(path, Options{ReadOnly: true})
	must(t, err)
	defer ro.Close()
	if _, err := ro.GetMachine("m1"); err != nil {
		t.Fatal(err)
	}
	if _, err := ro.PutMachine(Machine{ID: "m2"}); err == nil {
		t.Fatal("write through read-only store")
	}
	if _, err := ro.AppendEvent(Event{MachineID: "m1", Type: "x"}); err == nil {
		t.Fatal("batched write through read-only store")
	}
}

func TestBackup(t *testing.T) {
	s := newStore(t, Options{})
	_, err := s.PutMachine(Machine{ID: "m1", MACs: []string{"52:54:00:00:00:01"}})
	must(t, err)
	var buf bytes.Buffer
	n, err := s.Backup(&buf)
	must(t, err)
	if n != int64(buf.Len()) || n == 0 {
		t.Fatalf("backup %d bytes, buffer %d", n, buf.Len())
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	must(t, os.WriteFile(copyPath, buf.Bytes(), 0o600))
	c, err := Open(copyPath, Options{})
	must(t, err)
	defer c.Close()
	must(t, c.Check())
	if m, err := c.GetMachineByMAC("52-54-00-00-00-01"); err != nil || m.ID != "m1" {
		t.Fatalf("backup content: %+v %v", m, err)
	}
}

// A schema 1 file (before roles) opens with the real migrations and can
// then hold roles and reports; its machines survive.
func TestMigrationAddsRoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := open(path, Options{}, 1, nil)
	must(t, err)
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRoles, bucketReports} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return nil
	}))
	_, err = s.PutMachine(Machine{ID: "m1"})
	must(t, err)
	must(t, s.Close())

	s, err = Open(path, Options{})
	must(t, err)
	if _, err := s.GetMachine("m1"); err != nil {
		t.Fatalf("machine lost in migration: %v", err)
	}
	if _, err := s.PutRole(Role{Name: "base", Definition: []byte(`{"name":"base"}`)}); err != nil {
		t.Fatalf("PutRole after migration: %v", err)
	}
	must(t, s.PutRoleReport(RoleReport{MachineID: "m1", Report: []byte(`{}`)}))
	if r, err := s.GetRole("base"); err != nil || string(r.Definition) != `{"name":"base"}` {
		t.Fatalf("GetRole = %+v, %v", r, err)
	}
	must(t, s.DeleteRoleReport("m1"))
	must(t, s.DeleteRoleReport("m1"))
	if _, err := s.GetRoleReport("m1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("report after delete: %v", err)
	}
	must(t, s.Close())
	if v := rawVersion(t, path, ""); v != strconv.Itoa(SchemaVersion) {
		t.Fatalf("version %s after migration", v)
	}
}
