package store

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// TokenHash is the SHA-256 of a per-machine secret token. The store only
// ever holds this hash: the engine generates the token, hands it to the
// machine, and stores HashToken(token). It encodes as lower-case hex.
type TokenHash [sha256.Size]byte

// HashToken returns the SHA-256 of token.
func HashToken(token string) TokenHash { return sha256.Sum256([]byte(token)) }

// IsZero reports whether no hash is set.
func (h TokenHash) IsZero() bool { return h == TokenHash{} }

// Matches reports, in constant time, whether token hashes to h. A zero
// hash matches nothing.
func (h TokenHash) Matches(token string) bool {
	got := HashToken(token)
	return !h.IsZero() && subtle.ConstantTimeCompare(h[:], got[:]) == 1
}

// String returns the hex encoding.
func (h TokenHash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes the hash as hex ("" for the zero hash).
func (h TokenHash) MarshalText() ([]byte, error) {
	if h.IsZero() {
		return []byte{}, nil
	}
	return []byte(h.String()), nil
}

// UnmarshalText decodes 64 hex digits, or "" for the zero hash.
func (h *TokenHash) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*h = TokenHash{}
		return nil
	}
	if len(b) != 2*sha256.Size {
		return fmt.Errorf("%w: token hash must be %d hex digits", ErrInvalid, 2*sha256.Size)
	}
	if _, err := hex.Decode(h[:], b); err != nil {
		return fmt.Errorf("%w: token hash: %w", ErrInvalid, err)
	}
	return nil
}

// Machine is a registered bare-metal machine. Key: ID. Each MAC belongs to at
// most one machine.
type Machine struct {
	ID string `json:"id"`
	// MACs are the machine's boot NICs, normalised by the store to
	// lower-case colon form ("52:54:00:12:34:56").
	MACs     []string   `json:"macs,omitempty"`
	Hostname string     `json:"hostname,omitempty"`
	IP       netip.Addr `json:"ip,omitzero"` // address to assign / expect
	// TokenHash is the SHA-256 of the machine's callback token.
	TokenHash TokenHash `json:"token_hash,omitzero"`
	// Status is engine-defined (e.g. "registered", "installing", "ready").
	Status string `json:"status,omitempty"`
	// SystemEndpoint identifies the machine's out-of-band controller, e.g.
	// a Redfish system URL.
	SystemEndpoint string `json:"system_endpoint,omitempty"`
	// Image names the Image to install.
	Image string `json:"image,omitempty"`
	// InstallInputs are the values the install config (kickstart, preseed,
	// cloud-init, iPXE script) is rendered from.
	InstallInputs map[string]string `json:"install_inputs,omitempty"`
	CreatedAt     time.Time         `json:"created_at"` // set by the store
	UpdatedAt     time.Time         `json:"updated_at"` // set by the store
}

// Lease is a DHCP lease. Key: MAC. Each IP belongs to at most one lease.
type Lease struct {
	MAC       string     `json:"mac"` // normalised by the store
	IP        netip.Addr `json:"ip"`
	Hostname  string     `json:"hostname,omitempty"`
	MachineID string     `json:"machine_id,omitempty"` // empty for unknown clients
	Expiry    time.Time  `json:"expiry"`
	CreatedAt time.Time  `json:"created_at"` // first stored; set by the store
	UpdatedAt time.Time  `json:"updated_at"` // set by the store
}

// Expired reports whether the lease has expired at now.
func (l Lease) Expired(now time.Time) bool { return !now.Before(l.Expiry) }

// Event is one entry of a machine's timeline (DHCP offer, TFTP fetch, script
// served, install callback, ...). Append-only; Seq is assigned by the store,
// starts at 1 and increases by one per appended event of that machine.
type Event struct {
	MachineID string            `json:"machine_id"`
	Seq       uint64            `json:"seq"`
	Time      time.Time         `json:"time"`             // the store sets it if zero
	Source    string            `json:"source,omitempty"` // "dhcp", "tftp", "http", "callback", "engine"
	Type      string            `json:"type"`             // e.g. "dhcp.ack", "tftp.done"
	Message   string            `json:"message,omitempty"`
	Attrs     map[string]string `json:"attrs,omitempty"`
}

// OperationState is the state of an Operation.
type OperationState string

// Operation states.
const (
	OperationPending   OperationState = "pending"
	OperationRunning   OperationState = "running"
	OperationSucceeded OperationState = "succeeded"
	OperationFailed    OperationState = "failed"
	OperationCanceled  OperationState = "canceled"
)

// Done reports whether the state is final.
func (s OperationState) Done() bool {
	return s == OperationSucceeded || s == OperationFailed || s == OperationCanceled
}

// Operation is a provisioning operation on a machine. Key: ID.
type Operation struct {
	ID         string            `json:"id"`
	MachineID  string            `json:"machine_id"`
	Kind       string            `json:"kind"` // e.g. "provision", "deprovision", "reinstall"
	State      OperationState    `json:"state"`
	Error      string            `json:"error,omitempty"`
	Params     map[string]string `json:"params,omitempty"`
	Deadline   time.Time         `json:"deadline,omitzero"`
	StartedAt  time.Time         `json:"started_at,omitzero"`
	FinishedAt time.Time         `json:"finished_at,omitzero"`
	CreatedAt  time.Time         `json:"created_at"` // set by the store
	UpdatedAt  time.Time         `json:"updated_at"` // set by the store
}

// Image is an installable OS image known to the boot service. Key: Name.
type Image struct {
	Name   string `json:"name"`
	Kind   string `json:"kind,omitempty"`   // e.g. "kernel-initrd", "iso", "disk"
	Source string `json:"source,omitempty"` // where it came from (URL)
	SHA256 string `json:"sha256,omitempty"` // hex digest of the artifact
	Size   int64  `json:"size,omitempty"`
	Path   string `json:"path,omitempty"` // local cache location
	// Files maps roles ("kernel", "initrd", "image") to the sha256 of the
	// artifact in the cache.
	Files map[string]string `json:"files,omitempty"`
	// KernelArgs are appended to the kernel command line of every install.
	KernelArgs []string `json:"kernel_args,omitempty"`
	// Templates override built-in install templates by file name.
	Templates map[string]string `json:"templates,omitempty"`
	CreatedAt time.Time         `json:"created_at"` // set by the store
	UpdatedAt time.Time         `json:"updated_at"` // set by the store
}

// Role is a role definition in the catalog. The store keeps it opaque.
type Role struct {
	Name       string          `json:"name"`
	Definition json.RawMessage `json:"definition"`
	CreatedAt  time.Time       `json:"created_at"` // set by the store
	UpdatedAt  time.Time       `json:"updated_at"` // set by the store
}

// RoleReport is the last report a machine's agent sent, kept opaque.
type RoleReport struct {
	MachineID  string          `json:"machine_id"`
	Report     json.RawMessage `json:"report"`
	ReceivedAt time.Time       `json:"received_at"`
}

// MaxKeyLen bounds IDs and names.
const MaxKeyLen = 512

func checkKey(kind, k string) error {
	if k == "" || len(k) > MaxKeyLen || !utf8.ValidString(k) {
		return fmt.Errorf("%w: %s key must be 1..%d bytes of UTF-8", ErrInvalid, kind, MaxKeyLen)
	}
	return nil
}

// NormalizeMAC parses a MAC address (any form net.ParseMAC accepts) and
// returns it in the store's canonical lower-case colon form.
func NormalizeMAC(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return hw.String(), nil
}

// Generic JSON helpers over one bucket.

func getJSON[T any](b *bolt.Bucket, key []byte) (T, bool, error) {
	var v T
	raw := b.Get(key)
	if raw == nil {
		return v, false, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, fmt.Errorf("store: decode %q: %w", key, err)
	}
	return v, true, nil
}

func putJSON[T any](b *bolt.Bucket, key []byte, v T) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode: %w", err)
	}
	return b.Put(key, raw)
}

// listJSON decodes every value in b, in key order, keeping those for which
// keep (if non-nil) returns true.
func listJSON[T any](b *bolt.Bucket, keep func(*T) bool) ([]T, error) {
	out := []T{}
	err := b.ForEach(func(k, raw []byte) error {
		if raw == nil { // nested bucket
			return nil
		}
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("store: decode %s: %w", k, err)
		}
		if keep == nil || keep(&v) {
			out = append(out, v)
		}
		return nil
	})
	return out, err
}
