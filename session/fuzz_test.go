package session

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseToken: untrusted cookie and header values must never panic, and
// only canonical 256-bit base64url tokens may be accepted.
func FuzzParseToken(f *testing.F) {
	tok, _ := newToken()
	for _, s := range []string{tok, "", "abc", strings.Repeat("A", 43), strings.Repeat("A", 42) + "B",
		strings.Repeat("/", 43), tok + "=", tok[:42], "%00" + tok[3:], strings.Repeat("\xff", 43)} {
		f.Add(s)
	}
	f.Add(tok + ".7")
	f.Add(tok + ".007")
	f.Add(tok + ".-1")
	f.Add(tok + ".18446744073709551616")
	f.Fuzz(func(t *testing.T, s string) {
		if cid, ctok, ver, ok := parseCookie(s); ok {
			// Only "token" or "token.N" with N canonical decimal.
			want := ctok
			if ver > 0 || strings.HasSuffix(s, ".0") {
				want += "." + strconv.FormatUint(ver, 10)
			}
			if want != s || cid == "" {
				t.Fatalf("parseCookie accepted %q as %q v%d", s, ctok, ver)
			}
		}
		id, ok := parseToken(s)
		if !ok {
			if id != "" {
				t.Fatal("rejected token has an id")
			}
			return
		}
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) != tokenBytes || base64.RawURLEncoding.EncodeToString(b) != s {
			t.Fatalf("accepted non-canonical token %q", s)
		}
		if len(id) != 64 || id == s {
			t.Fatalf("id %q is not a digest of the token", id)
		}
	})
}

// FuzzJSONCodecDecode: values come from a shared store another program may
// have written; decoding must fail cleanly, never panic.
func FuzzJSONCodecDecode(f *testing.F) {
	for _, s := range []string{`1`, `"x"`, `[1,2,3]`, `{"a":{"b":[null]}}`, `{`, ``, `[` + strings.Repeat("[", 100), "\xff", `1e400`} {
		f.Add([]byte(s))
	}
	var c JSONCodec
	f.Fuzz(func(t *testing.T, b []byte) {
		var i int
		var s string
		var m map[string]any
		var cart []struct {
			ID  string `json:"id"`
			Qty int    `json:"qty"`
		}
		for _, v := range []any{&i, &s, &m, &cart} {
			_ = c.Decode(b, v)
		}
		if err := c.Decode(b, &m); err == nil {
			if _, err := c.Encode(m); err != nil {
				t.Fatalf("decoded value does not encode again: %v", err)
			}
		}
	})
}

func TestTokenIsHashedForTheStore(t *testing.T) {
	tok, id := newToken()
	got, ok := parseToken(tok)
	if !ok || got != id || strings.Contains(id, tok) {
		t.Fatalf("parseToken(%q) = %q, %v; want the digest %q", tok, got, ok, id)
	}
	tok2, _ := newToken()
	if tok == tok2 {
		t.Fatal("two tokens are equal")
	}
}
