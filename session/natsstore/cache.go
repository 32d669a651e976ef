package natsstore

import (
	"container/list"
	"sync"
	"time"

	"github.com/unstuck-dev/unstuck/session"
)

// nearCache is a bounded LRU of records with a TTL, each with the
// bucket revision it was read or written at. The watch evicts an entry when
// it announces a newer revision; while a read or write of a key is in
// flight, the newest revision announced for it is tracked, so a slow read
// cannot insert data older than a change the watch already reported.
type nearCache struct {
	max int
	ttl time.Duration

	mu       sync.Mutex
	items    map[string]*list.Element
	lru      list.List
	inflight map[string]*tracker
}

type tracker struct {
	refs int
	seen uint64 // highest revision announced while in flight
}

type cached struct {
	id    string
	rec   *session.Record // nil: known not to exist
	rev   uint64          // the entry's revision in the bucket
	until time.Time
}

func newNearCache(max int, ttl time.Duration) *nearCache {
	return &nearCache{max: max, ttl: ttl, items: map[string]*list.Element{}, inflight: map[string]*tracker{}}
}

// track notes that a read or write of id is in flight until the returned
// function is called.
func (c *nearCache) track(id string) func() {
	c.mu.Lock()
	t := c.inflight[id]
	if t == nil {
		t = &tracker{}
		c.inflight[id] = t
	}
	t.refs++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		if t.refs--; t.refs == 0 {
			delete(c.inflight, id)
		}
		c.mu.Unlock()
	}
}

func (c *nearCache) get(id string) (*session.Record, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.items[id]
	if el == nil {
		return nil, 0, false
	}
	e := el.Value.(*cached)
	if time.Now().After(e.until) {
		c.lru.Remove(el)
		delete(c.items, id)
		return nil, 0, false
	}
	c.lru.MoveToFront(el)
	return e.rec, e.rev, true
}

// put caches r at revision rev, unless the watch announced a newer
// revision while the caller was in flight or the cache holds a newer one.
func (c *nearCache) put(id string, r *session.Record, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.inflight[id]; t != nil && t.seen > rev {
		return
	}
	if el := c.items[id]; el != nil && el.Value.(*cached).rev > rev {
		return
	}
	until := time.Now().Add(c.ttl)
	if r != nil && r.ExpiresAt().Before(until) {
		until = r.ExpiresAt()
	}
	if el := c.items[id]; el != nil {
		el.Value = &cached{id: id, rec: r, rev: rev, until: until}
		c.lru.MoveToFront(el)
		return
	}
	c.items[id] = c.lru.PushFront(&cached{id: id, rec: r, rev: rev, until: until})
	for c.lru.Len() > c.max {
		el := c.lru.Back()
		c.lru.Remove(el)
		delete(c.items, el.Value.(*cached).id)
	}
}

// evict drops id's entry on news of revision rev, unless the entry is that
// revision or newer (this store's own write, cached when it was made).
func (c *nearCache) evict(id string, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.inflight[id]; t != nil {
		t.seen = max(t.seen, rev)
	}
	el := c.items[id]
	if el != nil && el.Value.(*cached).rev >= rev {
		return
	}
	if el != nil {
		c.lru.Remove(el)
		delete(c.items, id)
	}
}
