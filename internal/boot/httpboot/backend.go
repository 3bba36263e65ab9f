package httpboot

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"regexp"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
)

// ErrInvalidToken is returned (possibly wrapped) by Backend.MachineByToken
// for a token that is unknown, expired or already used, and by
// Backend.MarkProvisioned for a machine that is already provisioned. The
// handler answers 403 to all of them alike.
var ErrInvalidToken = errors.New("httpboot: invalid token")

// Backend is implemented by the engine. Calls arrive concurrently, one per
// HTTP request; keep them fast.
type Backend interface {
	// MachineByToken returns the machine a provisioning token belongs to, or
	// an error matching ErrInvalidToken when the token is unknown, expired
	// or used. Any other error is a transient failure (answered 503).
	// Look tokens up by TokenHash, or compare with TokensEqual; never with
	// ==, which leaks through timing how much of a guess was right.
	MachineByToken(ctx context.Context, token string) (*Machine, error)
	// Record appends an event to the machine's timeline. It must not block
	// for long and cannot fail the request.
	Record(ctx context.Context, machineID string, e Event)
	// MarkProvisioned records that the machine finished installing and
	// revokes its token: from then on MachineByToken must return
	// ErrInvalidToken for it (the handler also refuses a Machine with
	// Provisioned set). It must be atomic: of two concurrent calls for the
	// same machine, the second returns ErrInvalidToken.
	MarkProvisioned(ctx context.Context, machineID string) error
}

// Action is what a machine's script does.
type Action int

// Actions.
const (
	// ActionInstall boots the installer of Vars.Kind (render.IPXEScript).
	ActionInstall Action = iota
	// ActionWipe boots the kernel and initrd with metal.action=wipe
	// (render.WipeScript); "provisioned" then means "wiped".
	ActionWipe
)

// Machine is one provisioning of one machine, as the backend knows it.
type Machine struct {
	// ID is the machine's identifier, passed back to Record and
	// MarkProvisioned.
	ID string
	// Action selects the install or the wipe script.
	Action Action
	// Vars is the rendering input. The handler sets Vars.Token to the
	// request's token, and Vars.BaseURL to Config.BaseURL (or the request's
	// Host) when empty. The artifacts served at /kernel, /initrd and /image
	// are Vars.Image's sums, read from Config.Artifacts.
	Vars render.MachineVars
	// Provisioned makes every token route refuse the machine (403).
	Provisioned bool
	// AllowedSources, when not empty, binds the token to client addresses:
	// a request from outside these prefixes (e.g. other than the address the
	// DHCP layer leased to the machine) gets the same 403 as a bad token.
	AllowedSources []netip.Prefix
}

// Stages recorded by the handler itself (Event.Reported false). Stages the
// machine reports (Reported true) are whatever it sent, e.g. "booting".
const (
	StageScript      = "script"
	StageKernel      = "kernel"
	StageInitrd      = "initrd"
	StageImage       = "image"
	StageConfig      = "config/" // + config name, e.g. "config/user-data"
	StageProvisioned = "provisioned"
)

// Event is one entry of a machine's timeline.
type Event struct {
	Time time.Time
	// Stage is a Stage* constant for server-observed fetches, or the stage
	// the machine reported.
	Stage string
	// Message is the machine's message (reported events only).
	Message string
	// Bytes is the number of body bytes sent (fetches) or received
	// (reports). A HEAD or a 304 sends 0; a Range request its part.
	Bytes int64
	// Status is the HTTP status answered.
	Status int
	// Remote is the client's address (IP:port) as seen by the server.
	Remote string
	// Reported is true when the machine reported the event (progress,
	// events, provisioned), false when the server observed a fetch.
	Reported bool
}

// Artifacts opens content-addressed artifacts; *artifact.Cache implements
// it. Open gets a validated lower-case sha256 and returns an error matching
// fs.ErrNotExist when the artifact is absent.
type Artifacts interface {
	Open(sha256 string) (*os.File, error)
}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)

// ValidTokenSyntax reports whether s can be a token (16-128 characters of
// [A-Za-z0-9_-]). Anything else is refused without asking the backend.
func ValidTokenSyntax(s string) bool { return tokenRE.MatchString(s) }

// NewToken returns a fresh provisioning token: 256 random bits, base64url.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// TokenHash is the sha256 of a token: a map key that lets a backend find a
// token without comparing secret bytes with an early exit.
func TokenHash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// TokensEqual compares two tokens in constant time (independent of where
// they differ and of their lengths).
func TokensEqual(a, b string) bool {
	ha, hb := TokenHash(a), TokenHash(b)
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// TokenFingerprint is what logs show instead of a token: the first 6 hex
// digits of its sha256.
func TokenFingerprint(token string) string {
	h := TokenHash(token)
	return hex.EncodeToString(h[:3])
}
