// Package proxyproto reads and writes the PROXY protocol header (versions
// 1 and 2, https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt)
// that an L4 balancer (AWS NLB, HAProxy send-proxy, another unstuck) puts
// in front of a TCP connection to say whose it is.
//
// Read takes exactly the header's bytes from the connection and nothing
// after them, so the connection can go on as it is (to TLS, to the HTTP
// engine), without a wrapper that would hide the *net.TCPConn. It is
// strict: anything that is not a well-formed header is an error, and the
// caller closes the connection.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// Header is what a PROXY header says about its connection.
type Header struct {
	// Version is 1 (text) or 2 (binary).
	Version int
	// Local is true for a connection the sender made on its own behalf
	// (v2 LOCAL, v1 UNKNOWN, or an address family other than TCP over
	// IPv4/IPv6): health checks. Source and Destination are then unset,
	// and the socket's own addresses stand.
	Local bool
	// Source is the client's address, Destination the address it
	// connected to.
	Source, Destination netip.AddrPort
}

// Limits on what Read accepts.
const (
	// MaxV1 is the longest v1 header the specification allows, CRLF
	// included.
	MaxV1 = 107
	// MaxV2 bounds a v2 header with its TLVs (the format allows 64 KiB;
	// senders add a few dozen bytes of TLVs at most).
	MaxV2 = 16 + 2048
)

var (
	// ErrNotProxy means the connection does not start with a PROXY header.
	ErrNotProxy = errors.New("proxyproto: no PROXY header")
	// ErrIncomplete means b holds only the start of a header (Parse).
	ErrIncomplete = errors.New("proxyproto: incomplete header")
)

// sigV2 opens every v2 header.
var sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")

// Read reads one PROXY header from r, v1 or v2, consuming exactly its
// bytes. v2 takes two reads; v1 is read a byte at a time after its first
// eight, since nothing else marks where it ends. The caller bounds the
// wait with a deadline.
func Read(r io.Reader) (Header, error) {
	var buf [MaxV2]byte
	if _, err := io.ReadFull(r, buf[:8]); err != nil {
		return Header{}, readErr(err)
	}
	switch {
	case bytes.HasPrefix(buf[:8], []byte("PROXY ")):
		n := 8
		for n < MaxV1 && !(buf[n-2] == '\r' && buf[n-1] == '\n') {
			if _, err := io.ReadFull(r, buf[n:n+1]); err != nil {
				return Header{}, readErr(err)
			}
			n++
		}
		h, _, err := parseV1(buf[:n])
		return h, err
	case bytes.Equal(buf[:8], sigV2[:8]):
		if _, err := io.ReadFull(r, buf[8:16]); err != nil {
			return Header{}, readErr(err)
		}
		n, err := v2Len(buf[:16])
		if err != nil {
			return Header{}, err
		}
		if _, err := io.ReadFull(r, buf[16:n]); err != nil {
			return Header{}, readErr(err)
		}
		h, _, err := parseV2(buf[:n])
		return h, err
	}
	return Header{}, ErrNotProxy
}

// readErr turns a short read into a clear error; timeouts pass as they are.
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("proxyproto: connection ended inside the header: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// Parse parses the header at the start of b and returns how many bytes
// it took; ErrIncomplete when b is a proper prefix of a header.
func Parse(b []byte) (Header, int, error) {
	switch {
	case len(b) >= 6 && string(b[:6]) == "PROXY ":
		return parseV1(b)
	case len(b) >= 12 && bytes.Equal(b[:12], sigV2):
		return parseV2(b)
	case len(b) < 12 && (bytes.HasPrefix(sigV2, b) || bytes.HasPrefix([]byte("PROXY "), b)):
		return Header{}, 0, ErrIncomplete
	}
	return Header{}, 0, ErrNotProxy
}

func v1Err(msg string) error { return errors.New("proxyproto: v1: " + msg) }

// parseV1 parses "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or
// "PROXY UNKNOWN ...\r\n".
func parseV1(b []byte) (Header, int, error) {
	end := bytes.Index(b[:min(len(b), MaxV1)], []byte("\r\n"))
	if end < 0 {
		if len(b) < MaxV1 && bytes.IndexByte(b, '\n') < 0 {
			return Header{}, 0, ErrIncomplete
		}
		return Header{}, 0, v1Err("no CRLF within 107 bytes")
	}
	line := string(b[6:end])
	n := end + 2
	f := bytes.Split([]byte(line), []byte{' '})
	if len(f) > 0 && string(f[0]) == "UNKNOWN" {
		return Header{Version: 1, Local: true}, n, nil
	}
	if len(f) != 5 {
		return Header{}, 0, v1Err("want PROXY TCP4|TCP6 SRC DST SPORT DPORT")
	}
	var want4 bool
	switch string(f[0]) {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return Header{}, 0, v1Err(fmt.Sprintf("unknown protocol %q", f[0]))
	}
	addr := func(s []byte) (netip.Addr, error) {
		a, err := netip.ParseAddr(string(s))
		if err != nil || a.Zone() != "" || a.Is4() != want4 {
			return netip.Addr{}, v1Err(fmt.Sprintf("%q is not an %s address", s, f[0]))
		}
		return a, nil
	}
	port := func(s []byte) (uint16, error) {
		if len(s) == 0 || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
			return 0, v1Err(fmt.Sprintf("bad port %q", s))
		}
		p, err := strconv.ParseUint(string(s), 10, 16)
		if err != nil {
			return 0, v1Err(fmt.Sprintf("bad port %q", s))
		}
		return uint16(p), nil
	}
	src, err := addr(f[1])
	if err != nil {
		return Header{}, 0, err
	}
	dst, err := addr(f[2])
	if err != nil {
		return Header{}, 0, err
	}
	sp, err := port(f[3])
	if err != nil {
		return Header{}, 0, err
	}
	dp, err := port(f[4])
	if err != nil {
		return Header{}, 0, err
	}
	return Header{Version: 1, Source: netip.AddrPortFrom(src, sp), Destination: netip.AddrPortFrom(dst, dp)}, n, nil
}

func v2Err(msg string) error { return errors.New("proxyproto: v2: " + msg) }

// v2Len checks a v2 header's first 16 bytes and returns its whole length.
func v2Len(b []byte) (int, error) {
	if !bytes.Equal(b[:12], sigV2) {
		return 0, ErrNotProxy
	}
	if b[12]>>4 != 2 {
		return 0, v2Err(fmt.Sprintf("version %d", b[12]>>4))
	}
	if cmd := b[12] & 0xf; cmd > 1 {
		return 0, v2Err(fmt.Sprintf("command %d", cmd))
	}
	n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if n > MaxV2 {
		return 0, v2Err(fmt.Sprintf("header of %d bytes is over the limit of %d", n, MaxV2))
	}
	return n, nil
}

// parseV2 parses a binary header; TLVs are skipped.
func parseV2(b []byte) (Header, int, error) {
	if len(b) < 16 {
		return Header{}, 0, ErrIncomplete
	}
	n, err := v2Len(b[:16])
	if err != nil {
		return Header{}, 0, err
	}
	if len(b) < n {
		return Header{}, 0, ErrIncomplete
	}
	body := b[16:n]
	h := Header{Version: 2}
	if b[12]&0xf == 0 { // LOCAL
		h.Local = true
		return h, n, nil
	}
	switch b[13] {
	case 0x11: // TCP over IPv4
		if len(body) < 12 {
			return Header{}, 0, v2Err("IPv4 addresses truncated")
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case 0x21: // TCP over IPv6
		if len(body) < 36 {
			return Header{}, 0, v2Err("IPv6 addresses truncated")
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	case 0x00, 0x31, 0x32: // unspecified, unix: nothing an IP client can use
		h.Local = true
	default:
		return Header{}, 0, v2Err(fmt.Sprintf("address family and transport 0x%02x is not TCP", b[13]))
	}
	return h, n, nil
}

// AppendV2Local appends a v2 LOCAL header: the sender's own connection
// (a health check), no addresses.
func AppendV2Local(b []byte) []byte {
	b = append(b, sigV2...)
	return append(b, 0x20, 0x00, 0, 0)
}

// AppendV2 appends a v2 PROXY header for a TCP connection from src to
// dst; mixed families are sent as IPv6 (IPv4-mapped).
func AppendV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, sigV2...)
	b = append(b, 0x21) // version 2, PROXY
	if src.Addr().Is4() && dst.Addr().Is4() {
		b = append(b, 0x11, 0, 12)
		s, d := src.Addr().As4(), dst.Addr().As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	} else {
		b = append(b, 0x21, 0, 36)
		s, d := src.Addr().As16(), dst.Addr().As16()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}
