package proxy

import (
	"bytes"
	"net/netip"
)

// requestImpl is the parsed request head behind Request. Its byte slices
// point into the connection's head buffer.
type requestImpl struct {
	reqHead
	b       []byte // the head's bytes
	peer    netip.Addr
	trusted bool // the peer is in TrustedProxies
	isTLS   bool
	trust   []netip.Prefix
}

func (r *requestImpl) method() []byte { return r.reqHead.method.of(r.b) }
func (r *requestImpl) path() []byte   { return r.target.of(r.b) }

func (r *requestImpl) header(name string) []byte {
	for _, f := range r.fields {
		if equalFoldString(f.name.of(r.b), name) {
			return f.value.of(r.b)
		}
	}
	return nil
}

// equalFoldString compares ASCII bytes with a string case-insensitively.
func equalFoldString(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func (r *requestImpl) cookie(name string) []byte {
	for _, f := range r.fields {
		if !asciiEqualFold(f.name.of(r.b), "cookie") {
			continue
		}
		if v := findCookie(f.value.of(r.b), name); v != nil {
			return v
		}
	}
	return nil
}

// findCookie finds name=value in a Cookie header value ("a=1; b=2").
func findCookie(v []byte, name string) []byte {
	for len(v) > 0 {
		var pair []byte
		if i := bytes.IndexByte(v, ';'); i >= 0 {
			pair, v = v[:i], v[i+1:]
		} else {
			pair, v = v, nil
		}
		pair = bytes.TrimLeft(pair, " \t")
		if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
			val := bytes.TrimRight(pair[len(name)+1:], " \t")
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			return val
		}
	}
	return nil
}

func (r *requestImpl) clientIP() netip.Addr {
	if !r.trusted {
		return r.peer
	}
	// Walk X-Forwarded-For from the right: the first address that is not a
	// trusted proxy is the client. Headers are joined in order.
	var last netip.Addr
	for i := len(r.fields) - 1; i >= 0; i-- {
		f := r.fields[i]
		if !asciiEqualFold(f.name.of(r.b), "x-forwarded-for") {
			continue
		}
		v := f.value.of(r.b)
		for len(v) > 0 {
			j := bytes.LastIndexByte(v, ',')
			item := bytes.Trim(v[j+1:], " \t")
			v = v[:max(j, 0)]
			a, err := netip.ParseAddr(string(item))
			if err != nil {
				return r.peer
			}
			a = a.Unmap()
			last = a
			if !inPrefixes(r.trust, a) {
				return a
			}
			if j < 0 {
				break
			}
		}
	}
	if last.IsValid() {
		return last
	}
	return r.peer
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (r *requestImpl) secure() bool {
	if r.isTLS {
		return true
	}
	if !r.trusted {
		return false
	}
	if v := r.header("X-Forwarded-Proto"); v != nil {
		return asciiEqualFold(v, "https")
	}
	if v := r.header("Forwarded"); v != nil {
		// The last element is the one our trusted peer added.
		if i := bytes.LastIndexByte(v, ','); i >= 0 {
			v = v[i+1:]
		}
		for _, kv := range bytes.Split(v, []byte{';'}) {
			kv = bytes.TrimSpace(kv)
			if len(kv) > 6 && asciiEqualFold(kv[:6], "proto=") {
				return asciiEqualFold(bytes.Trim(kv[6:], `"`), "https")
			}
		}
	}
	return false
}

func (r *requestImpl) isWebSocket() bool {
	return r.upgradeWS && r.connUpg && string(r.method()) == "GET"
}
