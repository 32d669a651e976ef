package lb

import (
	"strings"
	"testing"
	"time"
)

func mustSigner(t testing.TB, name string, secrets ...string) *Signer {
	t.Helper()
	var bs [][]byte
	for _, s := range secrets {
		bs = append(bs, []byte(s))
	}
	s, err := NewSigner(name, bs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	secretA = "0123456789abcdef-secret-A"
	secretB = "fedcba9876543210-secret-B"
)

func TestCookieRoundTrip(t *testing.T) {
	s := mustSigner(t, "", secretA)
	now := time.Unix(1_800_000_000, 0)
	p := Pin{Backend: "app.1", Expires: now.Add(time.Hour), User: 42}
	v := s.Sign(p)
	if strings.Contains(v, "127.0.0.1") || !strings.Contains(v, "app.1") {
		t.Fatalf("value %q should name the backend, never an address", v)
	}
	got, ok := s.Verify([]byte(v), now)
	if !ok || got.Backend != "app.1" || got.User != 42 || !got.Expires.Equal(p.Expires) {
		t.Fatalf("Verify(%q) = %+v, %v", v, got, ok)
	}
}

func TestCookieRejectsForgedExpiredTruncatedGarbage(t *testing.T) {
	s := mustSigner(t, "", secretA)
	now := time.Unix(1_800_000_000, 0)
	good := s.Sign(Pin{Backend: "b1", Expires: now.Add(time.Hour), User: 7})
	if _, ok := s.Verify([]byte(good), now); !ok {
		t.Fatal("good value rejected")
	}
	bad := map[string]string{
		"other backend, same MAC": strings.Replace(good, ".b1.", ".b2.", 1),
		"flipped MAC char":        good[:len(good)-1] + string(rune('A'+(good[len(good)-1]-'A'+1)%26)),
		"other secret":            mustSigner(t, "", secretB).Sign(Pin{Backend: "b1", Expires: now.Add(time.Hour), User: 7}),
		"other cookie name":       mustSigner(t, "session", secretA).Sign(Pin{Backend: "b1", Expires: now.Add(time.Hour), User: 7}),
		"empty":                   "",
		"garbage":                 "hello world",
		"dots":                    "....",
		"huge":                    strings.Repeat("a", 10000),
		"no MAC":                  "1.b1.zzzzzz.7",
	}
	for i := 1; i < len(good); i++ {
		bad["truncated to "+string(rune('0'+i%10))+"/"+time.Duration(i).String()] = good[:i]
	}
	for name, v := range bad {
		if p, ok := s.Verify([]byte(v), now); ok {
			t.Errorf("%s: %q accepted as %+v", name, v, p)
		}
	}
	if _, ok := s.Verify([]byte(good), now.Add(time.Hour)); ok {
		t.Error("expired value accepted at its expiry")
	}
	if _, ok := s.Verify([]byte(good), now.Add(2*time.Hour)); ok {
		t.Error("expired value accepted after expiry")
	}
}

func TestCookieSecretRotation(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	p := Pin{Backend: "b2", Expires: now.Add(time.Hour), User: 9}
	old := mustSigner(t, "", secretA)
	rotated := mustSigner(t, "", secretB, secretA) // new first, old still verifies
	oldValue := old.Sign(p)
	if got, ok := rotated.Verify([]byte(oldValue), now); !ok || got.Backend != "b2" {
		t.Fatalf("rotated signer rejects a value signed with the old secret")
	}
	newValue := rotated.Sign(p)
	if newValue == oldValue {
		t.Fatal("rotated signer still signs with the old secret")
	}
	if _, ok := mustSigner(t, "", secretB).Verify([]byte(newValue), now); !ok {
		t.Fatal("new value not signed by the first secret")
	}
	if _, ok := old.Verify([]byte(newValue), now); ok {
		t.Fatal("signer without the new secret accepted a new value")
	}
	// Once the old secret is dropped, old values stop working.
	if _, ok := mustSigner(t, "", secretB).Verify([]byte(oldValue), now); ok {
		t.Fatal("dropped secret still verifies")
	}
}

func TestSignerRefusesShortOrNoSecret(t *testing.T) {
	if _, err := NewSigner("", nil); err == nil {
		t.Error("no secret accepted")
	}
	if _, err := NewSigner("", [][]byte{[]byte("short")}); err == nil {
		t.Error("5-byte secret accepted")
	}
	if a, b := GenerateSecret(), GenerateSecret(); a == b || len(a) < MinSecretLen {
		t.Errorf("generated secrets %q %q", a, b)
	}
}

func TestCookieHeaderAttributes(t *testing.T) {
	h := cookieHeader("unstuck_affinity", "v", 0, false)
	if h != "unstuck_affinity=v; Path=/; HttpOnly; SameSite=Lax" {
		t.Errorf("session cookie: %q", h)
	}
	h = cookieHeader("c", "v", 90*time.Minute, true)
	if h != "c=v; Path=/; Max-Age=5400; HttpOnly; SameSite=Lax; Secure" {
		t.Errorf("persistent secure cookie: %q", h)
	}
}

func FuzzCookieVerify(f *testing.F) {
	s := mustSigner(f, "", secretA)
	now := time.Unix(1_800_000_000, 0)
	f.Add(s.Sign(Pin{Backend: "b1", Expires: now.Add(time.Hour), User: 1}))
	f.Add(s.Sign(Pin{Backend: "a.b.c", Expires: now.Add(time.Minute), User: 1 << 60}))
	f.Add("1.b1.0.0.AAAA")
	f.Add("")
	f.Add("....")
	f.Add("1..zz.1." + strings.Repeat("A", 43))
	f.Fuzz(func(t *testing.T, v string) {
		p, ok := s.Verify([]byte(v), now)
		if !ok {
			return
		}
		// Only values this signer made verify, and they are canonical.
		if again := s.Sign(p); again != v {
			t.Fatalf("accepted %q, which re-signs as %q", v, again)
		}
	})
}
