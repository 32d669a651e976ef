package sim

import (
	"math"
	"math/bits"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// pickP2C mirrors lb.P2C over the candidates cands, leaving out the one at
// index skip (-1: none), as lb's pick leaves out the backend a user is
// being moved off: two distinct candidates drawn at random, the one with
// the lower load wins, a tie goes to the first drawn. It returns -1 when
// there is no candidate.
func pickP2C(r *model.Rand, cands []int32, skip int, load func(int32) int64) int32 {
	a, b, ok := twoOf(r, cands, skip)
	switch {
	case !ok:
		return a
	case load(b) < load(a):
		return b
	}
	return a
}

// twoOf draws p2c's two distinct candidates, leaving out index skip; ok is
// false when there are fewer than two (a is then the only one, or -1).
func twoOf(r *model.Rand, cands []int32, skip int) (a, b int32, ok bool) {
	n := len(cands)
	if skip >= 0 {
		n--
	}
	at := func(k int) int32 {
		if skip >= 0 && k >= skip {
			k++
		}
		return cands[k]
	}
	switch n {
	case 0:
		return -1, -1, false
	case 1:
		return at(0), -1, false
	}
	// One 64-bit draw gives both indices (Lemire's method on each half;
	// the bias, below n / 2^32, is nothing at 10,000 instances).
	x := r.Uint64()
	i := int((x & 0xffffffff) * uint64(n) >> 32)
	j := int((x >> 32) * uint64(n-1) >> 32)
	if j >= i {
		j++
	}
	return at(i), at(j), true
}

// overCapacity mirrors lb's overloaded (and the Hash policy's capacity):
// a backend carrying inflight requests is over the bound when one more
// request would exceed ceil(c x (total+1) / n), total being the in-flight
// requests of the n backends that take new users, the new one counted.
func overCapacity(inflight, total int64, n int, c float64) bool {
	if n <= 0 {
		return false
	}
	capacity := c * float64(total+1) / float64(n)
	return float64(inflight+1) > math.Ceil(capacity)
}

// fenwick samples an instance in proportion to its weight (the request
// rate of the users pinned to it). When weights are balanced, as they are
// at scale, it draws by rejection in O(1): a uniform instance, kept with
// probability weight / max weight. Otherwise it descends a Fenwick tree of
// partial sums, rebuilt lazily after changes, in O(log n).
type fenwick struct {
	t     []float64 // 1-based partial sums, valid unless dirty
	w     []float64 // the weights themselves
	max   float64   // at least the largest weight
	sum   float64   // the weights' total, kept as they change
	dirty bool
}

func newFenwick(n int) *fenwick {
	return &fenwick{t: make([]float64, n+1), w: make([]float64, n)}
}

func (f *fenwick) add(i int, d float64) {
	f.w[i] += d
	if f.w[i] < 1e-9 { // rounding leftovers of a weight that went to zero
		d -= f.w[i]
		f.w[i] = 0
	}
	f.sum += d
	f.max = math.Max(f.max, f.w[i])
	f.dirty = true
}

// rebuild recomputes the partial sums, the total and the maximum from the
// weights, so rounding errors from millions of updates cannot pile up.
func (f *fenwick) rebuild() {
	clear(f.t)
	f.sum, f.max = 0, 0
	for i, w := range f.w {
		f.sum += w
		f.max = math.Max(f.max, w)
		k := i + 1
		f.t[k] += w
		if p := k + (k & -k); p < len(f.t) {
			f.t[p] += f.t[k]
		}
	}
	f.dirty = false
}

// draw returns an instance with probability weight / total, or -1 when
// all weights are zero.
func (f *fenwick) draw(r *model.Rand) int {
	n := len(f.w)
	if f.max > 0 && f.max*float64(n) <= 8*f.sum { // at most 8 tries expected
		for range 64 {
			// One 64-bit draw: the low half picks the instance
			// (Lemire), the high half is the acceptance uniform.
			x := r.Uint64()
			i := int((x & 0xffffffff) * uint64(n) >> 32)
			if float64(x>>32)*(1.0/(1<<32))*f.max < f.w[i] {
				return i
			}
		}
	}
	if f.dirty {
		f.rebuild()
	}
	return f.sample(r.Float64() * f.sum)
}

// sample returns the instance whose cumulative weight range holds x
// (0 <= x < total), or -1 when all weights are zero.
func (f *fenwick) sample(x float64) int {
	n := len(f.t) - 1
	pos := 0
	for step := 1 << (bits.Len(uint(n)) - 1); step > 0; step >>= 1 {
		if next := pos + step; next <= n && f.t[next] <= x {
			pos = next
			x -= f.t[next]
		}
	}
	if pos < n && f.w[pos] > 0 {
		return pos
	}
	for i := n - 1; i >= 0; i-- { // x fell past the end by rounding
		if f.w[i] > 0 {
			return i
		}
	}
	return -1
}

// roster lists each instance's users by rate class so that a user can be
// drawn in proportion to its rate in O(classes): the class by its summed
// rate, then an entry of the class, kept with probability rate / class
// top (at least one half: classes are factors of two wide). Entries carry
// the rate, so rejected draws never touch the user, and are deleted
// lazily: an entry is stale when its user left or moved since (the user's
// generation changed), is dropped when drawn, and lists are compacted
// when stale entries outnumber live ones. Leaving or moving costs O(1)
// and no list access: at scale, a spill is a handful of memory accesses.
type roster struct {
	classes int
	top     float64
	lists   [][]rosterEntry // [instance*classes + class]
	sums    []float64       // summed rates of live entries, same index
	live    []int32         // live entries, same index
}

type rosterEntry struct {
	slot int32
	rate float32
	gen  uint16
}

const rosterClasses = 16

func newRoster(instances int, top float64) *roster {
	k := instances * rosterClasses
	return &roster{classes: rosterClasses, top: top,
		lists: make([][]rosterEntry, k), sums: make([]float64, k), live: make([]int32, k)}
}

func (ro *roster) class(rate float32) int {
	c := ro.classes - 1 - int(math.Floor(math.Log2(ro.top/float64(rate))))
	return max(0, min(ro.classes-1, c))
}

func (ro *roster) upper(c int) float64 {
	return ro.top / math.Exp2(float64(ro.classes-1-c))
}

// add files user slot (already pinned to inst, with a fresh generation).
func (ro *roster) add(us []user, inst int32, slot int32) {
	u := &us[slot]
	k := int(inst)*ro.classes + int(u.class)
	l := ro.lists[k]
	if len(l) >= 64 && len(l) > 2*int(ro.live[k]) {
		l = ro.compact(us, inst, l)
	}
	ro.lists[k] = append(l, rosterEntry{slot: slot, rate: u.rate, gen: u.gen})
	ro.sums[k] += float64(u.rate)
	ro.live[k]++
}

// remove forgets user slot of inst; its entry goes stale (the caller
// changes the user's generation).
func (ro *roster) remove(us []user, inst int32, slot int32) {
	u := &us[slot]
	k := int(inst)*ro.classes + int(u.class)
	ro.live[k]--
	if ro.live[k] == 0 {
		ro.sums[k] = 0
		ro.lists[k] = ro.lists[k][:0]
	} else {
		ro.sums[k] -= float64(u.rate)
	}
}

func (ro *roster) compact(us []user, inst int32, l []rosterEntry) []rosterEntry {
	out := l[:0]
	for _, e := range l {
		if ro.valid(us, inst, e) {
			out = append(out, e)
		}
	}
	return out
}

func (ro *roster) valid(us []user, inst int32, e rosterEntry) bool {
	u := &us[e.slot]
	return u.flags&flagLive != 0 && u.gen == e.gen && u.inst == inst
}

// pickClass draws a rate class in proportion to its summed rate among
// those that hold someone (held); -1 when none does.
func pickClass(r *model.Rand, sums []float64, held func(c int) bool) int {
	total := 0.0
	for _, s := range sums {
		total += s
	}
	if !(total > 0) {
		return -1
	}
	x := r.Float64() * total
	for c, s := range sums {
		if x < s && held(c) {
			return c
		}
		x -= s
	}
	for c := len(sums) - 1; c >= 0; c-- { // rounding carried x past the end
		if held(c) {
			return c
		}
	}
	return -1
}

// pick draws one of inst's users in proportion to its rate; -1 if it has
// none.
func (ro *roster) pick(r *model.Rand, us []user, inst int32) int32 {
	base := int(inst) * ro.classes
	c := pickClass(r, ro.sums[base:base+ro.classes], func(c int) bool { return ro.live[base+c] > 0 })
	if c < 0 {
		return -1
	}
	up := ro.upper(c)
	for {
		l := ro.lists[base+c]
		i := r.IntN(len(l))
		e := l[i]
		if r.Float64()*up >= float64(e.rate) {
			continue // rejected on the entry's own rate: no user touched
		}
		if ro.valid(us, inst, e) {
			return e.slot
		}
		l[i] = l[len(l)-1] // stale: drop it
		ro.lists[base+c] = l[:len(l)-1]
	}
}

// completions is a FIFO of requests in flight, each done a fixed service
// time after it started, so they complete in the order they started.
type completions struct {
	ring []inFlight // a power of two long
	head int
	n    int
}

type inFlight struct {
	at   float64
	inst int32
}

func (q *completions) push(at float64, inst int32) {
	if q.n == len(q.ring) {
		q.grow()
	}
	q.ring[(q.head+q.n)&(len(q.ring)-1)] = inFlight{at, inst}
	q.n++
}

func (q *completions) grow() {
	ring := make([]inFlight, max(1024, 2*len(q.ring)))
	for i := range q.n {
		ring[i] = q.ring[(q.head+i)&(len(q.ring)-1)]
	}
	q.ring, q.head = ring, 0
}
