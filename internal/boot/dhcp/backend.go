package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// ErrUnknownMachine is returned (possibly wrapped) by Backend.Lookup when no
// machine is registered for the MAC. Any other Lookup error is treated as a
// transient backend failure: the request is not answered and the error is
// logged.
var ErrUnknownMachine = errors.New("unknown machine")

// Backend is implemented by the engine. Calls arrive concurrently from the
// server's workers and must be safe for concurrent use; keep them fast (an
// in-memory map), they sit on the packet path.
type Backend interface {
	// Lookup returns the machine registered for req.MAC, or an error
	// matching ErrUnknownMachine.
	Lookup(ctx context.Context, req LookupRequest) (*Machine, error)
	// RecordDiscovery is called for unregistered clients when
	// Config.Unknown is UnknownDiscover. Nothing is answered to them.
	RecordDiscovery(ctx context.Context, d Discovery) error
	// ReservedBy reports the MAC that holds a static reservation for ip, or
	// nil when ip is not reserved. The range allocator never hands an
	// address reserved by one machine to another. It is called with the
	// allocator's lock held, once per candidate address: answer from memory
	// and never call back into the Handler.
	ReservedBy(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error)
}

// Machine is what the backend knows about a registered machine.
type Machine struct {
	MAC net.HardwareAddr
	// IP is the static reservation. The zero Addr means "allocate from the
	// range of the subnet the machine is on".
	IP netip.Addr
	// Hostname is sent as option 12 when not empty.
	Hostname string
	// ScriptURL is the machine's iPXE script URL. It carries a secret token:
	// it is sent to the machine and never logged.
	ScriptURL string
	// Netboot false means "address only": no boot file, no boot options.
	Netboot bool
}

// ClientFacts are the facts a request carries about the client, passed to the
// backend with every lookup, discovery and event.
type ClientFacts struct {
	MAC net.HardwareAddr
	// Client is how the client was classified (OS, PXE, HTTP boot, iPXE).
	Client ClientKind
	// Arch is the first architecture of option 93 (or the one encoded in a
	// "PXEClient:Arch:NNNNN" vendor class); valid only when HasArch.
	Arch    iana.Arch
	HasArch bool
	// VendorClass is option 60, UserClass option 77 (entries joined by ",").
	VendorClass string
	UserClass   string
	// Hostname is the client-supplied option 12, if any.
	Hostname string
	// RelayAddr is giaddr; the zero Addr when the request was not relayed.
	RelayAddr netip.Addr
	// CircuitID and RemoteID are option 82 sub-options 1 and 2, raw bytes
	// as sent by the relay (often but not always printable).
	CircuitID string
	RemoteID  string
	// Interface is the name of the interface the request arrived on, when
	// known.
	Interface string
}

// LookupRequest is passed to Backend.Lookup.
type LookupRequest struct {
	ClientFacts
	// MessageType is the DHCP message type of the request.
	MessageType dhcpv4.MessageType
}

// Discovery describes an unregistered client (Config.Unknown ==
// UnknownDiscover).
type Discovery struct {
	ClientFacts
	Seen time.Time
}

// Observer receives an Event for every decision about a client. It is called
// synchronously on the worker goroutine: it must not block.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f.
func (f ObserverFunc) Observe(ctx context.Context, e Event) { f(ctx, e) }

// EventType names what happened to a client.
type EventType string

// Event types.
const (
	EventOffer      EventType = "offer"      // DHCPOFFER sent (Proxy: proxyDHCP offer)
	EventAck        EventType = "ack"        // DHCPACK sent (lease bound, INFORM, or port 4011 answer)
	EventNak        EventType = "nak"        // DHCPNAK sent; Reason says why
	EventRelease    EventType = "release"    // client released IP
	EventDecline    EventType = "decline"    // client declined IP (address conflict on the wire)
	EventDiscovered EventType = "discovered" // unknown client recorded via Backend.RecordDiscovery
	EventIgnored    EventType = "ignored"    // nothing answered; Reason says why
)

// Reason explains an ignored request or a NAK.
type Reason string

// Reasons.
const (
	ReasonUnknownMachine      Reason = "unknown machine"
	ReasonNotNetbootClient    Reason = "not a netboot client"
	ReasonNetbootDisabled     Reason = "netboot disabled for machine"
	ReasonNoBootFile          Reason = "no boot file for client"
	ReasonNoSubnet            Reason = "no subnet for client"
	ReasonWrongSubnet         Reason = "reservation not on client's subnet"
	ReasonRangeExhausted      Reason = "address range exhausted"
	ReasonReservationConflict Reason = "reserved address leased to another client"
	ReasonOtherServer         Reason = "client selected another server"
	ReasonAddressUnavailable  Reason = "requested address not available"
	ReasonWrongNetwork        Reason = "requested address not on client's network"
	ReasonBackendError        Reason = "backend error"
)

// Event is one entry of a machine's DHCP timeline.
type Event struct {
	Type EventType
	Time time.Time
	XID  dhcpv4.TransactionID
	ClientFacts
	// MessageType is the type of the request that caused the event.
	MessageType dhcpv4.MessageType
	// IP is the address offered, acknowledged, released or declined.
	IP netip.Addr
	// Subnet is the name of the subnet the client was placed on.
	Subnet string
	// BootFile is what the client was told to boot, safe to display: the
	// TFTP file name, the HTTP boot URL, or "script" for the (secret) iPXE
	// script URL. Empty for address-only answers.
	BootFile string
	// Proxy is true for proxyDHCP offers and port 4011 answers.
	Proxy bool
	// Reason is set for EventIgnored and EventNak, and for an address-only
	// answer to a netboot client (ReasonNoBootFile).
	Reason Reason
}
