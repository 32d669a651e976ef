package cookiestore

import (
	"testing"
	"time"
)

func TestRevocationSetSemantics(t *testing.T) {
	s := newSet()
	now := time.Now()
	old, _, _ := parseID(newID(now.Add(-time.Hour)))
	fresh, _, _ := parseID(newID(now.Add(time.Second)))
	gone, _, _ := parseID(newID(now))

	s.apply(entry{key: gone, until: now.Add(time.Minute).UnixMilli()})
	if !s.revoked(gone, "", now) || s.revoked(old, "", now) {
		t.Fatal("a revoked id must be refused and only it")
	}
	// A user's not-before ends their sessions issued before it, not after.
	s.apply(entry{user: true, key: userKey("ann"), notBefore: now.UnixMilli(), until: now.Add(time.Hour).UnixMilli()})
	if !s.revoked(old, "ann", now) || s.revoked(fresh, "ann", now) || s.revoked(old, "bob", now) {
		t.Fatal("not-before: want ann's old session ended, her new one and bob's kept")
	}
	// Out of order and twice: the later time wins, nothing goes back.
	s.apply(entry{user: true, key: userKey("ann"), notBefore: now.Add(-2 * time.Hour).UnixMilli(), until: now.Add(time.Minute).UnixMilli()})
	if !s.revoked(old, "ann", now) {
		t.Fatal("an older not-before arriving late undid a newer one")
	}
	// Past their until, entries no longer count and a sweep drops them.
	later := now.Add(2 * time.Hour)
	if s.revoked(gone, "", later) || s.revoked(old, "ann", later) {
		t.Fatal("a revocation outlived its until")
	}
	if s.size() != 2 {
		t.Fatalf("size %d, want 2 before the sweep", s.size())
	}
	s.sweep(later, time.Minute)
	if s.size() != 0 {
		t.Fatalf("size %d after sweeping past every until, want 0", s.size())
	}
}
