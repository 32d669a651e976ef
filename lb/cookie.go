package lb

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
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

// pin is what a sticky cookie says: which backend, until when, and a random
// user id (to count distinct pinned users, never to route).
type pin struct {
	backend string
	expires time.Time
	user    uint64
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
	secrets [][]byte // the first signs; all verify (rotation)
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
	return &Signer{name: name, secrets: cp}, nil
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

func (s *Signer) mac(key []byte, body string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(s.name))
	h.Write([]byte{0})
	h.Write([]byte(body))
	return h.Sum(nil)
}

// Sign returns the cookie value pinning user to backend until expires.
func (s *Signer) Sign(p pin) string {
	var sb strings.Builder
	sb.Grow(len(p.backend) + 80)
	sb.WriteString(cookieVersion)
	sb.WriteByte('.')
	sb.WriteString(p.backend)
	sb.WriteByte('.')
	sb.WriteString(strconv.FormatInt(p.expires.Unix(), 36))
	sb.WriteByte('.')
	sb.WriteString(strconv.FormatUint(p.user, 36))
	body := sb.String()
	m := s.mac(s.secrets[0], body)
	return body + "." + base64.RawURLEncoding.EncodeToString(m)
}

// Verify parses and checks a cookie value. It reports ok=false for anything
// forged, expired (at now), truncated or malformed; it never panics and
// never treats a bad value as an error worth more than a re-pick.
func (s *Signer) Verify(value []byte, now time.Time) (p pin, ok bool) {
	if len(value) == 0 || len(value) > maxCookieValue {
		return pin{}, false
	}
	v := string(value)
	dot := strings.LastIndexByte(v, '.')
	if dot < 0 {
		return pin{}, false
	}
	body, sig := v[:dot], v[dot+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return pin{}, false
	}
	// Every secret is tried, with a constant-time comparison each, so
	// timing tells neither which secret matched nor how much of a MAC did.
	match := false
	for _, key := range s.secrets {
		if hmac.Equal(s.mac(key, body), got) {
			match = true
		}
	}
	if !match {
		return pin{}, false
	}
	// body = 1.<name>.<exp>.<user>; the name may itself hold dots.
	if !strings.HasPrefix(body, cookieVersion+".") {
		return pin{}, false
	}
	body = body[len(cookieVersion)+1:]
	i := strings.LastIndexByte(body, '.')
	if i < 0 {
		return pin{}, false
	}
	user, err := strconv.ParseUint(body[i+1:], 36, 64)
	if err != nil {
		return pin{}, false
	}
	body = body[:i]
	j := strings.LastIndexByte(body, '.')
	if j <= 0 {
		return pin{}, false
	}
	exp, err := strconv.ParseInt(body[j+1:], 36, 64)
	if err != nil {
		return pin{}, false
	}
	p = pin{backend: body[:j], expires: time.Unix(exp, 0), user: user}
	if !now.Before(p.expires) {
		return pin{}, false
	}
	return p, true
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
