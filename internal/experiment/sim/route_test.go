package sim

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

func TestFenwickDrawsInProportionToWeight(t *testing.T) {
	for _, w := range [][]float64{
		{1, 2, 3, 4},       // balanced enough: rejection
		{1000, 1, 0, 1, 1}, // skewed: the tree
		{0, 0, 5, 0, 0, 0}, // one weight
	} {
		f := newFenwick(len(w))
		for i, x := range w {
			f.add(i, x)
		}
		r := model.NewRand(1, 1)
		counts := make([]float64, len(w))
		const n = 200_000
		for range n {
			counts[f.draw(&r)]++
		}
		total := 0.0
		for _, x := range w {
			total += x
		}
		for i, x := range w {
			want := n * x / total
			if math.Abs(counts[i]-want) > 5*math.Sqrt(want)+1 {
				t.Errorf("weights %v: instance %d drawn %g times, want about %g", w, i, counts[i], want)
			}
		}
	}
	f := newFenwick(3)
	r := model.NewRand(1, 2)
	if f.draw(&r) != -1 {
		t.Error("all-zero weights must draw nothing")
	}
	f.add(1, 2)
	f.add(1, -2)
	if f.w[1] != 0 || f.draw(&r) != -1 {
		t.Error("a weight back to zero must not be drawn")
	}
}

func TestRosterPicksInProportionToRate(t *testing.T) {
	us := make([]user, 6)
	rates := []float32{0.1, 1, 1, 4, 19, 0.001}
	ro := newRoster(2, 20)
	for s, r := range rates {
		us[s] = user{rate: r, inst: 1, flags: flagLive, class: uint8(ro.class(r))}
		ro.add(us, 1, int32(s))
	}
	// A user that left, and one that moved away, must never be drawn.
	ro.remove(us, 1, 2)
	us[2].gen++
	us[2].flags = 0
	ro.remove(us, 1, 4)
	us[4].gen++
	us[4].inst = 0
	ro.add(us, 0, 4)
	r := model.NewRand(3, 3)
	counts := map[int32]float64{}
	const n = 100_000
	for range n {
		counts[ro.pick(&r, us, 1)]++
	}
	total := 0.1 + 1 + 4 + 0.001
	for s, rate := range map[int32]float64{0: 0.1, 1: 1, 3: 4} {
		want := n * rate / total
		if math.Abs(counts[s]-want) > 5*math.Sqrt(want) {
			t.Errorf("user %d (rate %g) drawn %g times, want about %g", s, rate, counts[s], want)
		}
	}
	if counts[2] != 0 || counts[4] != 0 {
		t.Errorf("stale entries drawn: left %g, moved %g", counts[2], counts[4])
	}
	if ro.pick(&r, us, 0) != 4 {
		t.Error("the moved user is not on its new instance")
	}
}

func TestDeparturesComeOutInOrder(t *testing.T) {
	d := newDepartures(60)
	r := model.NewRand(5, 5)
	var want []uint64
	now := 0.0
	push := func(at float64, slot int32) {
		k := packDeparture(at, slot)
		d.push(k)
		want = append(want, k)
	}
	for i := range 20_000 {
		push(r.Float64()*60, int32(i))
	}
	var got []uint64
	for i := 0; ; i++ {
		k, ok := d.min()
		if !ok {
			break
		}
		if p := d.pop(); p != k {
			t.Fatalf("pop %d after min %d", p, k)
		}
		at, _ := unpackDeparture(k)
		if at < now {
			t.Fatalf("departure at %g after %g", at, now)
		}
		now = at
		got = append(got, k)
		if i%3 == 0 && now < 59 { // departures pushed while others leave
			push(now+2e-6+r.Float64()*0.002, int32(100_000+i)) // later than now, some in the current bucket
			push(now+r.Float64()*5, int32(200_000+i))
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%d departures out, %d in, or out of order", len(got), len(want))
	}
}

func TestCompletionsGrowAndKeepOrder(t *testing.T) {
	var q completions
	for i := range 5000 {
		q.push(float64(i), int32(i))
	}
	e := &engine{hot: make([]hotInst, 5000), q: q}
	for i := range e.hot {
		e.hot[i].inflight = 1
		e.hot[i].candPos = -1
	}
	e.t = 2499.5
	e.completeUntil()
	if e.q.n != 2500 || e.hot[2499].inflight != 0 || e.hot[2500].inflight != 1 {
		t.Fatalf("completed %d, inflight at the boundary %d %d", 5000-e.q.n, e.hot[2499].inflight, e.hot[2500].inflight)
	}
}

// At any scale, store and cookie route every request one by one by p2c
// with the real in-flight counts (as the live balancer does), never the
// aggregate shortcut sticky takes at scale: forced "large" here, every
// request of theirs is still routed.
func TestUnpinnedArchitecturesRouteEveryRequestByLoad(t *testing.T) {
	for _, a := range []model.Arch{model.Store, model.Cookie} {
		if a.Policy != "p2c" || a.Sticky {
			t.Fatalf("%s: policy %q, sticky %v; want p2c and no pinning", a.Name, a.Policy, a.Sticky)
		}
		p := model.Quick()
		p.Users, p.Instances = 2000, 20
		res, err := simulate(context.Background(), &p, a, -1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !res.exact || res.routed == 0 {
			t.Fatalf("%s at scale: exact %v, %d requests routed one by one; want every request routed", a.Name, res.exact, res.routed)
		}
	}
}

// lb counts a progress stream as in flight until its job ends, so under
// p2c an instance holding more streams than the others loses every draw
// against them: of three instances, the one holding streams is either not
// drawn or drawn beside a less loaded one, and gets no short request.
func TestP2CSteersShortRequestsAwayFromHeldStreams(t *testing.T) {
	p := params(300, 3, 1)
	e := newEngine(&p, model.Store, true, false)
	for range 5 {
		e.openStream(0)
	}
	if e.hot[0].inflight != 5 || e.hot[0].streams != 5 || e.active != 5 {
		t.Fatalf("after 5 streams: inflight %d, streams %d, active %d", e.hot[0].inflight, e.hot[0].streams, e.active)
	}
	var got [3]int
	for range 30000 {
		got[e.pickNew(-1)]++
	}
	if got[0] != 0 || math.Abs(float64(got[1]-got[2])) > 600 {
		t.Errorf("short requests per instance with 5 streams on the first: %v; want none there, the rest even", got)
	}
	e.closeStream(0)
	if e.hot[0].inflight != 4 || e.hot[0].streams != 4 || e.active != 4 {
		t.Fatalf("after one closed: inflight %d, streams %d, active %d", e.hot[0].inflight, e.hot[0].streams, e.active)
	}
}

// Jobs wait in one FIFO for a free worker (JobWorkers per instance up)
// and their streams stay open, in flight, until the job ends.
func TestJobsQueueForWorkersAndHoldTheirStreams(t *testing.T) {
	p := params(300, 3, 1)
	e := newEngine(&p, model.Store, true, false)
	took := p.Script.UploadJob.Seconds()
	for k := range 7 {
		i := int32(k % 3)
		e.openStream(i)
		e.jobs.waiting.push(job{inst: i, slot: 0})
	}
	e.startJobs()
	if e.jobs.running.n != 3 || e.jobs.waiting.n != 4 {
		t.Fatalf("running %d, waiting %d; want 3 (one worker on each of 3 instances) and 4", e.jobs.running.n, e.jobs.waiting.n)
	}
	var ends []float64
	for {
		at, ok := e.jobs.nextEnd()
		if !ok {
			break
		}
		e.t = at
		e.endJob()
		ends = append(ends, at)
	}
	want := []float64{took, took, took, 2 * took, 2 * took, 2 * took, 3 * took}
	if len(ends) != len(want) {
		t.Fatalf("ends %v, want %v", ends, want)
	}
	for k := range want {
		if math.Abs(ends[k]-want[k]) > 1e-9 {
			t.Fatalf("ends %v, want %v", ends, want)
		}
	}
	for i := range 3 {
		if e.hot[i].inflight != 0 || e.hot[i].streams != 0 {
			t.Errorf("instance %d: inflight %d, streams %d after every job ended", i, e.hot[i].inflight, e.hot[i].streams)
		}
	}
	if e.active != 0 {
		t.Errorf("active %d after every job ended", e.active)
	}
}
