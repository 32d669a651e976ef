package memstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/memstore"
	"github.com/unstuck-dev/unstuck/session/sessiontest"
)

func TestConformance(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T) session.Store {
		s := memstore.New(memstore.Options{CleanupInterval: 50 * time.Millisecond})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestBoundedEvictsLeastRecentlyUsed(t *testing.T) {
	s := memstore.New(memstore.Options{MaxSessions: 3})
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	mk := func(id string) {
		t.Helper()
		if _, err := s.Commit(ctx, id, session.Change{Create: true, Created: now, Deadline: now.Add(time.Hour), IdleDeadline: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	mk("a")
	mk("b")
	mk("c")
	if r, _ := s.Load(ctx, "a"); r == nil { // a is now the most recent
		t.Fatal("a missing")
	}
	mk("d")
	if s.Len() != 3 {
		t.Fatalf("Len = %d, want 3", s.Len())
	}
	if r, _ := s.Load(ctx, "b"); r != nil {
		t.Fatal("b, the least recently used, was not evicted")
	}
	for _, id := range []string{"a", "c", "d"} {
		if r, _ := s.Load(ctx, id); r == nil {
			t.Fatalf("%s evicted, want kept", id)
		}
	}
}

func TestJanitorDropsExpiredAndCloseStopsIt(t *testing.T) {
	s := memstore.New(memstore.Options{CleanupInterval: 10 * time.Millisecond})
	ctx := context.Background()
	now := time.Now()
	if _, err := s.Commit(ctx, "x", session.Change{Create: true, Created: now, Deadline: now.Add(50 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("janitor never dropped the expired record")
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: janitor not stopped")
	}
	s.Close() // idempotent
}
