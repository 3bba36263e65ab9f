// Package store persists the boot service's state in a single bbolt file:
// machines (with a MAC index), DHCP leases (with an IP index), per-machine
// timeline events, provisioning operations and images.
//
// Records are JSON-encoded typed structs. All methods are safe for
// concurrent use. A missing record yields an error matching ErrNotFound
// (errors.Is); uniqueness violations match ErrConflict; invalid input
// matches ErrInvalid.
//
// Durability: every method returns only after its transaction has been
// committed and fsynced (unless Options.NoSync). PutLease and AppendEvent,
// which may run hundreds of times per second, use group commit: concurrent
// calls share one transaction and one fsync.
//
// Secrets: the store never sees per-machine tokens, only their SHA-256 hash
// (TokenHash, computed by the caller with HashToken).
package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the on-disk schema version this code reads and writes.
const SchemaVersion = 2

// Defaults for zero Options fields.
const (
	DefaultLockTimeout         = 2 * time.Second
	DefaultMaxEventsPerMachine = 1000
	// DefaultMaxBatch caps how many group-committed writes share one
	// transaction.
	DefaultMaxBatch = 1000
)

// Errors. Match with errors.Is.
var (
	ErrNotFound     = errors.New("store: not found")
	ErrConflict     = errors.New("store: conflict")
	ErrInvalid      = errors.New("store: invalid record")
	ErrSchemaTooNew = errors.New("store: database schema is newer than this program supports")
	ErrLocked       = errors.New("store: database is locked by another process")
	ErrClosed       = errors.New("store: closed")
)

// NotFoundError reports a missing record; errors.Is(err, ErrNotFound) holds.
type NotFoundError struct {
	Kind string // "machine", "lease", "operation", "image"
	Key  string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("store: %s %q not found", e.Kind, e.Key)
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// SchemaError reports a database written by a newer program;
// errors.Is(err, ErrSchemaTooNew) holds.
type SchemaError struct {
	Found     int // version in the file
	Supported int // newest version this code knows
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("store: database schema version %d is newer than supported version %d (upgrade the provider, or use a separate state file)", e.Found, e.Supported)
}

// Is makes errors.Is(err, ErrSchemaTooNew) true.
func (e *SchemaError) Is(target error) bool { return target == ErrSchemaTooNew }

// Options tunes Open. The zero value is sensible.
type Options struct {
	// Logger receives debug logs (migrations, open/close). nil discards.
	Logger *slog.Logger
	// LockTimeout is how long Open waits for another process to release
	// the file lock before failing with ErrLocked. Zero means
	// DefaultLockTimeout; negative waits forever.
	LockTimeout time.Duration
	// ReadOnly opens the file with a shared lock; writes fail. The schema
	// must already be current.
	ReadOnly bool
	// MaxEventsPerMachine caps each machine's timeline; the oldest events
	// are dropped. Zero means DefaultMaxEventsPerMachine; negative means
	// unlimited.
	MaxEventsPerMachine int
	// MaxBatch caps how many PutLease/AppendEvent calls share one
	// transaction. Zero means DefaultMaxBatch.
	MaxBatch int
	// NoSync skips fsync on commit. Only for tests and benchmarks: a
	// machine crash can lose or corrupt data.
	NoSync bool
}

// Bucket names.
var (
	bucketMeta       = []byte("meta")
	bucketMachines   = []byte("machines")
	bucketMachineMAC = []byte("machines_by_mac")
	bucketLeases     = []byte("leases")
	bucketLeaseIP    = []byte("leases_by_ip")
	bucketEvents     = []byte("events") // one nested bucket per machine ID
	bucketOperations = []byte("operations")
	bucketImages     = []byte("images")
	bucketRoles      = []byte("roles")        // since schema 2
	bucketReports    = []byte("role_reports") // since schema 2, by machine ID

	allBuckets = [][]byte{bucketMeta, bucketMachines, bucketMachineMAC, bucketLeases,
		bucketLeaseIP, bucketEvents, bucketOperations, bucketImages, bucketRoles, bucketReports}

	keySchemaVersion = []byte("schema_version")
)

// migration upgrades the schema from version v to v+1 inside the opening
// write transaction.
type migration func(tx *bolt.Tx) error

// migrations[v] upgrades version v to v+1. When bumping SchemaVersion, add
// the step here; all pending steps and the version bump commit atomically.
var migrations = map[int]migration{
	// 2: roles and their reports.
	1: func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRoles, bucketReports} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
}

// Store is an open state file.
type Store struct {
	db        *bolt.DB
	log       *slog.Logger
	maxEvents int
	now       func() time.Time
	gc        *groupCommitter
	// boltBatch routes group-committed writes through bolt.DB.Batch
	// instead (benchmark comparison only).
	boltBatch bool
}

// Open opens or creates the state file at path (mode 0600; the directory
// must exist). A new file gets the current schema; an older one is migrated;
// a newer one fails with a *SchemaError. Only one process can have the file
// open for writing; others wait LockTimeout and then get ErrLocked.
func Open(path string, opts Options) (*Store, error) {
	return open(path, opts, SchemaVersion, migrations)
}

func open(path string, opts Options, target int, migs map[int]migration) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lockTimeout := opts.LockTimeout
	switch {
	case lockTimeout == 0:
		lockTimeout = DefaultLockTimeout
	case lockTimeout < 0:
		lockTimeout = 0 // bbolt: wait forever
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      lockTimeout,
		ReadOnly:     opts.ReadOnly,
		NoSync:       opts.NoSync,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Store{
		db:        db,
		log:       log.With("component", "store"),
		maxEvents: opts.MaxEventsPerMachine,
		now:       func() time.Time { return time.Now().UTC() },
	}
	if s.maxEvents == 0 {
		s.maxEvents = DefaultMaxEventsPerMachine
	}
	maxBatch := opts.MaxBatch
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	s.gc = &groupCommitter{db: db, max: maxBatch}

	if opts.ReadOnly {
		err = db.View(func(tx *bolt.Tx) error {
			v, err := readVersion(tx)
			if err != nil {
				return err
			}
			switch {
			case v > target:
				return &SchemaError{Found: v, Supported: target}
			case v < target:
				return fmt.Errorf("store: schema version %d needs migration to %d; open read-write first", v, target)
			}
			return nil
		})
	} else {
		err = db.Update(func(tx *bolt.Tx) error { return s.initSchema(tx, target, migs) })
	}
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.log.Debug("store opened", "path", path, "schema_version", target, "read_only", opts.ReadOnly)
	return s, nil
}

func readVersion(tx *bolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, errors.New("store: file has no schema version (not a metal state file?)")
	}
	raw := meta.Get(keySchemaVersion)
	v, err := strconv.Atoi(string(raw))
	if err != nil || v < 1 {
		return 0, fmt.Errorf("store: corrupt schema version %q", raw)
	}
	return v, nil
}

func (s *Store) initSchema(tx *bolt.Tx, target int, migs map[int]migration) error {
	if tx.Bucket(bucketMeta) == nil {
		empty := true
		if err := tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil }); err != nil {
			return err
		}
		if !empty {
			return errors.New("store: file has data but no schema version (not a metal state file?)")
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte(strconv.Itoa(target)))
	}
	v, err := readVersion(tx)
	if err != nil {
		return err
	}
	if v > target {
		return &SchemaError{Found: v, Supported: target}
	}
	for ; v < target; v++ {
		m := migs[v]
		if m == nil {
			return fmt.Errorf("store: no migration from schema version %d", v)
		}
		s.log.Info("migrating state file", "from", v, "to", v+1)
		if err := m(tx); err != nil {
			return fmt.Errorf("store: migration %d->%d: %w", v, v+1, err)
		}
	}
	for _, b := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte(strconv.Itoa(target)))
}

// Close waits for running transactions and closes the file. Later calls
// return ErrClosed from every method; Close itself is idempotent.
func (s *Store) Close() error {
	return s.db.Close()
}

// Path returns the file's path.
func (s *Store) Path() string { return s.db.Path() }

// Check verifies the file's internal consistency (page structure, free
// list). It reads the whole file.
func (s *Store) Check() error {
	return s.view(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

// Backup writes a consistent copy of the database to w (a valid bbolt file)
// without blocking writers.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

func mapErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func (s *Store) view(fn func(*bolt.Tx) error) error   { return mapErr(s.db.View(fn)) }
func (s *Store) update(fn func(*bolt.Tx) error) error { return mapErr(s.db.Update(fn)) }

// batch runs fn through the group committer. fn may run more than once (it
// is re-run alone if another call in its batch fails) and must derive
// everything from the transaction.
func (s *Store) batch(fn func(*bolt.Tx) error) error {
	if s.boltBatch {
		return mapErr(s.db.Batch(fn))
	}
	return mapErr(s.gc.do(fn))
}
