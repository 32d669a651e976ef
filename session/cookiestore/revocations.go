package cookiestore

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// entry is one revocation as the feed carries it: a session id, or a user
// (by a hash of the user id) with the time before which their sessions
// were issued. It may be forgotten after until (Unix ms).
type entry struct {
	user      bool
	key       [idLen]byte
	notBefore int64 // Unix ms; users only
	until     int64 // Unix ms
}

// userKey is how a user is named in the shared store and in memory: a
// hash, so the store holds no user ids and any user id fits.
func userKey(userID string) [idLen]byte {
	sum := sha256.Sum256([]byte("unstuck cookiestore user\x00" + userID))
	var k [idLen]byte
	copy(k[:], sum[:])
	return k
}

// name is the entry's key in the shared store: "s.<hex id>" or
// "u.<hex user hash>".
func (e entry) name() string {
	if e.user {
		return "u." + hex.EncodeToString(e.key[:])
	}
	return "s." + hex.EncodeToString(e.key[:])
}

// value is the entry's value in the shared store: "until notBefore".
func (e entry) value() string {
	return strconv.FormatInt(e.until, 10) + " " + strconv.FormatInt(e.notBefore, 10)
}

// parseEntry reads an entry back from its name and value; ok is false for
// anything another program may have written there.
func parseEntry(name, value string) (entry, bool) {
	var e entry
	kind, h, ok := strings.Cut(name, ".")
	if !ok || (kind != "s" && kind != "u") || len(h) != 2*idLen {
		return e, false
	}
	if _, err := hex.Decode(e.key[:], []byte(h)); err != nil {
		return e, false
	}
	e.user = kind == "u"
	untilS, nbS, ok := strings.Cut(value, " ")
	if !ok {
		return e, false
	}
	var err1, err2 error
	e.until, err1 = strconv.ParseInt(untilS, 10, 64)
	e.notBefore, err2 = strconv.ParseInt(nbS, 10, 64)
	if err1 != nil || err2 != nil || e.until <= 0 || e.notBefore < 0 || (!e.user && e.notBefore != 0) {
		return e, false
	}
	return e, true
}

// set is this instance's copy of every live revocation, read on every
// request without a store call, and the moment it was last known complete.
type set struct {
	mu       sync.RWMutex
	ids      map[[idLen]byte]int64 // id -> until
	users    map[[idLen]byte]user
	syncedAt time.Time     // everything committed before it is applied
	syncCh   chan struct{} // closed and replaced at every sync, for Sync
	swept    time.Time
	// wake asks the Store to confirm now rather than at the next poll:
	// someone waits in Sync, or a feed saw a message go missing.
	wake chan struct{}
	// observe, when set (by the propagation benchmark), sees every entry
	// applied.
	observe atomic.Pointer[func(entry)]
}

type user struct{ notBefore, until int64 }

func newSet() *set {
	return &set{ids: map[[idLen]byte]int64{}, users: map[[idLen]byte]user{}, syncCh: make(chan struct{}), wake: make(chan struct{}, 1)}
}

func (s *set) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// apply adds entries. It is idempotent and commutative (the larger time
// wins), so entries may arrive twice, late or out of order.
func (s *set) apply(es ...entry) {
	if f := s.observe.Load(); f != nil {
		defer func() {
			for _, e := range es {
				(*f)(e)
			}
		}()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range es {
		if e.user {
			u := s.users[e.key]
			s.users[e.key] = user{notBefore: max(u.notBefore, e.notBefore), until: max(u.until, e.until)}
		} else {
			s.ids[e.key] = max(s.ids[e.key], e.until)
		}
	}
}

// revoked reports whether session raw, bound to userID, has been ended.
func (s *set) revoked(raw [idLen]byte, userID string, now time.Time) bool {
	ms := now.UnixMilli()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if until, ok := s.ids[raw]; ok && until > ms {
		return true
	}
	if userID == "" || len(s.users) == 0 {
		return false
	}
	u, ok := s.users[userKey(userID)]
	return ok && u.until > ms && issuedAt(raw) <= u.notBefore // the same millisecond counts as before
}

// synced records that every revocation committed before t is applied.
func (s *set) synced(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.After(s.syncedAt) {
		s.syncedAt = t
		close(s.syncCh)
		s.syncCh = make(chan struct{})
	}
}

// lastSync returns when the set was last known complete, and a channel
// closed at the next sync.
func (s *set) lastSync() (time.Time, <-chan struct{}) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.syncedAt, s.syncCh
}

// sweep forgets entries past their until, at most once a interval.
func (s *set) sweep(now time.Time, interval time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.swept) < interval {
		return
	}
	s.swept = now
	ms := now.UnixMilli()
	for k, until := range s.ids {
		if until <= ms {
			delete(s.ids, k)
		}
	}
	for k, u := range s.users {
		if u.until <= ms {
			delete(s.users, k)
		}
	}
}

// size is how many revocations are held, for tests and logs.
func (s *set) size() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.ids) + len(s.users)
}
