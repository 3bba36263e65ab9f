package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	ptftp "github.com/pin/tftp/v3"
)

// TFTP opcodes.
const (
	opRRQ   = 1
	opWRQ   = 2
	opERROR = 5
)

// filterConn sits between the listening socket and pin/tftp. pin/tftp
// answers every handler error with code 1 ("file not found"), so requests are
// vetted here and refused with the right code straight from the listening
// socket; only acceptable read requests reach pin/tftp, rewritten with the
// cleaned file name, a lower-case mode and only the options we honour
// (blksize clamped to the configured maximum, tsize for octet mode).
//
// ReadFrom is only ever called from pin/tftp's single accept goroutine, so
// buf needs no locking.
type filterConn struct {
	net.PacketConn
	s          *Server
	singlePort bool
	buf        []byte

	// Single-port mode only. pin/tftp v3.2.0 routes a packet to its transfer
	// by looking the transfer's channel up under its lock, releasing the
	// lock and then sending, while a transfer that ends closes that channel:
	// a packet from a peer whose transfer ends in that window panics the
	// process ("send on closed channel"). A transfer tells its Hook that it
	// ended just before closing the channel, so the accept goroutine holds
	// route from handing a packet over until it asks for the next one (by
	// then pin/tftp has routed it), and the hook takes route to mark the peer
	// ended: nothing from that peer reaches pin/tftp until the channel is gone.
	route   sync.Mutex // also guards ended
	routing bool       // route is held by the accept goroutine
	ended   map[netip.AddrPort]time.Time
}

// endedHold bounds how long packets from a peer whose transfer ended are
// dropped when the server cannot tell that the channel is closed (a request
// refused by the handler: pin/tftp closes after the handler returns).
// Otherwise the handler clears the mark as soon as ReadFrom returns, so a
// client that reuses its port for the next file is not held up.
const endedHold = 250 * time.Millisecond

func (c *filterConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.routing {
		c.routing = false
		c.route.Unlock()
	}
	for {
		n, addr, err := c.PacketConn.ReadFrom(c.buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				c.s.connFailed(err)
			}
			return 0, addr, err
		}
		peer, ok := addr.(*net.UDPAddr)
		if !ok || peer.Port == 0 {
			continue
		}
		if !c.singlePort {
			if m := c.s.filterPacket(c.buf[:n], p, peer, false); m > 0 {
				return m, peer, nil
			}
			continue
		}
		// Checked under route, so a transfer cannot end between the check
		// and pin/tftp routing the packet.
		c.route.Lock()
		if !c.recentlyEnded(addrPort(peer)) {
			if m := c.s.filterPacket(c.buf[:n], p, peer, true); m > 0 {
				c.routing = true
				return m, peer, nil
			}
		}
		c.route.Unlock()
	}
}

// recentlyEnded reports whether peer's transfer ended less than endedHold
// ago. Caller holds route.
func (c *filterConn) recentlyEnded(peer netip.AddrPort) bool {
	at, ok := c.ended[peer]
	if ok && time.Since(at) >= endedHold {
		delete(c.ended, peer)
		return false
	}
	return ok
}

// transferEnded is the pin/tftp hook: called from a transfer's goroutine just
// before pin/tftp closes its channel (and from the accept goroutine, with no
// peer, for packets it could not use).
func (c *filterConn) transferEnded(st ptftp.TransferStats) {
	ip, ok := netip.AddrFromSlice(st.RemoteAddr)
	if !ok || st.Tid == 0 {
		return
	}
	peer := netip.AddrPortFrom(ip.Unmap(), uint16(st.Tid))
	c.route.Lock() // the accept goroutine is not between lookup and send
	defer c.route.Unlock()
	now := time.Now()
	if len(c.ended) > 1024 {
		for p, at := range c.ended {
			if now.Sub(at) >= endedHold {
				delete(c.ended, p)
			}
		}
	}
	c.ended[peer] = now
}

// transferClosed lifts the mark of a peer whose transfer's channel is closed.
func (c *filterConn) transferClosed(peer netip.AddrPort) {
	if !c.singlePort {
		return
	}
	c.route.Lock()
	delete(c.ended, peer)
	c.route.Unlock()
}

// endHook adapts filterConn.transferEnded to ptftp.Hook.
type endHook struct{ c *filterConn }

func (h endHook) OnSuccess(st ptftp.TransferStats)          { h.c.transferEnded(st) }
func (h endHook) OnFailure(st ptftp.TransferStats, _ error) { h.c.transferEnded(st) }

// filterPacket returns the length of the packet to hand to pin/tftp (written
// to out), or 0 if the packet was dropped or refused.
func (s *Server) filterPacket(pkt, out []byte, peer *net.UDPAddr, passOther bool) int {
	if len(pkt) < 2 {
		return 0
	}
	switch binary.BigEndian.Uint16(pkt) {
	case opRRQ:
	case opWRQ:
		name, _, _ := strings.Cut(string(pkt[2:]), "\x00")
		s.refuse(peer, name, accessViolation("server is read-only"))
		return 0
	default:
		// In single-port mode ACKs and ERRORs for running transfers arrive
		// here and pin/tftp routes them; otherwise they are strays.
		if passOther && len(pkt) <= len(out) {
			return copy(out, pkt)
		}
		return 0
	}

	req, rerr := parseRequest(pkt)
	if rerr != nil {
		s.refuse(peer, req.name, rerr)
		return 0
	}
	clean, err := CleanRequestPath(req.name)
	if err != nil {
		var terr *Error
		if !errors.As(err, &terr) {
			terr = &Error{Code: CodeAccessViolation, Msg: err.Error()}
		}
		s.refuse(peer, req.name, terr)
		return 0
	}
	if !s.allow.allowed(clean) {
		s.refuse(peer, clean, accessViolation("file not on the allow-list"))
		return 0
	}
	if s.maxXfers > 0 && s.active.Load() >= s.maxXfers {
		s.refuse(peer, clean, &Error{Code: CodeNotDefined, Msg: "server busy, try again"})
		return 0
	}
	if _, err := s.files.stat(clean); err != nil {
		s.log.Debug("tftp stat failed", "file", clean, "err", err)
		s.refuse(peer, clean, openError(err))
		return 0
	}

	var blksize, tsize string
	for _, o := range req.opts {
		switch o[0] {
		case "blksize":
			v, err := strconv.Atoi(o[1])
			if err != nil || v < 512 {
				blksize = "" // use the 512 default
				continue
			}
			blksize = strconv.Itoa(min(v, s.maxBlock))
		case "tsize":
			// The size of a netascii transfer isn't the file size.
			if req.mode == "octet" {
				tsize = "0"
			}
		}
	}
	b := make([]byte, 0, len(out))
	b = append(b, 0, opRRQ)
	b = append(b, clean...)
	b = append(b, 0)
	b = append(b, req.mode...)
	b = append(b, 0)
	if blksize != "" {
		b = append(b, "blksize\x00"+blksize+"\x00"...)
	}
	if tsize != "" {
		b = append(b, "tsize\x000\x00"...)
	}
	if len(b) > len(out) {
		s.refuse(peer, clean, &Error{Code: CodeIllegalOperation, Msg: "request too long"})
		return 0
	}
	return copy(out, b)
}

type request struct {
	name string
	mode string
	opts [][2]string // lower-case name, value
}

// parseRequest parses an RRQ: opcode, name NUL, mode NUL, {option NUL value NUL}.
func parseRequest(pkt []byte) (request, *Error) {
	var r request
	fields := bytes.Split(pkt[2:], []byte{0})
	r.name = string(fields[0])
	if len(fields) < 3 {
		return r, &Error{Code: CodeIllegalOperation, Msg: "malformed request"}
	}
	r.mode = strings.ToLower(string(fields[1]))
	if r.mode != "octet" && r.mode != "netascii" {
		return r, &Error{Code: CodeIllegalOperation, Msg: "unsupported transfer mode"}
	}
	for i := 2; i+1 < len(fields); i += 2 {
		r.opts = append(r.opts, [2]string{strings.ToLower(string(fields[i])), string(fields[i+1])})
	}
	return r, nil
}
