// Package sessiontest checks that a session.Store keeps the guarantees
// documented on session.Store, in the spirit of testing/fstest. Every store
// in this module runs it, and a third-party store can too:
//
//	func TestConformance(t *testing.T) {
//		sessiontest.Run(t, func(t *testing.T) session.Store { return mystore.New(...) })
//	}
//
// newStore must return an empty store (or one whose ids cannot collide with
// other tests') that stays usable until the test ends. A store on a server
// also passes RunWith with Options.Restart, which restarts the server
// before each kind of call and requires the first call afterwards to
// succeed, applied once.
package sessiontest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/session"
)

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	RunWith(t, newStore, Options{})
}

// RunWith is Run with the checks that need o (o.Restart).
func RunWith(t *testing.T, newStore func(t *testing.T) session.Store, o Options) {
	// Not parallel: it runs before the parallel tests resume, so its
	// restarts disturb no one.
	t.Run("FirstCallAfterRestart", func(t *testing.T) {
		if o.Restart == nil {
			t.Skip("no Options.Restart for the server")
		}
		testRestart(t, newStore(t), o.Restart)
	})
	tests := []struct {
		name string
		fn   func(t *testing.T, s session.Store)
	}{
		{"LoadMissingIsNotAnError", testLoadMissing},
		{"CreateAndLoad", testCreateAndLoad},
		{"CreateTwiceConflicts", testCreateTwice},
		{"CommitToMissingIsGone", testCommitMissing},
		{"PerKeyWrites", testPerKey},
		{"VersionAndTouch", testVersionAndTouch},
		{"Expect", testExpect},
		{"DeleteTombstones", testDelete},
		{"Expiry", testExpiry},
		{"UserIndex", testUserIndex},
		{"ConcurrentDifferentKeys", testConcurrentKeys},
		{"ConcurrentCompareAndSwap", testConcurrentCAS},
		{"DeleteRacingCommits", testDeleteRace},
		{"RecordIsACopy", testCopy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func newID(t *testing.T) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// create stores a new record with the given values, living for an hour.
func create(t *testing.T, s session.Store, vals map[string]string) string {
	t.Helper()
	id := newID(t)
	now := time.Now()
	c := session.Change{Create: true, Set: map[string][]byte{}, Created: now, Deadline: now.Add(time.Hour), IdleDeadline: now.Add(30 * time.Minute)}
	for k, v := range vals {
		c.Set[k] = []byte(v)
	}
	if _, err := s.Commit(ctx(t), id, c); err != nil {
		t.Fatalf("Commit(create): %v", err)
	}
	return id
}

func load(t *testing.T, s session.Store, id string) *session.Record {
	t.Helper()
	r, err := s.Load(ctx(t), id)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return r
}

func values(r *session.Record) map[string]string {
	if r == nil {
		return nil
	}
	m := map[string]string{}
	for k, v := range r.Values {
		m[k] = string(v)
	}
	return m
}

func wantValues(t *testing.T, r *session.Record, want map[string]string) {
	t.Helper()
	if r == nil {
		t.Fatalf("record missing, want values %v", want)
	}
	got := values(r)
	if len(got) != len(want) {
		t.Fatalf("values = %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Fatalf("values = %v, want %v", got, want)
		}
	}
}

// sameTime compares times at the millisecond precision stores keep.
func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return d < time.Millisecond && d > -time.Millisecond
}

func testLoadMissing(t *testing.T, s session.Store) {
	r, err := s.Load(ctx(t), newID(t))
	if err != nil || r != nil {
		t.Fatalf("Load(unknown) = %v, %v; want nil, nil", r, err)
	}
	if _, err := s.Delete(ctx(t), newID(t)); err != nil {
		t.Fatalf("Delete(unknown) = %v; want no error", err)
	}
}

func testCreateAndLoad(t *testing.T, s session.Store) {
	id := newID(t)
	now := time.Now()
	bin := []byte{0, 1, 2, 0xff, '\n', '"'}
	c := session.Change{
		Create:  true,
		Set:     map[string][]byte{"cart": []byte(`[1,2]`), "odd key:{x}.é": bin, "empty": {}},
		SetUser: true, UserID: "alice",
		Created: now, Deadline: now.Add(time.Hour), IdleDeadline: now.Add(10 * time.Minute),
	}
	v, err := s.Commit(ctx(t), id, c)
	if err != nil {
		t.Fatalf("Commit(create): %v", err)
	}
	r := load(t, s, id)
	wantValues(t, r, map[string]string{"cart": "[1,2]", "odd key:{x}.é": string(bin), "empty": ""})
	if r.UserID != "alice" {
		t.Errorf("UserID = %q, want alice", r.UserID)
	}
	if r.Version != v || v == 0 {
		t.Errorf("Version = %d, Commit returned %d; want equal and > 0", r.Version, v)
	}
	if !sameTime(r.Created, now) || !sameTime(r.Deadline, c.Deadline) || !sameTime(r.IdleDeadline, c.IdleDeadline) {
		t.Errorf("times = %v %v %v; want %v %v %v", r.Created, r.Deadline, r.IdleDeadline, now, c.Deadline, c.IdleDeadline)
	}
}

func testCreateTwice(t *testing.T, s session.Store) {
	id := create(t, s, map[string]string{"a": "1"})
	now := time.Now()
	_, err := s.Commit(ctx(t), id, session.Change{Create: true, Set: map[string][]byte{"a": []byte("2")}, Created: now, Deadline: now.Add(time.Hour)})
	if !errors.Is(err, session.ErrConflict) {
		t.Fatalf("second create: err = %v, want ErrConflict", err)
	}
	wantValues(t, load(t, s, id), map[string]string{"a": "1"})
}

func testCommitMissing(t *testing.T, s session.Store) {
	id := newID(t)
	_, err := s.Commit(ctx(t), id, session.Change{Set: map[string][]byte{"a": []byte("1")}})
	if !errors.Is(err, session.ErrNotFound) || !errors.Is(err, session.ErrGone) {
		t.Fatalf("Commit(unknown id) err = %v, want ErrNotFound", err)
	}
	if r := load(t, s, id); r != nil {
		t.Fatalf("Commit to an unknown id created %v", values(r))
	}
}

func testPerKey(t *testing.T, s session.Store) {
	id := create(t, s, map[string]string{"a": "1", "b": "2", "c": "3"})
	if _, err := s.Commit(ctx(t), id, session.Change{Set: map[string][]byte{"a": []byte("10")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx(t), id, session.Change{Set: map[string][]byte{"d": []byte("4")}, Delete: []string{"b", "nope"}}); err != nil {
		t.Fatal(err)
	}
	wantValues(t, load(t, s, id), map[string]string{"a": "10", "c": "3", "d": "4"})
	if _, err := s.Commit(ctx(t), id, session.Change{Clear: true, Set: map[string][]byte{"e": []byte("5")}}); err != nil {
		t.Fatal(err)
	}
	r := load(t, s, id)
	wantValues(t, r, map[string]string{"e": "5"})
	if _, err := s.Commit(ctx(t), id, session.Change{Clear: true}); err != nil {
		t.Fatal(err)
	}
	if r := load(t, s, id); r == nil || len(r.Values) != 0 {
		t.Fatalf("after Clear: record %v, want a live record with no values", r)
	}
}

func testVersionAndTouch(t *testing.T, s session.Store) {
	id := create(t, s, map[string]string{"a": "1"})
	v0 := load(t, s, id).Version
	v1, err := s.Commit(ctx(t), id, session.Change{Set: map[string][]byte{"a": []byte("2")}})
	if err != nil {
		t.Fatal(err)
	}
	if v1 != v0+1 {
		t.Fatalf("version after a write = %d, want %d", v1, v0+1)
	}
	idle := time.Now().Add(45 * time.Minute)
	v2, err := s.Commit(ctx(t), id, session.Change{IdleDeadline: idle})
	if err != nil {
		t.Fatal(err)
	}
	r := load(t, s, id)
	if v2 != v1 || r.Version != v1 {
		t.Fatalf("a touch changed the version: %d -> %d (loaded %d)", v1, v2, r.Version)
	}
	if !sameTime(r.IdleDeadline, idle) {
		t.Fatalf("IdleDeadline = %v, want %v", r.IdleDeadline, idle)
	}
	v3, err := s.Commit(ctx(t), id, session.Change{SetUser: true, UserID: "bob"})
	if err != nil || v3 != v1+1 {
		t.Fatalf("SetUser commit = %d, %v; want version %d", v3, err, v1+1)
	}
}

func testExpect(t *testing.T, s session.Store) {
	id := create(t, s, map[string]string{"n": "1"})
	c := ctx(t)
	_, err := s.Commit(c, id, session.Change{Set: map[string][]byte{"n": []byte("2"), "x": []byte("y")}, Expect: map[string][]byte{"n": []byte("0")}})
	if !errors.Is(err, session.ErrConflict) {
		t.Fatalf("mismatched Expect: err = %v, want ErrConflict", err)
	}
	wantValues(t, load(t, s, id), map[string]string{"n": "1"})
	if _, err := s.Commit(c, id, session.Change{Set: map[string][]byte{"n": []byte("2")}, Expect: map[string][]byte{"n": []byte("1")}}); err != nil {
		t.Fatalf("matching Expect: %v", err)
	}
	// nil expects absence.
	if _, err := s.Commit(c, id, session.Change{Set: map[string][]byte{"n": []byte("3")}, Expect: map[string][]byte{"n": nil}}); !errors.Is(err, session.ErrConflict) {
		t.Fatalf("Expect absent on a present key: err = %v, want ErrConflict", err)
	}
	if _, err := s.Commit(c, id, session.Change{Set: map[string][]byte{"m": []byte("1")}, Expect: map[string][]byte{"m": nil}}); err != nil {
		t.Fatalf("Expect absent on an absent key: %v", err)
	}
	wantValues(t, load(t, s, id), map[string]string{"n": "2", "m": "1"})
}

func testDelete(t *testing.T, s session.Store) {
	id := create(t, s, map[string]string{"a": "1"})
	c := ctx(t)
	if _, err := s.Commit(c, id, session.Change{SetUser: true, UserID: "carol"}); err != nil {
		t.Fatal(err)
	}
	old, err := s.Delete(c, id)
	if err != nil {
		t.Fatal(err)
	}
	wantValues(t, old, map[string]string{"a": "1"})
	if old.UserID != "carol" {
		t.Errorf("deleted record's UserID = %q, want carol", old.UserID)
	}
	if r := load(t, s, id); r != nil {
		t.Fatalf("Load after Delete = %v, want nil", values(r))
	}
	// A late write must not resurrect it, with or without conditions.
	if _, err := s.Commit(c, id, session.Change{Set: map[string][]byte{"a": []byte("2")}}); !errors.Is(err, session.ErrGone) || errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Commit after Delete: err = %v, want ErrGone (tombstone), not ErrNotFound", err)
	}
	if _, err := s.Commit(c, id, session.Change{IdleDeadline: time.Now().Add(time.Hour)}); !errors.Is(err, session.ErrGone) || errors.Is(err, session.ErrNotFound) {
		t.Fatalf("touch after Delete: err = %v, want ErrGone", err)
	}
	now := time.Now()
	if _, err := s.Commit(c, id, session.Change{Create: true, Created: now, Deadline: now.Add(time.Hour)}); !errors.Is(err, session.ErrConflict) {
		t.Fatalf("Create on a tombstone: err = %v, want ErrConflict", err)
	}
	if r := load(t, s, id); r != nil {
		t.Fatalf("Load after late writes = %v, want nil", values(r))
	}
	again, err := s.Delete(c, id)
	if err != nil || again != nil {
		t.Fatalf("second Delete = %v, %v; want nil, nil", again, err)
	}
}

func testExpiry(t *testing.T, s session.Store) {
	c := ctx(t)
	now := time.Now()
	idleID, absID := newID(t), newID(t)
	// Expired by its idle deadline.
	if _, err := s.Commit(c, idleID, session.Change{Create: true, Set: map[string][]byte{"a": []byte("1")}, Created: now, Deadline: now.Add(time.Hour), IdleDeadline: now.Add(1500 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	// Expired by its absolute deadline, though its idle deadline is moved.
	if _, err := s.Commit(c, absID, session.Change{Create: true, Created: now, Deadline: now.Add(1500 * time.Millisecond), IdleDeadline: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(c, absID, session.Change{IdleDeadline: now.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// A touched record lives on past its first idle deadline.
	liveID := newID(t)
	if _, err := s.Commit(c, liveID, session.Change{Create: true, Created: now, Deadline: now.Add(time.Hour), IdleDeadline: now.Add(1500 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(c, liveID, session.Change{IdleDeadline: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{idleID, absID} {
		err := waitFor(15*time.Second, func() error {
			r, err := s.Load(c, id)
			if err != nil {
				return err
			}
			// A store may keep an expired record a little while as
			// long as the Manager can see it has expired.
			if r != nil && time.Now().Before(r.ExpiresAt()) {
				return fmt.Errorf("record still live, expires at %v", r.ExpiresAt())
			}
			if r != nil {
				return errors.New("expired record still stored")
			}
			return nil
		})
		if err != nil {
			t.Fatalf("record never expired: %v", err)
		}
	}
	if r := load(t, s, liveID); r == nil {
		t.Fatal("a record whose idle deadline was moved expired at its old deadline")
	}
}

func waitFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func userIDs(t *testing.T, s session.Store, user string) []string {
	t.Helper()
	ids, err := s.UserSessions(ctx(t), user)
	if err != nil {
		t.Fatalf("UserSessions: %v", err)
	}
	return ids
}

func testUserIndex(t *testing.T, s session.Store) {
	c := ctx(t)
	u1, u2 := "user-"+newID(t)[:8], "user-"+newID(t)[:8]
	a, b, other := create(t, s, nil), create(t, s, nil), create(t, s, nil)
	for id, u := range map[string]string{a: u1, b: u1, other: u2} {
		if _, err := s.Commit(c, id, session.Change{SetUser: true, UserID: u}); err != nil {
			t.Fatal(err)
		}
	}
	got := userIDs(t, s, u1)
	if !slices.Contains(got, a) || !slices.Contains(got, b) || slices.Contains(got, other) {
		t.Fatalf("UserSessions(u1) = %v, want %v and %v and not %v", got, a, b, other)
	}
	// Sessions bound at creation are indexed too.
	now := time.Now()
	d := newID(t)
	if _, err := s.Commit(c, d, session.Change{Create: true, SetUser: true, UserID: u2, Created: now, Deadline: now.Add(time.Hour), IdleDeadline: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := userIDs(t, s, u2); !slices.Contains(got, d) || !slices.Contains(got, other) {
		t.Fatalf("UserSessions(u2) = %v, want %v and %v", got, d, other)
	}
	// Ended or rebound sessions may linger in the index, but their records
	// say so: what Load returns is what counts.
	if _, err := s.Delete(c, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(c, b, session.Change{SetUser: true, UserID: u2}); err != nil {
		t.Fatal(err)
	}
	for _, id := range userIDs(t, s, u1) {
		if r := load(t, s, id); r != nil && r.UserID == u1 {
			t.Fatalf("session %s is still live for u1 after delete/rebind", id)
		}
	}
	if got := userIDs(t, s, u2); !slices.Contains(got, b) {
		t.Fatalf("UserSessions(u2) = %v, want the rebound %v", got, b)
	}
	if got := userIDs(t, s, "nobody-"+newID(t)[:8]); len(got) != 0 {
		t.Fatalf("UserSessions(unknown) = %v, want none", got)
	}
}

func testConcurrentKeys(t *testing.T, s session.Store) {
	id := create(t, s, nil)
	c := ctx(t)
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			k := "k" + strconv.Itoa(i)
			_, err := s.Commit(c, id, session.Change{Set: map[string][]byte{k: []byte(k)}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r := load(t, s, id)
	if len(r.Values) != n {
		t.Fatalf("%d of %d concurrent writes to different keys survived", len(r.Values), n)
	}
	if r.Version != n+1 {
		t.Fatalf("Version = %d after create and %d writes, want %d", r.Version, n, n+1)
	}
}

// callCtx bounds one store call, as a request's deadline does; a test
// that makes many calls in a row gives each its own, so a loaded machine
// slows the test without failing it.
func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 20*time.Second)
}

func testConcurrentCAS(t *testing.T, s session.Store) {
	id := create(t, s, map[string]string{"n": "0"})
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				for {
					c, cancel := callCtx()
					r, err := s.Load(c, id)
					cancel()
					if err != nil {
						errs <- err
						return
					}
					old := r.Values["n"]
					n, _ := strconv.Atoi(string(old))
					c, cancel = callCtx()
					_, err = s.Commit(c, id, session.Change{Set: map[string][]byte{"n": []byte(strconv.Itoa(n + 1))}, Expect: map[string][]byte{"n": old}})
					cancel()
					if err == nil {
						break
					}
					if !errors.Is(err, session.ErrConflict) {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wantValues(t, load(t, s, id), map[string]string{"n": strconv.Itoa(workers * each)})
}

func testDeleteRace(t *testing.T, s session.Store) {
	for range 5 {
		c, cancel := callCtx() // the round's calls run at once
		defer cancel()
		id := create(t, s, nil)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				_, err := s.Commit(c, id, session.Change{Set: map[string][]byte{"k" + strconv.Itoa(i): []byte("v")}})
				if err != nil && !errors.Is(err, session.ErrGone) {
					t.Error(err)
				}
			})
		}
		wg.Go(func() {
			if _, err := s.Delete(c, id); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		if r := load(t, s, id); r != nil {
			t.Fatalf("a commit racing Delete brought the session back: %v", values(r))
		}
	}
}

func testCopy(t *testing.T, s session.Store) {
	id := create(t, s, map[string]string{"a": "1"})
	r := load(t, s, id)
	r.Values["a"][0] = 'X'
	r.Values["b"] = []byte("2")
	if got := load(t, s, id); !bytes.Equal(got.Values["a"], []byte("1")) || got.Values["b"] != nil {
		t.Fatalf("changing a loaded record changed the store: %v", values(got))
	}
}

// testRestart restarts the server before each step, the store's
// connections having been used, and requires the step's first call to
// succeed and to be applied exactly once: no eventually, no retry here.
func testRestart(t *testing.T, s session.Store, restart func()) {
	var c context.Context // each step's own deadline, set after the restart
	kept := create(t, s, map[string]string{"a": "1"})
	load(t, s, kept) // the connections are open when the server dies
	user := "restart-" + newID(t)[:8]
	var id string
	var version uint64
	now := time.Now()
	commit := func(ch session.Change) error {
		v, err := s.Commit(c, id, ch)
		if err != nil {
			return err
		}
		if v != version+1 {
			return fmt.Errorf("version %d after %d: the commit was applied %d times", v, version, v-version)
		}
		version = v
		return nil
	}
	steps := []struct {
		name string
		call func() error
	}{
		{"Load", func() error {
			r, err := s.Load(c, kept)
			if err == nil && (r == nil || string(r.Values["a"]) != "1") {
				err = fmt.Errorf("got %+v, want the session created before the restart", r)
			}
			return err
		}},
		{"Commit(Create)", func() error {
			id = newID(t)
			return commit(session.Change{Create: true, Set: map[string][]byte{"n": []byte("1")},
				Created: now, Deadline: now.Add(time.Hour), IdleDeadline: now.Add(30 * time.Minute)})
		}},
		{"Commit(Set)", func() error {
			return commit(session.Change{Set: map[string][]byte{"m": []byte("x")}})
		}},
		{"Commit(Expect)", func() error {
			return commit(session.Change{Expect: map[string][]byte{"n": []byte("1")}, Set: map[string][]byte{"n": []byte("2")}})
		}},
		{"Commit(SetUser)", func() error {
			return commit(session.Change{SetUser: true, UserID: user, Deadline: now.Add(time.Hour)})
		}},
		{"UserSessions", func() error {
			ids, err := s.UserSessions(c, user)
			if err == nil && !slices.Contains(ids, id) {
				err = fmt.Errorf("got %v, want %s among them", ids, id)
			}
			return err
		}},
		{"Delete", func() error {
			r, err := s.Delete(c, id)
			if err == nil {
				if r == nil {
					return errors.New("no record returned for a live session")
				}
				if got := values(r); got["n"] != "2" || got["m"] != "x" || r.Version != version {
					return fmt.Errorf("returned %v at version %d, want n=2 m=x at %d", got, r.Version, version)
				}
			}
			return err
		}},
		{"Load(deleted)", func() error {
			r, err := s.Load(c, id)
			if err == nil && r != nil {
				err = fmt.Errorf("got %+v after the delete, want none", r)
			}
			return err
		}},
	}
	for _, st := range steps {
		restart()
		c = ctx(t)
		if err := st.call(); err != nil {
			t.Fatalf("first %s after the server restarted: %v", st.name, err)
		}
	}
}
