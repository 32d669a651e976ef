package cookiestore

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/unstuck-dev/unstuck/session"
)

// The sealed value, before base64url (no padding):
//
//	[0]     format, 1
//	[1:5]   key id: the first 4 bytes of SHA-256("unstuck cookiestore key id\x00" || key)
//	[5:29]  nonce, 24 random bytes (XChaCha20-Poly1305: random nonces never repeat in practice)
//	[29:]   ciphertext of the body, then the 16-byte tag; [0:5] is authenticated too
//
// The body:
//
//	id          16 bytes: 6 bytes of issue time (Unix ms, big-endian), 10 random
//	created     uvarint, Unix ms
//	idle        varint, ms after created
//	deadline    varint, ms after created
//	version     uvarint
//	user        uvarint length, bytes
//	values      uvarint count, then per value: uvarint length, key, uvarint length, value
//
// A value split over several cookies starts with "N." in the first one (N,
// from 2, is how many), which base64url cannot contain.
const (
	format    = 1
	keyIDLen  = 4
	headerLen = 1 + keyIDLen
	nonceLen  = chacha20poly1305.NonceSizeX
	tagLen    = chacha20poly1305.Overhead
	idLen     = 16
	// MinKeySize is the least key material Options.Keys accept.
	MinKeySize = 32
)

// sealer seals with the first key and opens with any.
type sealer struct {
	keys []sealKey
}

type sealKey struct {
	id   [keyIDLen]byte
	aead cipher.AEAD
}

// newSealer derives one AEAD key per key given: SHA-256 of a label and the
// key, so key material shared with another use (a sticky-cookie secret)
// never becomes the same key here.
func newSealer(keys [][]byte) (*sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("cookiestore: Options.Keys is empty: give at least one key of 32 or more random bytes (the first seals, all open)")
	}
	s := &sealer{}
	for i, k := range keys {
		if len(k) < MinKeySize {
			return nil, fmt.Errorf("cookiestore: Options.Keys[%d] is %d bytes; want at least %d random bytes", i, len(k), MinKeySize)
		}
		derived := sha256.Sum256(append([]byte("unstuck cookiestore key\x00"), k...))
		aead, err := chacha20poly1305.NewX(derived[:])
		if err != nil {
			return nil, err
		}
		idSum := sha256.Sum256(append([]byte("unstuck cookiestore key id\x00"), k...))
		sk := sealKey{aead: aead}
		copy(sk.id[:], idSum[:keyIDLen])
		s.keys = append(s.keys, sk)
	}
	return s, nil
}

// ParseKeys reads keys as configuration carries them: separated by commas,
// spaces or newlines, each in hex or base64 (standard or URL alphabet,
// padded or not), the sealing key first. Every key must decode to at least
// 32 bytes.
func ParseKeys(s string) ([][]byte, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
	if len(fields) == 0 {
		return nil, errors.New("cookiestore: no keys given")
	}
	var keys [][]byte
	for i, f := range fields {
		k, err := decodeKey(f)
		if err != nil {
			return nil, fmt.Errorf("cookiestore: key %d: %w", i+1, err)
		}
		if len(k) < MinKeySize {
			return nil, fmt.Errorf("cookiestore: key %d is %d bytes; want at least %d (for example 64 hex digits from `openssl rand -hex 32`)", i+1, len(k), MinKeySize)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func decodeKey(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("neither hex nor base64")
}

// newID returns an id whose first 6 bytes are its issue time, so RevokeUser
// can tell sessions issued before a moment from those issued after.
func newID(now time.Time) string {
	var b [idLen]byte
	ms := uint64(now.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// parseID returns the raw id and its issue time (Unix ms).
func parseID(id string) (raw [idLen]byte, issued int64, ok bool) {
	if len(id) != 2*idLen {
		return raw, 0, false
	}
	if _, err := hex.Decode(raw[:], []byte(id)); err != nil || hex.EncodeToString(raw[:]) != id {
		return raw, 0, false
	}
	return raw, issuedAt(raw), true
}

func issuedAt(raw [idLen]byte) int64 {
	var ms int64
	for i := range 6 {
		ms = ms<<8 | int64(raw[i])
	}
	return ms
}

// seal encodes and encrypts one session: the base64url value.
func (s *sealer) seal(raw [idLen]byte, r *session.Record) string {
	body := encodeBody(raw, r)
	k := &s.keys[0]
	out := make([]byte, headerLen+nonceLen, headerLen+nonceLen+len(body)+tagLen)
	out[0] = format
	copy(out[1:headerLen], k.id[:])
	_, _ = rand.Read(out[headerLen:])
	out = k.aead.Seal(out, out[headerLen:headerLen+nonceLen], body, out[:headerLen])
	return base64.RawURLEncoding.EncodeToString(out)
}

// encodeBody is the plaintext of a sealed session.
func encodeBody(raw [idLen]byte, r *session.Record) []byte {
	body := make([]byte, 0, 64+len(r.UserID)+valuesLen(r))
	body = append(body, raw[:]...)
	created := r.Created.UnixMilli()
	body = binary.AppendUvarint(body, uint64(max(created, 0)))
	body = binary.AppendVarint(body, msAfter(r.IdleDeadline, created))
	body = binary.AppendVarint(body, msAfter(r.Deadline, created))
	body = binary.AppendUvarint(body, r.Version)
	body = appendBytes(body, []byte(r.UserID))
	body = binary.AppendUvarint(body, uint64(len(r.Values)))
	for k, v := range r.Values {
		body = appendBytes(body, []byte(k))
		body = appendBytes(body, v)
	}
	return body
}

func valuesLen(r *session.Record) int {
	n := 0
	for k, v := range r.Values {
		n += 2*binary.MaxVarintLen32 + len(k) + len(v)
	}
	return n
}

func msAfter(t time.Time, base int64) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli() - base
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// open decrypts and decodes a value sealed by any of the keys. Anything
// else, whatever its bytes, is ok == false; it never panics.
func (s *sealer) open(v string) (raw [idLen]byte, r *session.Record, ok bool) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(v)
	if err != nil || len(b) < headerLen+nonceLen+tagLen+idLen || b[0] != format {
		return raw, nil, false
	}
	var k *sealKey
	for i := range s.keys {
		if string(s.keys[i].id[:]) == string(b[1:headerLen]) {
			k = &s.keys[i]
			break
		}
	}
	if k == nil {
		return raw, nil, false
	}
	body, err := k.aead.Open(nil, b[headerLen:headerLen+nonceLen], b[headerLen+nonceLen:], b[:headerLen])
	if err != nil {
		return raw, nil, false
	}
	r, ok = decodeBody(body, &raw)
	return raw, r, ok
}

// decodeBody parses an authenticated body. It is still strict: a body
// sealed by a future format or a buggy writer must not panic or allocate
// without bound.
func decodeBody(body []byte, raw *[idLen]byte) (*session.Record, bool) {
	d := decoder{b: body}
	copy(raw[:], d.take(idLen))
	created := d.uvarint()
	idle, deadline := d.varint(), d.varint()
	r := &session.Record{Version: d.uvarint(), UserID: string(d.bytes())}
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) { // every value takes at least 2 bytes
		return nil, false
	}
	r.Values = make(map[string][]byte, n)
	for range n {
		k, v := d.bytes(), d.bytes()
		if d.bad {
			return nil, false
		}
		r.Values[string(k)] = v
	}
	if d.bad || len(d.b) != 0 || created > 1<<53 {
		return nil, false
	}
	r.Created = time.UnixMilli(int64(created))
	r.IdleDeadline = time.UnixMilli(int64(created) + idle)
	r.Deadline = time.UnixMilli(int64(created) + deadline)
	return r, true
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) take(n int) []byte {
	if d.bad || n < 0 || n > len(d.b) {
		d.bad = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.bad {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.bad {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || v > 1<<50 || v < -(1<<50) {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	return d.take(int(n))
}

// split cuts a sealed value into cookie values of at most size bytes each:
// one when it fits, else "N." followed by the first piece, then the rest.
func split(v string, size int) []string {
	if len(v) <= size {
		return []string{v}
	}
	for n := 2; ; n++ {
		prefix := strconv.Itoa(n) + "."
		if len(prefix)+len(v) <= n*size {
			parts := make([]string, 0, n)
			first := size - len(prefix)
			parts = append(parts, prefix+v[:first])
			for rest := v[first:]; len(rest) > 0; {
				m := min(size, len(rest))
				parts = append(parts, rest[:m])
				rest = rest[m:]
			}
			return parts
		}
	}
}

// join reverses split; ok is false when a part is missing. Parts beyond
// the announced count (left over from a larger session) are ignored.
func join(parts []string, maxParts int) (string, bool) {
	if len(parts) == 0 {
		return "", false
	}
	countS, first, isSplit := strings.Cut(parts[0], ".")
	if !isSplit {
		return parts[0], true
	}
	n, err := strconv.Atoi(countS)
	if err != nil || n < 2 || n > maxParts || n > len(parts) || countS != strconv.Itoa(n) {
		return "", false
	}
	var b strings.Builder
	b.WriteString(first)
	for _, p := range parts[1:n] {
		if strings.Contains(p, ".") {
			return "", false
		}
		b.WriteString(p)
	}
	return b.String(), true
}
