package redisstore

import (
	"sync"
	"time"

	"github.com/unstuck-dev/unstuck/session"
)

// floors remembers this Store's own recent writes, so that its near cache
// never serves a copy older than them while Redis's invalidation message
// is still in flight. Entries matter only as long as a cache entry may
// live (NearCacheTTL); the map is bounded.
type floors struct {
	mu sync.Mutex
	m  map[string]floor
}

type floor struct {
	version uint64
	gone    bool
	until   time.Time
}

const maxFloors = 1 << 16

func (f *floors) note(id string, version uint64, gone bool, ttl time.Duration) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]floor{}
	}
	if len(f.m) >= maxFloors {
		for k, e := range f.m {
			if now.After(e.until) {
				delete(f.m, k)
			}
		}
		if len(f.m) >= maxFloors {
			// Under a write burst beyond the bound, fall back to
			// Redis's invalidation alone rather than grow.
			clear(f.m)
		}
	}
	e := f.m[id]
	e.version = max(e.version, version)
	e.gone = e.gone || gone
	e.until = now.Add(ttl)
	f.m[id] = e
}

// stale reports whether a cached record r is older than this Store's own
// last write to id.
func (f *floors) stale(id string, r *session.Record) bool {
	f.mu.Lock()
	e, ok := f.m[id]
	f.mu.Unlock()
	if !ok || time.Now().After(e.until) {
		return false
	}
	if e.gone {
		return r != nil
	}
	return r == nil || r.Version < e.version
}
