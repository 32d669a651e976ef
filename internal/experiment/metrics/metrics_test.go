package metrics

import (
	"math"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/workload"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func req(inst string, sched, took time.Duration, status int) workload.Request {
	return workload.Request{Op: "browse", Scheduled: at(sched), Sent: at(sched), Done: at(sched + took), Instance: inst, Status: status}
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// TestCollectorPhases checks that requests and losses land in the phase of
// their scheduled (or seen) time and that the figures are computed from
// them: percentiles, errors by kind, throughput.
func TestCollectorPhases(t *testing.T) {
	c := NewCollector(t0, []Span{{"steady", 0, 2 * time.Second}, {"crash", 2 * time.Second, 4 * time.Second}})
	// steady: 100 answers taking 1..100 ms.
	for i := 1; i <= 100; i++ {
		c.Request(req("app-1", time.Duration(i)*10*time.Millisecond, time.Duration(i)*time.Millisecond, 200))
	}
	// crash: a slow answer scheduled in steady but answered in crash
	// counts in steady; failures and a 401 in crash.
	c.Request(req("app-2", 1900*time.Millisecond, 3*time.Second, 200))
	c.Request(req("", 2500*time.Millisecond, time.Second, 0))
	c.Request(workload.Request{Scheduled: at(2600 * time.Millisecond), Done: at(2700 * time.Millisecond), Status: 0, Err: "timeout"})
	c.Request(req("app-2", 2600*time.Millisecond, time.Millisecond, 503))
	c.Request(req("app-2", 2600*time.Millisecond, time.Millisecond, 401))
	c.Request(workload.Request{Scheduled: at(3 * time.Second), Done: at(3 * time.Second), Instance: "app-2", Status: 200, Stream: true})
	c.Loss(workload.SessionLost, 2, at(2100*time.Millisecond))
	c.Loss(workload.CartItemsLost, 5, at(2100*time.Millisecond))
	c.Loss(workload.UploadsUnfinished, 1, at(10*time.Second)) // after the end: last phase

	total, phases, series := c.Build(Input{})
	st, cr := phases["steady"], phases["crash"]
	if st.Requests != 101 || st.Errors != 0 {
		t.Fatalf("steady: %d requests, %d errors; want 101, 0", st.Requests, st.Errors)
	}
	if !near(*st.P50ms, 51, 1) || *st.MaxMs < 3000 {
		t.Errorf("steady p50 %.2f ms (want ~51), max %.0f ms (want the 3 s one)", *st.P50ms, *st.MaxMs)
	}
	if cr.Errors != 3 || cr.ErrorsByStatus["503"] != 1 || cr.ErrorsByStatus["timeout"] != 1 || cr.ErrorsByStatus["error"] != 1 || cr.ErrorsByStatus["401"] != 1 {
		t.Errorf("crash errors %d by status %v; want 3 (a 503, a timeout, an unnamed failure) and the 401 listed apart", cr.Errors, cr.ErrorsByStatus)
	}
	if cr.Streams != 1 || cr.SessionsLost != 2 || cr.CartItemsLost != 5 || cr.UploadsUnfinished != 1 {
		t.Errorf("crash: %+v", cr)
	}
	if total.Requests != st.Requests+cr.Requests || total.SessionsLost != 2 {
		t.Errorf("total %+v does not add the phases up", total)
	}
	if !near(st.ThroughputRPS, 50.5, 0.01) {
		t.Errorf("steady throughput %.2f, want 101 answers / 2 s", st.ThroughputRPS)
	}
	if len(series.LatencyP99ms) < 3 || series.ErrorsPerS[2] != 3 {
		t.Errorf("series: p99 %v, errors/s %v", series.LatencyP99ms, series.ErrorsPerS)
	}
}

// load feeds n answered requests by inst, done in [from, to).
func load(c *Collector, inst string, n int, from, to time.Duration) {
	step := (to - from) / time.Duration(n)
	for i := range n {
		d := from + time.Duration(i)*step
		c.Request(workload.Request{Scheduled: at(d), Sent: at(d), Done: at(d), Instance: inst, Status: 200})
	}
}

func TestImbalanceOverInstancesInRotation(t *testing.T) {
	c := NewCollector(t0, []Span{{"steady", 0, 4 * time.Second}})
	load(c, "app-1", 300, 0, 4*time.Second)
	load(c, "app-2", 100, 0, 4*time.Second)
	load(c, "app-3", 10, 0, time.Second) // leaves the rotation after 1 s
	_, phases, _ := c.Build(Input{Rotations: []Rotation{
		{0, "app-1", true}, {0, "app-2", true}, {0, "app-3", true}, {time.Second, "app-3", false},
	}})
	f := phases["steady"]
	if f.ImbalanceMaxOverMean == nil || !near(*f.ImbalanceMaxOverMean, 1.5, 1e-9) || !near(*f.ImbalanceCV, 0.5, 1e-9) {
		t.Fatalf("imbalance %v / cv %v; want 1.5 and 0.5 over app-1 and app-2 only", f.ImbalanceMaxOverMean, f.ImbalanceCV)
	}
}

func TestSecondsToFairShare(t *testing.T) {
	spans := []Span{{"steady", 0, 2 * time.Second}, {"scale_out", 2 * time.Second, 8 * time.Second}}
	build := func(newLoad []int) *float64 {
		c := NewCollector(t0, spans)
		for s := range 8 {
			from, to := time.Duration(s)*time.Second, time.Duration(s+1)*time.Second
			load(c, "app-1", 100, from, to)
			load(c, "app-2", 100, from, to)
			if s >= 2 && newLoad[s-2] > 0 {
				load(c, "app-3", newLoad[s-2], from, to)
			}
		}
		total, phases, _ := c.Build(Input{ScaleOut: "app-3", Rotations: []Rotation{
			{0, "app-1", true}, {0, "app-2", true}, {2 * time.Second, "app-3", true},
		}})
		if total.ScaleOutSecondsToFairShare != phases["scale_out"].ScaleOutSecondsToFairShare {
			t.Fatal("the run's and the phase's scale-out figures differ")
		}
		return total.ScaleOutSecondsToFairShare
	}
	// Fair share is a third; 80% of it is 26.7% of the load. 10 of 210 is
	// not; 80 of 280 is (28.6%), in the third second after the join.
	if got := build([]int{10, 20, 80, 100, 100, 100}); got == nil || !near(*got, 3, 1e-9) {
		t.Errorf("seconds to fair share = %v, want 3", got)
	}
	if got := build([]int{1, 2, 3, 4, 5, 6}); got != nil {
		t.Errorf("seconds to fair share = %v for an instance that never got its share, want nil", *got)
	}
}
