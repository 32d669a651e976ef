package sim

import (
	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// tokens is affinity's pinning at scale without user identity: how many
// users of each rate class each instance holds, and their summed rate.
//
// Why it is faithful: affinity's bounded-load spill re-pins a user on a
// large share of its requests (see the report), so where a user is says
// next to nothing about how long it has been logged in; users of one rate
// class on one instance are then exchangeable, and a spill may move "one
// user of class c" (class chosen in proportion to its rate, as the
// requesting user would be) and a departure may leave from an instance
// drawn in proportion to its class-c users. What it saves: at ten million
// users a spill is a few cache-resident counters instead of several
// random accesses into a quarter-gigabyte user table. The report's
// cross-check runs both at the same scale (TestTokensAgreeWithUsers).
type tokens struct {
	ro   *roster   // for the class boundaries only
	inst []tokInst // per instance
	// low is each instance's summed rate of the classes in its block's
	// first cache line (below lowClasses), so that a spill, whose class
	// is nearly always a higher one, reads only the second line.
	low   []float64
	total []float64 // users per class, all instances
	most  []int32   // per class, at least the most users one instance holds
}

// tokInst is one instance's users by class, in two cache lines: a spill
// scans them, a login or an arrival by spill touches one. At ten
// thousand instances every instance touched is a cache miss, so the
// layout is the cost. The sums are float32: a cell's sum starts afresh
// each time its last user leaves, so rounding never builds up beyond a
// relative 1e-4, far below the model's own noise.
type tokInst [rosterClasses]tokCell

type tokCell struct {
	sum float32
	cnt int32
}

// lowClasses is how many cells fill a block's first cache line (the
// blocks are 128 bytes in an array the allocator aligns to pages).
const lowClasses = 64 / 8

func newTokens(instances int, top float64) *tokens {
	ro := &roster{classes: rosterClasses, top: top}
	return &tokens{ro: ro, inst: make([]tokInst, instances), low: make([]float64, instances),
		total: make([]float64, ro.classes), most: make([]int32, ro.classes)}
}

func (t *tokens) class(rate float32) int { return t.ro.class(rate) }

// add pins one user of class c and rate r to instance i.
func (t *tokens) add(i int32, c int, r float64) {
	k := &t.inst[i][c]
	k.cnt++
	k.sum += float32(r)
	if c < lowClasses {
		t.low[i] += float64(float32(r))
	}
	t.most[c] = max(t.most[c], k.cnt)
	t.total[c]++
}

// take unpins one user of class c from instance i, with rate r at most
// what the instance holds, and returns the rate removed.
func (t *tokens) take(i int32, c int, r float64) float64 {
	k := &t.inst[i][c]
	if k.cnt <= 1 {
		r = float64(k.sum) // the last one takes what is left: no rounding residue
		k.sum = 0
	} else {
		r = min(r, float64(k.sum))
		k.sum -= float32(r)
	}
	if c < lowClasses {
		t.low[i] = max(0, t.low[i]-float64(float32(r)))
	}
	k.cnt--
	t.total[c]--
	return r
}

// leave picks the instance a departing user of class c leaves from, in
// proportion to the class's users there, by rejection (a uniform
// instance, kept with probability its count over the most any holds);
// -1 if none is pinned.
func (t *tokens) leave(r *model.Rand, c int) int32 {
	if t.total[c] < 1 {
		return -1
	}
	n := len(t.inst)
	for {
		x := r.Uint64()
		i := int((x & 0xffffffff) * uint64(n) >> 32)
		if float64(x>>32)*(1.0/(1<<32))*float64(t.most[c]) < float64(t.inst[i][c].cnt) {
			return int32(i)
		}
	}
}

// tighten recomputes each class's most users on one instance (it only
// grows between calls, and a loose bound costs rejected draws) and each
// instance's low sum from its cells, so rounding cannot pile up in it.
func (t *tokens) tighten() {
	clear(t.most)
	for i := range t.inst {
		low := 0.0
		for c, k := range t.inst[i] {
			t.most[c] = max(t.most[c], k.cnt)
			if c < lowClasses {
				low += float64(k.sum)
			}
		}
		t.low[i] = low
	}
}

// spillClass picks the class of the user a request at i comes from, in
// proportion to the class's summed rate; -1 if i holds nobody. It draws
// one uniform, as it always has, and walks the classes from the top:
// any order picks each class with probability its sum over the total,
// and from the top, with the low classes' total kept aside (low), the
// walk nearly always ends in the block's second cache line (the classes
// below lowClasses hold users under 1/128 of the top rate, a sliver of
// the requests): at ten thousand instances the first line would be one
// more cache miss on every spill.
func (t *tokens) spillClass(r *model.Rand, i int32) int {
	ti := &t.inst[i]
	high := 0.0
	for c := lowClasses; c < len(ti); c++ {
		high += float64(ti[c].sum)
	}
	total := high + t.low[i]
	if !(total > 0) {
		return -1
	}
	x := r.Float64() * total
	for c := len(ti) - 1; c >= 0; c-- {
		k := &ti[c]
		s := float64(k.sum)
		if x < s && k.cnt > 0 {
			return c
		}
		x -= s
	}
	for c := len(ti) - 1; c >= 0; c-- { // rounding carried x past the end
		if ti[c].cnt > 0 {
			return c
		}
	}
	return -1
}

// mean is the mean rate of class c's users at i.
func (t *tokens) mean(i int32, c int) float64 {
	k := &t.inst[i][c]
	if k.cnt == 0 {
		return 0
	}
	return float64(k.sum) / float64(k.cnt)
}

// held returns how many users of class c instance i holds.
func (t *tokens) held(i int32, c int) int32 { return t.inst[i][c].cnt }
