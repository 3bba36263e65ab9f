package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"strings"
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
}

func (c *filterConn) ReadFrom(p []byte) (int, net.Addr, error) {
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
		if m := c.s.filterPacket(c.buf[:n], p, peer, c.singlePort); m > 0 {
			return m, peer, nil
		}
	}
}

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
