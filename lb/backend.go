package lb

import (
	"context"
	"math"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

// Backend states as the admin API and metrics report them.
const (
	StateUp       = "up"
	StateDown     = "down"     // active health checks fail
	StateEjected  = "ejected"  // passive checks ejected it for a while
	StateDraining = "draining" // no new users; pinned users keep coming
	StateDrained  = "drained"  // nobody is sent to it any more
)

// Backend is one app instance as the balancer sees it. Policies read its
// load through the methods below; everything else is the balancer's.
type Backend struct {
	name      string
	url       *url.URL
	source    string        // the DNS discovery URL it came from, or ""
	tlsName   string        // for a discovered https backend: the name to verify
	sendProxy bool          // PROXY v2 header on each connection (BackendConfig.SendProxy)
	weightW   atomic.Uint64 // configured weight, float64 bits (a reload may change it)
	nameHash  uint64
	up        *proxy.Upstream

	inflight  atomic.Int64
	total     atomic.Uint64
	ewmaBits  atomic.Uint64 // latency EWMA in seconds, float64 bits
	effWBits  atomic.Uint64 // weight after slow start, float64 bits
	healthy   atomic.Bool   // active checks (true when there are none)
	ejectedTo atomic.Int64  // unix nanos the ejection ends; 0 = none
	draining  atomic.Bool
	drained   atomic.Bool
	lastPin   atomic.Int64 // unix nanos of the last pinned request
	wsOpen    atomic.Int64

	consecFails atomic.Int32 // passive failures in a row

	// users maps pinned user ids to when they were last seen (unix nanos),
	// sharded by id so concurrent requests rarely share a lock.
	users [userShards]userShard

	bm       *backendMetrics
	done     func(proxy.Outcome) // made once, so routing allocates no closure
	onTunnel func(*proxy.Tunnel)

	mu         sync.Mutex
	ejections  int       // how many times in a row it was ejected
	ejectEnd   time.Time // end of the last ejection, to forget old ones
	rampFrom   time.Time // slow start began; zero when not ramping
	drainStart time.Time
	removing   bool // DELETE: remove once drained
	removed    bool
	tunnels    map[*proxy.Tunnel]struct{}
	stopHealth context.CancelFunc
	healthCfg  ActiveHealthConfig
}

func newBackend(name string, u *url.URL, weight int, sendProxy bool) *Backend {
	opts := proxy.UpstreamOptions{SendProxy: sendProxy}
	if u.Scheme == "https" {
		opts.TLSServerName = u.Hostname()
	}
	b := &Backend{
		name:      name,
		url:       u,
		nameHash:  mix64(fnv64([]byte(name))),
		up:        proxy.NewUpstream(name, u.Host, opts),
		sendProxy: sendProxy,
		tunnels:   map[*proxy.Tunnel]struct{}{},
	}
	b.healthy.Store(true)
	b.weightW.Store(math.Float64bits(float64(weight)))
	b.effWBits.Store(math.Float64bits(float64(weight)))
	return b
}

// Name is the backend's name.
func (b *Backend) Name() string { return b.name }

// URL is the backend's URL.
func (b *Backend) URL() string { return b.url.String() }

// InFlight is the number of requests the backend is serving now.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Weight is the configured weight scaled down while slow start ramps.
func (b *Backend) Weight() float64 { return b.effectiveWeight() }

// Latency is the backend's response-time EWMA.
func (b *Backend) Latency() time.Duration {
	return time.Duration(math.Float64frombits(b.ewmaBits.Load()) * float64(time.Second))
}

func (b *Backend) baseWeight() float64 { return math.Float64frombits(b.weightW.Load()) }

func (b *Backend) effectiveWeight() float64 { return math.Float64frombits(b.effWBits.Load()) }

// load is in-flight requests (counting the one being placed) per unit of
// weight: what least-conn and p2c compare.
func (b *Backend) load() float64 {
	return float64(b.inflight.Load()+1) / b.effectiveWeight()
}

// latencyScore multiplies load in p2c's latency mode; a backend with no
// samples yet scores as a fast one, so it gets traffic and samples.
func (b *Backend) latencyScore() float64 {
	return 1 + math.Float64frombits(b.ewmaBits.Load())*1000
}

const ewmaAlpha = 0.2

func (b *Backend) observeLatency(d time.Duration) {
	s := d.Seconds()
	for {
		old := b.ewmaBits.Load()
		o := math.Float64frombits(old)
		n := s
		if o != 0 {
			n = o + ewmaAlpha*(s-o)
		}
		if b.ewmaBits.CompareAndSwap(old, math.Float64bits(n)) {
			return
		}
	}
}

// ejected reports whether a passive ejection is in force at now.
func (b *Backend) ejected(now int64) bool {
	t := b.ejectedTo.Load()
	return t != 0 && now < t
}

// serving reports whether the backend may take requests at all (new or
// pinned users), ignoring drain.
func (b *Backend) serving(now int64) bool {
	return b.healthy.Load() && !b.ejected(now)
}

// state is the admin API's view.
func (b *Backend) state(now int64) string {
	switch {
	case b.drained.Load():
		return StateDrained
	case !b.healthy.Load():
		return StateDown
	case b.ejected(now):
		return StateEjected
	case b.draining.Load():
		return StateDraining
	}
	return StateUp
}

// notePinned records a request of a pinned user, for drain idleness and
// the "users pinned recently" count (user 0: not counted).
func (b *Backend) notePinned(user uint64, now int64) {
	b.lastPin.Store(now)
	if user == 0 {
		return
	}
	sh := &b.users[(user>>8)%userShards] // the low bit is always 1
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = map[uint64]int64{}
	}
	if _, ok := sh.m[user]; ok || len(sh.m) < maxTrackedUsers/userShards {
		sh.m[user] = now
	}
	sh.mu.Unlock()
}

const userShards = 16

type userShard struct {
	mu sync.Mutex
	m  map[uint64]int64
}

// maxTrackedUsers bounds the memory spent counting pinned users per
// backend; beyond it the count saturates until old entries expire.
const maxTrackedUsers = 160_000

// recentUsers counts users pinned within window, forgetting older ones.
func (b *Backend) recentUsers(now int64, window time.Duration) int {
	cut := now - int64(window)
	n := 0
	for i := range b.users {
		sh := &b.users[i]
		sh.mu.Lock()
		for u, t := range sh.m {
			if t < cut {
				delete(sh.m, u)
			}
		}
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func (b *Backend) addTunnel(t *proxy.Tunnel) {
	b.mu.Lock()
	b.tunnels[t] = struct{}{}
	b.mu.Unlock()
	b.wsOpen.Add(1)
}

func (b *Backend) removeTunnel(t *proxy.Tunnel) {
	b.mu.Lock()
	if _, ok := b.tunnels[t]; ok {
		delete(b.tunnels, t)
		b.wsOpen.Add(-1)
	}
	b.mu.Unlock()
}

func (b *Backend) tunnelList() []*proxy.Tunnel {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := make([]*proxy.Tunnel, 0, len(b.tunnels))
	for t := range b.tunnels {
		l = append(l, t)
	}
	return l
}

// updateWeight recomputes the slow-start weight at now.
func (b *Backend) updateWeight(now time.Time, window time.Duration) {
	b.mu.Lock()
	from := b.rampFrom
	b.mu.Unlock()
	base := b.baseWeight()
	w := base
	if window > 0 && !from.IsZero() {
		el := now.Sub(from)
		switch {
		case el < 0:
			w = base * 0.1
		case el < window:
			w = base * math.Max(0.1, float64(el)/float64(window))
		default:
			b.mu.Lock()
			if b.rampFrom.Equal(from) {
				b.rampFrom = time.Time{}
			}
			b.mu.Unlock()
		}
	}
	b.effWBits.Store(math.Float64bits(w))
}

// setWeight changes the configured weight (a reload) and recomputes the
// slow-start weight at now.
func (b *Backend) setWeight(weight int, now time.Time, window time.Duration) {
	b.weightW.Store(math.Float64bits(float64(weight)))
	b.updateWeight(now, window)
}

// startRamp begins slow start at from (now, or when an ejection ends).
func (b *Backend) startRamp(from time.Time, window time.Duration) {
	if window <= 0 {
		return
	}
	b.mu.Lock()
	b.rampFrom = from
	b.mu.Unlock()
	b.updateWeight(time.Now(), window)
}
