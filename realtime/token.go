package realtime

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrUnauthenticated is returned by authenticators for a missing, forged or
// expired credential; the hub answers 401 without upgrading.
var ErrUnauthenticated = errors.New("realtime: unauthenticated")

// TokenAuth authenticates WebSocket handshakes with short-lived tokens the
// app mints for a logged-in user (for instance in the page that opens the
// socket), so instances need no shared session lookup and no stickiness.
//
// A token is base64url(user "|" expiry-unix) "." base64url(HMAC-SHA256),
// checked in constant time. Browsers cannot set headers on a WebSocket, so
// the token is read from the "token" query parameter (or Param), and also
// from an "Authorization: Bearer" header for other clients. Keep TTL short:
// URLs end up in access logs.
type TokenAuth struct {
	// Secret keys the HMAC; at least 32 random bytes.
	Secret []byte
	// Previous holds retired secrets still accepted, for key rotation.
	Previous [][]byte
	// Param is the query parameter holding the token; "token" if empty.
	Param string
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// Issue mints a token for userID valid for ttl.
func (a TokenAuth) Issue(userID string, ttl time.Duration) (string, error) {
	if len(a.Secret) < 32 {
		return "", errors.New("realtime: TokenAuth.Secret must be at least 32 bytes")
	}
	if userID == "" || strings.ContainsRune(userID, '|') {
		return "", errors.New("realtime: user ID must be non-empty and must not contain '|'")
	}
	payload := userID + "|" + strconv.FormatInt(a.now().Add(ttl).Unix(), 10)
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(sign(a.Secret, payload)), nil
}

// Authenticate is a Hub.Authenticate hook.
func (a TokenAuth) Authenticate(r *http.Request) (string, error) {
	param := a.Param
	if param == "" {
		param = "token"
	}
	tok := r.URL.Query().Get(param)
	if tok == "" {
		if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			tok = h
		}
	}
	if tok == "" {
		return "", fmt.Errorf("%w: no token", ErrUnauthenticated)
	}
	return a.Verify(tok)
}

// Verify checks a token and returns its user.
func (a TokenAuth) Verify(tok string) (string, error) {
	if len(tok) > 4096 {
		return "", fmt.Errorf("%w: token too long", ErrUnauthenticated)
	}
	p64, s64, ok := strings.Cut(tok, ".")
	if !ok {
		return "", fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p64)
	sig, err2 := enc.DecodeString(s64)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	valid := false
	for _, k := range append([][]byte{a.Secret}, a.Previous...) {
		if len(k) > 0 && hmac.Equal(sig, sign(k, string(payload))) {
			valid = true
		}
	}
	if !valid {
		return "", fmt.Errorf("%w: bad signature", ErrUnauthenticated)
	}
	user, exp, ok := strings.Cut(string(payload), "|")
	expUnix, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || user == "" {
		return "", fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	if a.now().Unix() >= expUnix {
		return "", fmt.Errorf("%w: token expired", ErrUnauthenticated)
	}
	return user, nil
}

func (a TokenAuth) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func sign(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("unstuck-realtime-v1\x00")) // domain separation from other HMACs sharing a key
	m.Write([]byte(payload))
	return m.Sum(nil)
}
