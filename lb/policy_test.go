package lb

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// testBackends makes backends with the given weights, named a, b, c, ...
// without dialling anything.
func testBackends(weights ...int) []*Backend {
	var bs []*Backend
	for i, w := range weights {
		u, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", 10000+i))
		bs = append(bs, newBackend(string(rune('a'+i)), u, w, false))
	}
	return bs
}

func picks(p Policy, bs []*Backend, n int, key func(i int) []byte) map[string]int {
	got := map[string]int{}
	for i := range n {
		var k []byte
		if key != nil {
			k = key(i)
		}
		got[p.Pick(bs, k).name]++
	}
	return got
}

func TestRoundRobinIsSmoothAndWeighted(t *testing.T) {
	bs := testBackends(5, 1, 1)
	p := &RoundRobin{}
	var seq strings.Builder
	for range 7 {
		seq.WriteString(p.Pick(bs, nil).name)
	}
	// nginx's smooth weighted round-robin sequence for 5:1:1.
	if seq.String() != "aabacaa" {
		t.Fatalf("sequence %q, want aabacaa", seq.String())
	}
	got := picks(p, bs, 700, nil)
	if got["a"] != 500 || got["b"] != 100 || got["c"] != 100 {
		t.Fatalf("700 picks: %v, want 500/100/100", got)
	}
}

func TestLeastConnPicksFewestInFlightPerWeight(t *testing.T) {
	bs := testBackends(1, 1, 2)
	bs[0].inflight.Store(3)
	bs[1].inflight.Store(1)
	bs[2].inflight.Store(3) // (3+1)/2 = 2 per weight, same as b's (1+1)/1
	p := &LeastConn{}
	got := picks(p, bs, 100, nil)
	if got["a"] != 0 || got["b"] == 0 || got["c"] == 0 {
		t.Fatalf("picks %v: a is most loaded, b and c tie and should share", got)
	}
	bs[1].inflight.Store(0)
	if b := p.Pick(bs, nil); b.name != "b" {
		t.Fatalf("picked %s, want the idle b", b.name)
	}
}

func TestP2CNeverPicksTheMoreLoadedOfTwo(t *testing.T) {
	bs := testBackends(1, 1)
	bs[0].inflight.Store(10)
	if got := picks(&P2C{}, bs, 200, nil); got["a"] != 0 {
		t.Fatalf("p2c sent %d of 200 to the loaded backend", got["a"])
	}
	// With latency on, equal in-flight loses to the faster backend.
	bs[0].inflight.Store(0)
	for range 20 {
		bs[0].observeLatency(200e6) // 200ms
		bs[1].observeLatency(1e6)   // 1ms
	}
	if got := picks(&P2C{Latency: true}, bs, 200, nil); got["a"] != 0 {
		t.Fatalf("p2c latency sent %d of 200 to the slow backend", got["a"])
	}
	// Three backends: the most loaded one is never chosen (it loses every pair).
	bs = testBackends(1, 1, 1)
	bs[2].inflight.Store(5)
	if got := picks(&P2C{}, bs, 300, nil); got["c"] != 0 || got["a"] == 0 || got["b"] == 0 {
		t.Fatalf("p2c over three: %v", got)
	}
}

func TestRandomFollowsWeights(t *testing.T) {
	bs := testBackends(3, 1)
	got := picks(Random{}, bs, 4000, nil)
	// Expect 3000/1000; the bound is more than 10 standard deviations wide.
	if got["a"] < 2700 || got["a"] > 3300 {
		t.Fatalf("random 3:1 over 4000: %v", got)
	}
}

func keyN(i int) []byte { return []byte(fmt.Sprintf("user-%d", i)) }

func TestHashIsStableAndMovesOnlyTheRemovedBackendsKeys(t *testing.T) {
	bs := testBackends(1, 1, 1, 1)
	p := &Hash{}
	owner := map[int]string{}
	counts := map[string]int{}
	for i := range 2000 {
		b := p.Pick(bs, keyN(i))
		owner[i] = b.name
		counts[b.name]++
		if again := p.Pick(bs, keyN(i)); again != b {
			t.Fatalf("key %d moved between picks", i)
		}
	}
	for _, b := range bs {
		if counts[b.name] < 350 || counts[b.name] > 650 {
			t.Fatalf("uneven spread over 4 backends: %v", counts)
		}
	}
	// Remove c: only c's keys move; the rest stay where they were.
	rest := []*Backend{bs[0], bs[1], bs[3]}
	for i := range 2000 {
		got := p.Pick(rest, keyN(i)).name
		if owner[i] != "c" && got != owner[i] {
			t.Fatalf("key %d moved from %s to %s though %s stayed", i, owner[i], got, owner[i])
		}
	}
	// A separate policy over separately made backends with the same names
	// (another balancer process) agrees on every key.
	other := testBackends(1, 1, 1, 1)
	for i := range 2000 {
		if got := (&Hash{}).Pick(other, keyN(i)).name; got != owner[i] {
			t.Fatalf("second instance sends key %d to %s, first to %s", i, got, owner[i])
		}
	}
}

func TestHashBoundedLoadSpillsHotKey(t *testing.T) {
	bs := testBackends(1, 1, 1)
	p := &Hash{Factor: 1.25}
	key := []byte("hot")
	home := p.Pick(bs, key)
	// The home backend carries 10 in flight, the others none: capacity is
	// ceil(1.25*(10+1)/3) = 5, so the key goes to its second choice.
	home.inflight.Store(10)
	second := p.Pick(bs, key)
	if second == home {
		t.Fatalf("hot key stayed on %s carrying 10 of 10 in flight", home.name)
	}
	if again := p.Pick(bs, key); again != second {
		t.Fatalf("spilled key is not deterministic: %s then %s", second.name, again.name)
	}
	home.inflight.Store(0)
	if back := p.Pick(bs, key); back != home {
		t.Fatalf("key did not return home once load fell: %s", back.name)
	}
}
