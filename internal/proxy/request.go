package proxy

import (
	"bytes"
	"net/netip"
)

// Request is a read-only view of a request head, valid only during the
// Route call (its byte slices point into a reused buffer: copy to keep).
type Request struct {
	// Attempt is 0 for the first try and 1 for the retry.
	Attempt int
	// Tried lists the upstreams of earlier attempts of this request.
	Tried []*Upstream
	// LastErr is the previous attempt's error, for a retry.
	LastErr error

	reqHead                // the parsed head; its spans index b
	b       []byte         // the head's bytes, in the connection's head buffer
	peer    netip.Addr     // the client connection's peer
	trusted bool           // the peer is in TrustedProxies
	isTLS   bool           // the client connection is TLS
	trust   []netip.Prefix // TrustedProxies
}

// Method returns the request method, e.g. "GET".
func (r *Request) Method() []byte { return r.method.of(r.b) }

// Path returns the request target as sent (origin form), e.g. "/a?b=c".
func (r *Request) Path() []byte { return r.target.of(r.b) }

// Header returns the first value of the named header (case-insensitive),
// or nil.
func (r *Request) Header(name string) []byte {
	for _, f := range r.fields {
		if equalFold(f.name.of(r.b), name) {
			return f.value.of(r.b)
		}
	}
	return nil
}

// Cookie returns the value of the named cookie from the Cookie header(s),
// or nil. It does not allocate.
func (r *Request) Cookie(name string) []byte {
	for _, f := range r.fields {
		if !equalFold(f.name.of(r.b), "cookie") {
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

// ClientIP is the client's address: the peer's, or the one a trusted proxy
// reported in X-Forwarded-For / Forwarded.
func (r *Request) ClientIP() netip.Addr {
	if !r.trusted {
		return r.peer
	}
	// Walk X-Forwarded-For from the right: the first address that is not a
	// trusted proxy is the client. Headers are joined in order.
	var last netip.Addr
	for i := len(r.fields) - 1; i >= 0; i-- {
		f := r.fields[i]
		if !equalFold(f.name.of(r.b), "x-forwarded-for") {
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

// Secure reports whether the client connection is TLS, or a trusted proxy
// said the original scheme was https.
func (r *Request) Secure() bool {
	if r.isTLS {
		return true
	}
	if !r.trusted {
		return false
	}
	if v := r.Header("X-Forwarded-Proto"); v != nil {
		return equalFold(v, "https")
	}
	if v := r.Header("Forwarded"); v != nil {
		// The last element is the one our trusted peer added.
		if i := bytes.LastIndexByte(v, ','); i >= 0 {
			v = v[i+1:]
		}
		for _, kv := range bytes.Split(v, []byte{';'}) {
			kv = bytes.TrimSpace(kv)
			if len(kv) > 6 && equalFold(kv[:6], "proto=") {
				return equalFold(bytes.Trim(kv[6:], `"`), "https")
			}
		}
	}
	return false
}

// IsWebSocket reports whether this is a WebSocket upgrade request.
func (r *Request) IsWebSocket() bool {
	return r.upgradeWS && r.connUpg && string(r.Method()) == "GET"
}
