package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// state is one request's view of its session. The handler may use it from
// several goroutines, hence the mutex.
type state struct {
	m *Manager
	r *http.Request

	mu         sync.Mutex
	viaHeader  bool
	token, id  string   // the presented or issued token; "" when none
	parts      []string // ClientStore: the sealed session the client presented
	present    uint64   // ClientStore: which cookies name, name.1, ... came
	issued     bool     // token or version is new in this request: send the cookie
	minVersion uint64   // version the client last saw written (cookie hint)
	loaded     bool     // Load ran (or there was nothing to load)
	rec        *Record  // the stored session; nil when there is none yet
	failed     error    // a store failure that must fail the response
	ended      bool     // Destroy ran: expire the cookie unless a new session follows

	// pending changes, written at save
	set       map[string][]byte
	del       map[string]struct{}
	clear     bool
	setUser   bool
	userID    string
	saved     bool
	headerOut bool // save finished: no cookie can be sent any more
	// rotated holds the creation time and deadline a rotated session
	// keeps; its content waits in the pending changes.
	rotated *Record
	// blindVersion is the version a blind write produced.
	blindVersion uint64
}

func from(ctx context.Context) (*state, error) {
	s, _ := ctx.Value(ctxKey{}).(*state)
	if s == nil {
		return nil, ErrNoSession
	}
	return s, nil
}

// loadLocked loads the record once per request.
func (s *state) loadLocked(ctx context.Context) error {
	if s.failed != nil {
		return s.failed
	}
	if s.loaded {
		return nil
	}
	var rec *Record
	var err error
	switch {
	case s.m.client != nil:
		rec, err = s.openLocked(ctx)
	case s.id != "":
		rec, err = s.m.load(ctx, s.id, s.minVersion)
	}
	if err != nil {
		// Never let the handler go on with an empty session: the
		// response fails even if the handler ignores this error.
		s.failed = unavailable("load", err)
		return s.failed
	}
	s.loaded = true
	if rec != nil && !time.Now().Before(rec.ExpiresAt()) {
		s.m.hook(s.m.cfg.OnExpire, ctx, s.id, rec)
		rec = nil
	}
	if rec == nil {
		// Unknown, expired or destroyed: start afresh with a new token
		// on first write; a client-chosen token is never adopted.
		s.token, s.id = "", ""
	}
	s.rec = rec
	return nil
}

// loadForWriteLocked loads the session before a Set or Delete, unless the
// write can go to the store blind: a per-key write needs no read, so a
// request that only writes costs one round trip. With a near cache and a
// persistent cookie, the session is loaded (usually free) because the
// re-sent cookie needs the session's deadline; with a ClientStore it is
// always opened, since the cookie carries all of it.
func (s *state) loadForWriteLocked(ctx context.Context) error {
	if s.failed != nil {
		return s.failed
	}
	if !s.loaded && s.id != "" && s.m.client == nil && (s.m.fresh == nil || !s.m.cfg.Cookie.Persist) {
		return nil
	}
	return s.loadLocked(ctx)
}

// valueLocked returns a key's current encoded value, pending changes
// included.
func (s *state) valueLocked(key string) ([]byte, bool) {
	if b, ok := s.set[key]; ok {
		return b, true
	}
	if _, ok := s.del[key]; ok || s.clear || s.rec == nil {
		return nil, false
	}
	b, ok := s.rec.Values[key]
	return b, ok
}

// Get returns the value stored under key, decoded into a T, and whether the
// key was present. An error means the store could not be reached (the
// response will be the Manager's error answer) or the stored value does not
// decode into a T.
func Get[T any](ctx context.Context, key string) (T, bool, error) {
	var v T
	s, err := from(ctx)
	if err != nil {
		return v, false, err
	}
	s.mu.Lock()
	if err := s.loadLocked(ctx); err != nil {
		s.mu.Unlock()
		return v, false, err
	}
	b, ok := s.valueLocked(key)
	s.mu.Unlock()
	if !ok {
		return v, false, nil
	}
	if err := s.m.cfg.Codec.Decode(b, &v); err != nil {
		return v, false, err
	}
	return v, true, nil
}

// Set stores v under key. The write goes to the store with the response,
// together with the request's other changes, and touches only the keys
// this request changed.
func Set(ctx context.Context, key string, v any) error {
	s, err := from(ctx)
	if err != nil {
		return err
	}
	b, err := s.encode(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadForWriteLocked(ctx); err != nil {
		return err
	}
	if s.set == nil {
		s.set = map[string][]byte{}
	}
	prev, hadPrev := s.set[key]
	_, wasDeleted := s.del[key]
	s.set[key] = b
	delete(s.del, key)
	if err := s.fitsLocked(); err != nil {
		delete(s.set, key)
		if hadPrev {
			s.set[key] = prev
		}
		if wasDeleted {
			s.del[key] = struct{}{}
		}
		return err
	}
	return s.afterSaveLocked(ctx)
}

// ErrResponseStarted is returned when a change needs a new cookie (a new
// session or a new token) but the response header has already been sent.
var ErrResponseStarted = errors.New("session: response already started; change the session before writing the response")

// afterSaveLocked writes a change made after the response started through to
// the store at once, since the save at the first byte has already run. With
// a ClientStore the cookie has gone out, so the change cannot be kept.
func (s *state) afterSaveLocked(ctx context.Context) error {
	if !s.saved || !s.dirtyLocked() {
		return nil
	}
	if s.m.client != nil {
		s.resetPendingLocked()
		return ErrResponseStarted
	}
	if !s.loaded && s.id != "" {
		return s.blindFlushLocked(ctx)
	}
	if s.rec == nil {
		s.resetPendingLocked()
		return ErrResponseStarted
	}
	return s.flushLocked(ctx)
}

func (s *state) encode(v any) ([]byte, error) {
	b, err := s.m.cfg.Codec.Encode(v)
	if err != nil {
		return nil, err
	}
	if len(b) > s.m.cfg.MaxValueSize {
		return nil, errors.Join(ErrValueTooLarge, errSize(len(b), s.m.cfg.MaxValueSize))
	}
	return b, nil
}

type sizeError struct{ n, max int }

func (e sizeError) Error() string {
	return "encoded value is " + itoa(e.n) + " bytes, limit " + itoa(e.max)
}

func errSize(n, limit int) error { return sizeError{n, limit} }

// Delete removes key.
func Delete(ctx context.Context, key string) error {
	s, err := from(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadForWriteLocked(ctx); err != nil {
		return err
	}
	delete(s.set, key)
	if (s.rec != nil || !s.loaded) && !s.clear {
		if s.del == nil {
			s.del = map[string]struct{}{}
		}
		s.del[key] = struct{}{}
	}
	return s.afterSaveLocked(ctx)
}

// Keys returns the session's keys, sorted.
func Keys(ctx context.Context) ([]string, error) {
	s, err := from(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(ctx); err != nil {
		return nil, err
	}
	keys := map[string]struct{}{}
	if s.rec != nil && !s.clear {
		for k := range s.rec.Values {
			if _, gone := s.del[k]; !gone {
				keys[k] = struct{}{}
			}
		}
	}
	for k := range s.set {
		keys[k] = struct{}{}
	}
	return slices.Sorted(maps.Keys(keys)), nil
}

// Clear removes every value but keeps the session (and its user binding).
func Clear(ctx context.Context) error {
	s, err := from(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(ctx); err != nil {
		return err
	}
	s.set, s.del, s.clear = nil, nil, s.rec != nil
	return s.afterSaveLocked(ctx)
}

// User returns the user the session is bound to, "" when none.
func User(ctx context.Context) (string, error) {
	s, err := from(ctx)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(ctx); err != nil {
		return "", err
	}
	if s.setUser {
		return s.userID, nil
	}
	if s.rec != nil {
		return s.rec.UserID, nil
	}
	return "", nil
}

// SetUser binds the session to userID ("" unbinds it), so that
// Manager.SessionsOfUser and DestroyAllForUser find it. Call RenewToken
// along with it on login.
func SetUser(ctx context.Context, userID string) error {
	s, err := from(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(ctx); err != nil {
		return err
	}
	prevSet, prevUser := s.setUser, s.userID
	s.setUser, s.userID = true, userID
	if err := s.fitsLocked(); err != nil {
		s.setUser, s.userID = prevSet, prevUser
		return err
	}
	return s.afterSaveLocked(ctx)
}

// Update replaces the value under key with f(old) atomically, retrying when
// another request changed the key in between, so no concurrent update is
// lost (an item added to a cart from two tabs at once). ok reports whether
// key had a value. Unlike Set, Update writes to the store at once, together
// with the request's changes so far; f may run several times and must not
// have side effects. If f returns an error, nothing is written and Update
// returns it.
func Update[T any](ctx context.Context, key string, f func(old T, ok bool) (T, error)) (T, error) {
	var zero T
	s, err := from(ctx)
	if err != nil {
		return zero, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(ctx); err != nil {
		return zero, err
	}
	m := s.m
	if s.saved && (s.rec == nil || m.client != nil) {
		return zero, ErrResponseStarted
	}
	if err := s.flushLocked(ctx); err != nil {
		return zero, err
	}
	// Requests of one session on this instance take turns, so only
	// instances (not every request) contend in the store. A turn that
	// does not come within StoreTimeout is refused like a store that does
	// not answer: the queue ahead is longer than a store call may take,
	// and waiting on would hold the client until its own timeout.
	turn, cancel := m.storeCtx(ctx)
	unlock, err := m.updates.lock(turn, s.id)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		// Like a store that did not answer, this fails the response
		// (the ErrorHandler's 503), whatever the handler does with it.
		s.failed = unavailable("update", fmt.Errorf("this session's earlier updates on this instance took over %v", m.cfg.StoreTimeout))
		return zero, s.failed
	}
	defer unlock()
	for attempt := 0; ; attempt++ {
		oldB, ok := s.rec.Values[key]
		var old T
		if ok {
			if err := m.cfg.Codec.Decode(oldB, &old); err != nil {
				return zero, err
			}
		}
		nv, err := f(old, ok)
		if err != nil {
			return zero, err
		}
		newB, err := s.encode(nv)
		if err != nil {
			return zero, err
		}
		expect := map[string][]byte{key: nil}
		if ok {
			expect[key] = oldB
		}
		c := Change{Set: map[string][]byte{key: newB}, Expect: expect, IdleDeadline: m.idleDeadline(time.Now(), s.rec)}
		ver, err := m.commit(ctx, s.id, s.rec, c)
		switch {
		case err == nil:
			s.rec.Values[key] = newB
			if err := s.fitsLocked(); err != nil {
				// Only with a ClientStore, whose commit is this copy.
				if ok {
					s.rec.Values[key] = oldB
				} else {
					delete(s.rec.Values, key)
				}
				return zero, err
			}
			s.rec.Version = ver
			s.rec.IdleDeadline = c.IdleDeadline
			s.wroteLocked()
			return nv, nil
		case errors.Is(err, ErrGone):
			return zero, err
		case !errors.Is(err, ErrConflict):
			s.failed = unavailable("update", err)
			return zero, s.failed
		}
		// Lost the race: back off a little (with jitter, so contenders
		// spread out) and retry on the current record.
		if err := backoff(ctx, attempt); err != nil {
			return zero, err
		}
		// The key changed, so the stored version is newer than ours.
		rec, err := m.load(ctx, s.id, s.rec.Version+1)
		if err != nil {
			s.failed = unavailable("load", err)
			return zero, s.failed
		}
		if rec == nil {
			return zero, ErrGone
		}
		s.rec = rec
	}
}

func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(100*time.Microsecond) << min(attempt, 6)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// RenewToken gives the session a new token and ends the old one at once:
// call it on login and on any change of privilege, so a token planted
// before login (session fixation) is worthless after it. A request still
// running on the old token cannot write to the session any more.
func RenewToken(ctx context.Context) error {
	s, err := from(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// No load needed: Delete returns the record it ends.
	if err := s.loadForWriteLocked(ctx); err != nil {
		return err
	}
	m := s.m
	if s.saved {
		return ErrResponseStarted
	}
	if s.loaded && s.rec == nil {
		// Nothing stored yet: the session will be created under a new
		// token at save.
		s.token, s.id = "", ""
		return nil
	}
	// Tombstone the old id first and carry over what it held at that
	// moment, so a write that raced the rotation is either in the copy or
	// rejected, never silently dropped after the copy.
	old, err := m.end(ctx, s.id, s.rec)
	if err != nil {
		s.failed = unavailable("renew", err)
		return s.failed
	}
	oldID := s.id
	s.loaded = true
	if old == nil || !time.Now().Before(old.ExpiresAt()) {
		// Unknown, expired, or destroyed meanwhile by another request:
		// start afresh.
		s.rec, s.token, s.id = nil, "", ""
		return nil
	}
	m.hook(m.cfg.OnDestroy, ctx, oldID, old)
	// The old session's content becomes the pending content of a new one,
	// created under a new token when the response starts, together with
	// whatever the handler changes next (typically SetUser): one write.
	set := maps.Clone(old.Values)
	if set == nil || s.clear {
		set = map[string][]byte{}
	}
	for k := range s.del {
		delete(set, k)
	}
	maps.Copy(set, s.set)
	user, setUser := s.userID, s.setUser
	if !setUser && old.UserID != "" {
		user, setUser = old.UserID, true
	}
	s.resetPendingLocked()
	s.set, s.setUser, s.userID = set, setUser, user
	s.rec, s.token, s.id = nil, "", ""
	s.rotated = &Record{Created: old.Created, Deadline: old.Deadline}
	return nil
}

// Destroy ends the session at once (logout): the store forgets it, the
// cookie is removed, and a request still running on it cannot write it
// back. Values set afterwards in the same request start a new session.
func Destroy(ctx context.Context) error {
	s, err := from(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.client != nil {
		// The id is inside the cookie: open it to know what to revoke.
		if err := s.loadLocked(ctx); err != nil {
			return err
		}
	}
	if s.id != "" {
		old, err := s.m.end(ctx, s.id, s.rec)
		if err != nil {
			s.failed = unavailable("destroy", err)
			return s.failed
		}
		if old != nil {
			s.m.hook(s.m.cfg.OnDestroy, ctx, s.id, old)
		}
	}
	s.rec, s.token, s.id, s.issued, s.loaded, s.failed = nil, "", "", false, true, nil
	s.ended = true
	s.resetPendingLocked()
	return nil
}
