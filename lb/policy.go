package lb

import (
	"math"
	"math/rand/v2"
	"sync"
)

// Policy picks a backend for a request that no valid sticky cookie pins.
// backends is never empty and holds only backends eligible for new users.
// key is what policy.key names (the client IP by default) for the hash
// policy and for a Policy given in Options; it is nil for the others. A
// Policy must be safe for concurrent use.
type Policy interface {
	Pick(backends []*Backend, key []byte) *Backend
}

// Policy names, as policy.name and --policy take them.
const (
	PolicyRoundRobin = "round-robin"
	PolicyLeastConn  = "least-conn"
	PolicyP2C        = "p2c"
	PolicyRandom     = "random"
	PolicyHash       = "hash"
)

// policyKind is a built-in policy: its name, whether Pick wants the
// request's key, and how to build it from the policy section, checking
// the options it reads (an error names the field).
type policyKind struct {
	name  string
	keyed bool
	build func(PolicyConfig) (Policy, error)
}

// policyKinds is the one list of built-in policies: config validation,
// its error message and the balancer read it, so a new policy is a type
// below and an entry here. An embedding program brings its own through
// Options.Policy instead.
var policyKinds = []policyKind{
	{name: PolicyRoundRobin, build: func(PolicyConfig) (Policy, error) { return &RoundRobin{}, nil }},
	{name: PolicyLeastConn, build: func(PolicyConfig) (Policy, error) { return &LeastConn{}, nil }},
	{name: PolicyP2C, build: func(c PolicyConfig) (Policy, error) { return &P2C{Latency: c.Latency}, nil }},
	{name: PolicyRandom, build: func(PolicyConfig) (Policy, error) { return Random{}, nil }},
	{name: PolicyHash, keyed: true, build: func(c PolicyConfig) (Policy, error) {
		k, err := parseHashKey(c.Key)
		if err != nil {
			return nil, fieldErr("policy.key", "%v", err)
		}
		return &Hash{Key: k, Factor: c.Factor}, nil
	}},
}

// policyKindOf finds the built-in policy called name ("" is the default,
// round-robin).
func policyKindOf(name string) (policyKind, bool) {
	if name == "" {
		name = PolicyRoundRobin
	}
	for _, k := range policyKinds {
		if k.name == name {
			return k, true
		}
	}
	return policyKind{}, false
}

// PolicyNames returns the names of the built-in policies, as policy.name
// takes them.
func PolicyNames() []string {
	names := make([]string, len(policyKinds))
	for i, k := range policyKinds {
		names[i] = k.name
	}
	return names
}

// Compile-time checks that every policy is a Policy.
var (
	_ Policy = (*RoundRobin)(nil)
	_ Policy = (*LeastConn)(nil)
	_ Policy = (*P2C)(nil)
	_ Policy = (*Random)(nil)
	_ Policy = (*Hash)(nil)
)

// RoundRobin is nginx's smooth weighted round-robin: over any window of
// sum(weights) picks each backend gets its weight's share, and the picks of
// a heavy backend are spread out rather than bunched.
type RoundRobin struct {
	mu  sync.Mutex
	cur map[*Backend]float64 // each backend's current weight
}

// Pick implements Policy.
func (p *RoundRobin) Pick(backends []*Backend, _ []byte) *Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || len(p.cur) > 2*len(backends)+16 {
		p.cur = make(map[*Backend]float64, len(backends)) // forget removed backends
	}
	var best *Backend
	bestCur, total := 0.0, 0.0
	for _, b := range backends {
		w := b.effectiveWeight()
		c := p.cur[b] + w
		p.cur[b] = c
		total += w
		if best == nil || c > bestCur {
			best, bestCur = b, c
		}
	}
	p.cur[best] = bestCur - total
	return best
}

// LeastConn picks the backend with the fewest in-flight requests relative
// to its weight; ties go round the list so equal backends share evenly.
type LeastConn struct {
	mu   sync.Mutex
	next int
}

// Pick implements Policy.
func (p *LeastConn) Pick(backends []*Backend, _ []byte) *Backend {
	p.mu.Lock()
	start := p.next
	p.next++
	p.mu.Unlock()
	n := len(backends)
	var best *Backend
	bestLoad := math.Inf(1)
	for i := range n {
		b := backends[(start+i)%n]
		if l := b.load(); l < bestLoad {
			best, bestLoad = b, l
		}
	}
	return best
}

// P2C is power-of-two-choices: two backends drawn at random, the less loaded
// wins. Load is in-flight requests over weight or, with Latency, that times
// the backend's latency EWMA (Envoy's least-request). It needs no lock and
// avoids least-conn's herd onto one freshly idle backend.
type P2C struct {
	// Latency weighs in-flight load by each backend's latency EWMA.
	Latency bool
}

// Pick implements Policy.
func (p *P2C) Pick(backends []*Backend, _ []byte) *Backend {
	n := len(backends)
	if n == 1 {
		return backends[0]
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := backends[i], backends[j]
	la, lb := a.load(), b.load()
	if p.Latency {
		la *= a.latencyScore()
		lb *= b.latencyScore()
	}
	if lb < la {
		return b
	}
	return a
}

// Random picks a backend at random, in proportion to weight.
type Random struct{}

// Pick implements Policy.
func (Random) Pick(backends []*Backend, _ []byte) *Backend {
	total := 0.0
	for _, b := range backends {
		total += b.effectiveWeight()
	}
	x := rand.Float64() * total
	for _, b := range backends {
		x -= b.effectiveWeight()
		if x < 0 {
			return b
		}
	}
	return backends[len(backends)-1]
}

// DefaultBalanceFactor is c in consistent hashing with bounded loads: a key
// leaves its backend only when that backend carries more than c times the
// average in-flight load.
const DefaultBalanceFactor = 1.25

// Hash is consistent hashing with bounded loads (Mirrokni et al.,
// arXiv:1608.01350) over rendezvous (highest random weight) hashing: each
// key ranks the backends by a weighted hash score and takes the first one
// whose in-flight load is within Factor times the average. Adding or
// removing a backend moves only the keys that ranked it first, and no
// backend is crushed by a hot key.
type Hash struct {
	// Key says what is hashed: the client IP, a header or a cookie.
	Key HashKey
	// Factor is c, the load bound; zero means DefaultBalanceFactor. Values
	// at or below 1 are taken as DefaultBalanceFactor.
	Factor float64
}

// HashKey names what the Hash policy hashes.
type HashKey struct {
	// Source is "ip" (the default), "header" or "cookie".
	Source string
	// Name is the header or cookie name.
	Name string
}

func (p *Hash) factor() float64 {
	if p.Factor <= 1 {
		return DefaultBalanceFactor
	}
	return p.Factor
}

// Pick implements Policy.
func (p *Hash) Pick(backends []*Backend, key []byte) *Backend {
	if len(backends) == 1 {
		return backends[0]
	}
	kh := fnv64(key)
	// Capacity per backend: ceil(c * (total in-flight + 1) / n), counting
	// the request being placed, as in the paper.
	total := 0.0
	weights := 0.0
	for _, b := range backends {
		total += float64(b.inflight.Load())
		weights += b.effectiveWeight()
	}
	c := p.factor()
	// Rank by score; n is small, so a selection pass per rank is fine and
	// allocates nothing.
	var prev *Backend
	prevScore := math.Inf(1)
	for range backends {
		var best *Backend
		bestScore := math.Inf(-1)
		for _, b := range backends {
			s := hrwScore(kh, b)
			if ranksBefore(prev, prevScore, b, s) && (best == nil || ranksBefore(b, s, best, bestScore)) {
				best, bestScore = b, s
			}
		}
		if best == nil {
			break
		}
		share := best.effectiveWeight() / weights
		capacity := math.Ceil(c * (total + 1) * share)
		if float64(best.inflight.Load())+1 <= capacity {
			return best
		}
		prev, prevScore = best, bestScore
	}
	// Everyone is at capacity (only possible with rounding); least loaded.
	return (&LeastConn{}).Pick(backends, nil)
}

// ranksBefore orders backends by descending score, then name, so the rank
// is total and the same in every process. A nil a ranks before everything.
func ranksBefore(a *Backend, sa float64, b *Backend, sb float64) bool {
	if a == nil {
		return true
	}
	return sa > sb || (sa == sb && a.name < b.name)
}

// hrwScore is the weighted rendezvous score -w/ln(u) with u uniform in (0,1)
// from the key and backend name hashes: the backend with the highest score
// owns the key, in proportion to weight.
func hrwScore(kh uint64, b *Backend) float64 {
	h := mix64(kh ^ b.nameHash)
	u := (float64(h>>11) + 0.5) / (1 << 53)
	return -b.effectiveWeight() / math.Log(u)
}

func fnv64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// mix64 is the splitmix64 finaliser: it spreads similar inputs apart.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
