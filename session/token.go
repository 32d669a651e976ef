package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
)

// tokenBytes is the token's entropy: 256 bits, beyond guessing.
const tokenBytes = 32

// tokenLen is the length of a token in its base64url form.
var tokenLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

// newToken returns a fresh token from crypto/rand and its store id.
func newToken() (token, id string) {
	var b [tokenBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, idOf(b[:])
}

// parseToken checks a token from a cookie or header and returns its store
// id. Anything that is not exactly a token the Manager could have issued is
// rejected before it reaches the store.
func parseToken(s string) (id string, ok bool) {
	if len(s) != tokenLen {
		return "", false
	}
	var b [tokenBytes]byte
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(s))
	if err != nil || n != tokenBytes {
		return "", false
	}
	return idOf(b[:]), true
}

// parseCookie splits "token[.version]" as sent by the Manager when its
// store is a FreshLoader.
func parseCookie(s string) (id, token string, version uint64, ok bool) {
	token, ver, hasVer := strings.Cut(s, ".")
	if id, ok = parseToken(token); !ok {
		return "", "", 0, false
	}
	if hasVer {
		v, err := strconv.ParseUint(ver, 10, 64)
		if err != nil || ver != strconv.FormatUint(v, 10) {
			return "", "", 0, false
		}
		version = v
	}
	return id, token, version, true
}

// idOf is the store key of a token: its SHA-256 digest, so a dump of the
// store yields no token a client could present.
func idOf(token []byte) string {
	sum := sha256.Sum256(token)
	return hex.EncodeToString(sum[:])
}
