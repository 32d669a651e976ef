// Package memstore is a session.Store in the process's memory: for a single
// instance, for tests, and for a sticky deployment where each instance
// serves its own users. It is bounded: past MaxSessions it evicts the least
// recently used session.
package memstore

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/unstuck-dev/unstuck/session"
)

// Options configures a Store. The zero value is usable.
type Options struct {
	// MaxSessions bounds the number of records (tombstones included);
	// past it the least recently used one is evicted. Default 100000.
	MaxSessions int
	// CleanupInterval is how often the janitor drops expired records.
	// Default 1m. Expired records are never returned in between.
	CleanupInterval time.Duration
}

// Store is an in-memory session.Store. Close it to stop its janitor.
type Store struct {
	max int

	mu    sync.Mutex
	items map[string]*list.Element // of *entry
	lru   *list.List               // front: most recently used
	users map[string]map[string]struct{}

	onExpire []func(string, *session.Record)
	expired  []*entry // dropped under the lock, reported after it

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type entry struct {
	id      string
	rec     *session.Record // nil for a tombstone
	expires time.Time
}

var (
	_ session.Store          = (*Store)(nil)
	_ session.ExpiryNotifier = (*Store)(nil)
)

// New returns a Store and starts its janitor.
func New(o Options) *Store {
	if o.MaxSessions <= 0 {
		o.MaxSessions = 100_000
	}
	if o.CleanupInterval <= 0 {
		o.CleanupInterval = time.Minute
	}
	s := &Store{
		max:   o.MaxSessions,
		items: map[string]*list.Element{},
		lru:   list.New(),
		users: map[string]map[string]struct{}{},
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go s.janitor(o.CleanupInterval)
	return s
}

// Close stops the janitor and waits for it. The store stays usable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

func (s *Store) janitor(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			for el := s.lru.Back(); el != nil; {
				prev := el.Prev()
				if e := el.Value.(*entry); !now.Before(e.expires) {
					s.expireLocked(el)
				}
				el = prev
			}
			s.unlockAndNotify()
		}
	}
}

// Len reports how many records (tombstones included) the store holds.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.unlockAndNotify()
	return s.lru.Len()
}

// getLocked returns id's element, dropping it if it has expired.
func (s *Store) getLocked(id string) *list.Element {
	el := s.items[id]
	if el == nil {
		return nil
	}
	if !time.Now().Before(el.Value.(*entry).expires) {
		s.expireLocked(el)
		return nil
	}
	return el
}

// expireLocked removes an expired entry and queues it for the expiry
// callbacks, which run after the lock is released.
func (s *Store) expireLocked(el *list.Element) {
	if e := el.Value.(*entry); e.rec != nil && len(s.onExpire) > 0 {
		s.expired = append(s.expired, e)
	}
	s.removeLocked(el)
}

func (s *Store) unlockAndNotify() {
	expired, fns := s.expired, s.onExpire
	s.expired = nil
	s.mu.Unlock()
	for _, e := range expired {
		for _, f := range fns {
			f(e.id, e.rec.Clone())
		}
	}
}

// NotifyExpired implements session.ExpiryNotifier: f learns of every
// session the store drops because it expired (not of evictions or deletes).
func (s *Store) NotifyExpired(f func(id string, r *session.Record)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onExpire = append(s.onExpire, f)
}

func (s *Store) removeLocked(el *list.Element) {
	e := el.Value.(*entry)
	s.lru.Remove(el)
	delete(s.items, e.id)
	if e.rec != nil {
		s.unindexLocked(e.rec.UserID, e.id)
	}
}

func (s *Store) unindexLocked(user, id string) {
	if user == "" {
		return
	}
	if set := s.users[user]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(s.users, user)
		}
	}
}

// Load implements session.Store.
func (s *Store) Load(_ context.Context, id string) (*session.Record, error) {
	s.mu.Lock()
	defer s.unlockAndNotify()
	el := s.getLocked(id)
	if el == nil {
		return nil, nil
	}
	e := el.Value.(*entry)
	if e.rec == nil {
		return nil, nil
	}
	s.lru.MoveToFront(el)
	return e.rec.Clone(), nil
}

// Commit implements session.Store.
func (s *Store) Commit(_ context.Context, id string, c session.Change) (uint64, error) {
	s.mu.Lock()
	defer s.unlockAndNotify()
	el := s.getLocked(id)
	var cur *session.Record
	if el != nil {
		cur = el.Value.(*entry).rec
		if cur == nil { // tombstone
			if c.Create {
				return 0, session.ErrConflict
			}
			return 0, session.ErrGone
		}
	}
	next, err := c.Apply(cur)
	if err != nil {
		return 0, err
	}
	if cur != nil && cur.UserID != next.UserID {
		s.unindexLocked(cur.UserID, id)
	}
	if next.UserID != "" {
		set := s.users[next.UserID]
		if set == nil {
			set = map[string]struct{}{}
			s.users[next.UserID] = set
		}
		set[id] = struct{}{}
	}
	s.putLocked(el, &entry{id: id, rec: next, expires: next.ExpiresAt()})
	return next.Version, nil
}

func (s *Store) putLocked(el *list.Element, e *entry) {
	if el != nil {
		el.Value = e
		s.lru.MoveToFront(el)
		return
	}
	s.items[e.id] = s.lru.PushFront(e)
	for s.lru.Len() > s.max {
		s.removeLocked(s.lru.Back())
	}
}

// Delete implements session.Store.
func (s *Store) Delete(_ context.Context, id string) (*session.Record, error) {
	s.mu.Lock()
	defer s.unlockAndNotify()
	el := s.getLocked(id)
	if el == nil || el.Value.(*entry).rec == nil {
		return nil, nil
	}
	old := el.Value.(*entry).rec
	s.unindexLocked(old.UserID, id)
	s.putLocked(el, &entry{id: id, expires: old.ExpiresAt()})
	return old, nil
}

// UserSessions implements session.Store.
func (s *Store) UserSessions(_ context.Context, userID string) ([]string, error) {
	s.mu.Lock()
	defer s.unlockAndNotify()
	ids := make([]string, 0, len(s.users[userID]))
	for id := range s.users[userID] {
		ids = append(ids, id)
	}
	return ids, nil
}
