package lb

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultCookieName is the sticky cookie's name when none is configured.
const DefaultCookieName = "unstuck_affinity"

// maxCookieValue bounds the work spent on a cookie value: a genuine one is
// well under 200 bytes, so anything longer is garbage and is not parsed.
const maxCookieValue = 256

// cookieVersion prefixes every value so the format can change without old
// values being misread.
const cookieVersion = "1"

// Pin is what a sticky cookie says: which backend serves the user, until
// when the value is honoured, and a random user id (to count distinct
// pinned users, never to route).
type Pin struct {
	Backend string    // the backend's name, as BackendConfig.Name
	Expires time.Time // kept to the second
	User    uint64
}

// Signer issues and verifies sticky cookie values. The value is
//
//	1.<backend name>.<expiry, unix seconds base 36>.<user id, base 36>.<HMAC-SHA256, base64url>
//
// The MAC covers the cookie name and every field, so a value cannot be
// moved to another cookie or edited. Only the backend's name is in it, never
// its address (traefik#2299), and the embedded expiry bounds a stolen or
// stale value even when the browser keeps a session cookie (envoy#26347).
// A Signer holds no per-user state, so every balancer with the same secrets
// reads every value the same way.
type Signer struct {
	name    string
	prefix  []byte      // cookie name and a 0 byte: MACed first
	secrets [][]byte    // the first signs; all verify (rotation)
	pools   []sync.Pool // reusable HMAC states, one pool per secret
	cache   *verifyCache
}

// NewSigner returns a Signer for the cookie named name. secrets must not be
// empty; secrets[0] signs new values and every secret verifies.
func NewSigner(name string, secrets [][]byte) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("lb: sticky cookie needs at least one secret")
	}
	for i, s := range secrets {
		if len(s) < MinSecretLen {
			return nil, errors.New("lb: sticky secret " + strconv.Itoa(i+1) + " is shorter than " + strconv.Itoa(MinSecretLen) + " bytes")
		}
	}
	if name == "" {
		name = DefaultCookieName
	}
	cp := make([][]byte, len(secrets))
	for i, s := range secrets {
		cp[i] = append([]byte(nil), s...)
	}
	return &Signer{name: name, prefix: append([]byte(name), 0), secrets: cp, pools: make([]sync.Pool, len(cp)), cache: newVerifyCache()}, nil
}

// MinSecretLen is the shortest sticky secret accepted: shorter ones are
// guessable offline from one cookie.
const MinSecretLen = 16

// GenerateSecret returns 32 random bytes from crypto/rand, base64url
// encoded, for when no secret is configured.
func GenerateSecret() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("lb: crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// mac appends HMAC-SHA256(secrets[i], name 0 body) to out. HMAC states are
// pooled: building one costs two SHA-256 blocks and three allocations.
func (s *Signer) mac(i int, body []byte, out []byte) []byte {
	h, _ := s.pools[i].Get().(hash.Hash)
	if h == nil {
		h = hmac.New(sha256.New, s.secrets[i])
	} else {
		h.Reset()
	}
	h.Write(s.prefix)
	h.Write(body)
	out = h.Sum(out)
	s.pools[i].Put(h)
	return out
}

// Sign returns the cookie value for p, signed with the first secret.
func (s *Signer) Sign(p Pin) string {
	b := make([]byte, 0, len(p.Backend)+96)
	b = append(b, cookieVersion...)
	b = append(b, '.')
	b = append(b, p.Backend...)
	b = append(b, '.')
	b = strconv.AppendInt(b, p.Expires.Unix(), 36)
	b = append(b, '.')
	b = strconv.AppendUint(b, p.User, 36)
	var m [sha256.Size]byte
	s.mac(0, b, m[:0])
	b = append(b, '.')
	b = base64.RawURLEncoding.AppendEncode(b, m[:])
	return string(b)
}

// Verify parses and checks a cookie value. It reports ok=false for anything
// forged, expired (at now), truncated or malformed; it never panics and
// never treats a bad value as an error worth more than a re-pick. A value
// verified before is answered from a small cache (cookie_cache.go) without
// the HMAC; its expiry is still checked at now.
func (s *Signer) Verify(value []byte, now time.Time) (p Pin, ok bool) {
	if len(value) == 0 || len(value) > maxCookieValue {
		return Pin{}, false
	}
	if p, ok := s.cache.get(value, now); ok {
		return p, true
	}
	p, ok = s.verify(value, now)
	if ok {
		s.cache.put(value, p)
	}
	return p, ok
}

// verify is Verify without the cache: the full check.
func (s *Signer) verify(value []byte, now time.Time) (p Pin, ok bool) {
	dot := bytes.LastIndexByte(value, '.')
	if dot < 0 {
		return Pin{}, false
	}
	body, sig := value[:dot], value[dot+1:]
	var got [sha256.Size]byte
	if base64.RawURLEncoding.DecodedLen(len(sig)) != sha256.Size {
		return Pin{}, false
	}
	if n, err := base64.RawURLEncoding.Decode(got[:], sig); err != nil || n != sha256.Size {
		return Pin{}, false
	}
	// Every secret is tried, with a constant-time comparison each, so
	// timing tells neither which secret matched nor how much of a MAC did.
	match := 0
	for i := range s.secrets {
		var m [sha256.Size]byte
		match |= subtle.ConstantTimeCompare(s.mac(i, body, m[:0]), got[:])
	}
	if match != 1 {
		return Pin{}, false
	}
	// body = 1.<name>.<exp>.<user>; the name may itself hold dots.
	if len(body) < 2 || string(body[:2]) != cookieVersion+"." {
		return Pin{}, false
	}
	body = body[2:]
	i := bytes.LastIndexByte(body, '.')
	if i < 0 {
		return Pin{}, false
	}
	user, uok := parseBase36(body[i+1:])
	body = body[:i]
	j := bytes.LastIndexByte(body, '.')
	if !uok || j <= 0 {
		return Pin{}, false
	}
	exp, eok := parseBase36(body[j+1:])
	if !eok || exp > 1<<40 {
		return Pin{}, false
	}
	p = Pin{Backend: string(body[:j]), Expires: time.Unix(int64(exp), 0), User: user}
	if !now.Before(p.Expires) {
		return Pin{}, false
	}
	return p, true
}

// parseBase36 parses what strconv.FormatUint(x, 36) writes, without
// allocating.
func parseBase36(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 13 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	var x uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'z':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		if x > (1<<64-1-uint64(d))/36 {
			return 0, false
		}
		x = x*36 + uint64(d)
	}
	return x, true
}

// newUserID returns a random id that tells pinned users apart in counts.
func newUserID() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("lb: crypto/rand failed: " + err.Error())
	}
	return binary.LittleEndian.Uint64(b[:]) | 1
}

// cookieAttrs builds the full Set-Cookie header value.
func cookieHeader(name, value string, maxAge time.Duration, secure bool) string {
	var sb strings.Builder
	sb.Grow(len(name) + len(value) + 64)
	sb.WriteString(name)
	sb.WriteByte('=')
	sb.WriteString(value)
	sb.WriteString("; Path=/")
	if maxAge > 0 {
		sb.WriteString("; Max-Age=")
		sb.WriteString(strconv.FormatInt(int64(maxAge/time.Second), 10))
	}
	sb.WriteString("; HttpOnly; SameSite=Lax")
	if secure {
		sb.WriteString("; Secure")
	}
	return sb.String()
}
