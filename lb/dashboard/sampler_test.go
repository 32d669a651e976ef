package dashboard

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/lb"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func rd(at time.Duration, states ...string) *reading {
	r := newReading(t0.Add(at), nil)
	for i := 0; i+1 < len(states); i += 2 {
		r.backends = append(r.backends, lb.BackendStatus{Name: states[i], URL: "http://127.0.0.1:1", Weight: 1, State: states[i+1]})
	}
	return r
}

func row(t *testing.T, s *sampler, name string) backendView {
	t.Helper()
	rows, _, _, _, _ := s.current()
	for _, r := range rows {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no row %q in %+v", name, rows)
	return backendView{}
}

func kinds(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.Kind + ":" + e.Backend + " ")
	}
	return strings.TrimSpace(b.String())
}

func TestRatesAndErrorRateAreOverTheLastInterval(t *testing.T) {
	s := newSampler(10, time.Second)
	a := rd(0, "a", "up", "b", "up")
	a.requests["a"], a.errors["a"] = 1000, 500 // old errors must not count
	s.fold(a)
	if r := row(t, s, "a"); r.RPS != 0 || r.P50 != nil {
		t.Fatalf("first reading is a baseline, got rps %v p50 %v", r.RPS, r.P50)
	}
	b := rd(2*time.Second, "a", "up", "b", "up")
	b.requests["a"], b.errors["a"] = 1200, 520
	s.fold(b)
	r := row(t, s, "a")
	if r.RPS != 100 {
		t.Errorf("rps = %v, want 200 requests / 2 s = 100", r.RPS)
	}
	if math.Abs(r.ErrorRate-0.1) > 1e-9 {
		t.Errorf("error rate = %v, want 20/200 = 0.1", r.ErrorRate)
	}
	if rb := row(t, s, "b"); rb.RPS != 0 || rb.ErrorRate != 0 {
		t.Errorf("idle backend: rps %v error rate %v, want 0, 0", rb.RPS, rb.ErrorRate)
	}
}

func TestCounterResetCountsFromZero(t *testing.T) {
	// A backend removed and added again under its name starts its series
	// at zero: the rate must not go negative.
	s := newSampler(10, time.Second)
	a := rd(0, "a", "up")
	a.requests["a"] = 500
	s.fold(a)
	b := rd(time.Second, "a", "up")
	b.requests["a"] = 30
	s.fold(b)
	if r := row(t, s, "a"); r.RPS != 30 {
		t.Fatalf("rps after reset = %v, want 30", r.RPS)
	}
}

func TestIsError(t *testing.T) {
	for code, want := range map[string]bool{"500": true, "502": true, "503": true, "error": true, "200": false, "404": false, "499": false, "": false, "5": false} {
		if got := isError(code); got != want {
			t.Errorf("isError(%q) = %v, want %v", code, got, want)
		}
	}
}

func TestPercentilesFromBucketDeltas(t *testing.T) {
	bounds := []float64{0.01, 0.1, 1}
	// 10 fast requests before the interval; 50 in (0.01, 0.1] and 50 in
	// (0.1, 1] during it.
	prev := histogram{bounds: bounds, counts: []float64{10, 10, 10}, count: 10}
	cur := histogram{bounds: bounds, counts: []float64{10, 60, 110}, count: 110}
	d := cur.sub(prev)
	p50, ok := d.quantile(0.5)
	if !ok || math.Abs(p50-0.1) > 1e-9 {
		t.Errorf("p50 = %v (%v), want 0.1: rank 50 ends bucket (0.01, 0.1]", p50, ok)
	}
	p99, _ := d.quantile(0.99)
	if want := 0.1 + 0.9*49.0/50; math.Abs(p99-want) > 1e-9 {
		t.Errorf("p99 = %v, want %v (linear inside (0.1, 1])", p99, want)
	}
	// Without the delta, the old fast requests would pull p50 down.
	if all, _ := cur.quantile(0.5); all >= p50 {
		t.Errorf("cumulative p50 %v should be below the interval's %v", all, p50)
	}

	// First bucket interpolates from zero.
	first := histogram{bounds: bounds, counts: []float64{4, 4, 4}, count: 4}
	if v, _ := first.quantile(0.5); math.Abs(v-0.005) > 1e-12 {
		t.Errorf("p50 in first bucket = %v, want 0.005", v)
	}
	// Beyond the last finite bound: that bound, as histogram_quantile does.
	slow := histogram{bounds: bounds, counts: []float64{0, 0, 1}, count: 10}
	if v, _ := slow.quantile(0.99); v != 1 {
		t.Errorf("p99 in +Inf bucket = %v, want 1", v)
	}
	// No observations: no figure.
	if _, ok := prev.sub(prev).quantile(0.5); ok {
		t.Error("quantile of an empty interval should not be ok")
	}
	// A reset histogram (fewer observations) counts from zero.
	if r := prev.sub(cur); r.count != prev.count {
		t.Errorf("reset histogram delta count = %v, want %v", r.count, prev.count)
	}
}

func TestLatencyPercentilesInRows(t *testing.T) {
	s := newSampler(10, time.Second)
	bounds := []float64{0.001, 0.01, 0.1}
	a := rd(0, "a", "up")
	a.latency["a"] = histogram{bounds: bounds, counts: []float64{0, 0, 0}, count: 0}
	s.fold(a)
	b := rd(time.Second, "a", "up")
	b.latency["a"] = histogram{bounds: bounds, counts: []float64{0, 100, 100}, count: 100}
	b.requests["a"] = 100
	s.fold(b)
	r := row(t, s, "a")
	if r.P50 == nil || r.P99 == nil {
		t.Fatalf("p50/p99 missing: %+v", r)
	}
	if *r.P50 != 5.5 || *r.P99 != 9.91 {
		t.Errorf("p50, p99 = %v ms, %v ms; want 5.5 ms, 9.91 ms", *r.P50, *r.P99)
	}
	c := rd(2*time.Second, "a", "up")
	c.latency["a"] = b.latency["a"]
	s.fold(c)
	if r := row(t, s, "a"); r.P50 != nil {
		t.Errorf("an interval without requests has no p50, got %v", *r.P50)
	}
}

func TestEventsFromStateChanges(t *testing.T) {
	s := newSampler(10, time.Second)
	s.fold(rd(0, "a", "up", "b", "up", "c", "draining", "d", "down", "gone", "up"))
	if _, _, _, evs, _ := s.current(); len(evs) != 0 {
		t.Fatalf("the first reading has nothing to compare with, got %s", kinds(evs))
	}
	s.fold(rd(time.Second, "a", "down", "b", "ejected", "c", "drained", "d", "up", "new", "up"))
	u, _ := s.since(0, 0)
	want := "down:a ejected:b drained:c recovered:d added:new removed:gone"
	if got := kinds(u.Events); got != want {
		t.Fatalf("events = %q, want %q", got, want)
	}
	for _, e := range u.Events {
		if !e.At.Equal(t0.Add(time.Second)) {
			t.Errorf("%s at %v, want the sample's time", e.Kind, e.At)
		}
		if e.Text == "" || !strings.Contains(e.Text, e.Backend) {
			t.Errorf("event text %q does not name %q", e.Text, e.Backend)
		}
	}
	if lvl := u.Events[0].Level; lvl != "error" {
		t.Errorf("down is level %q, want error", lvl)
	}
	s.fold(rd(2*time.Second, "a", "up", "b", "up", "c", "down", "d", "draining", "new", "up"))
	u, _ = s.since(0, 0)
	want += " recovered:a recovered:b undrained:c draining:d"
	if e := u.Events[len(u.Events)-2]; !strings.Contains(e.Text, "but down") {
		t.Errorf("undrain of a failing backend reads %q", e.Text)
	}
	if got := kinds(u.Events); got != want {
		t.Fatalf("events = %q, want %q", got, want)
	}
	// Each row keeps its transitions: a's health history.
	tr := row(t, s, "a").Transitions
	if len(tr) != 2 || tr[0].To != "down" || tr[1].From != "down" || tr[1].To != "up" {
		t.Errorf("a's transitions = %+v, want up→down, down→up", tr)
	}
}

func TestEventsFromCounters(t *testing.T) {
	s := newSampler(10, time.Second)
	a := rd(0, "a", "up", "b", "down")
	a.repins["down"] = 2
	a.reloads["ok"] = 1
	s.fold(a)
	b := rd(time.Second, "a", "up", "b", "down")
	b.repins["down"] = 5                             // +3
	b.repins["drain"] = 1                            // new series
	b.spills["a"] = 2                                // +2
	b.reloads["ok"] = 2                              // +1
	b.reloads["error"] = 1                           // +1
	b.ejections["a"] = 1                             // ejected and back within the second
	b.drains["b"] = map[string]float64{"started": 1} // draining while down: state still says down
	b.noBackend = 4
	b.panic = true
	s.fold(b)
	_, _, _, evs, _ := s.current() // newest first
	var texts []string
	for i := len(evs) - 1; i >= 0; i-- {
		texts = append(texts, evs[i].Kind+": "+evs[i].Text)
	}
	got := strings.Join(texts, "\n")
	want := strings.Join([]string{
		"draining: b draining: no new users",
		"ejected: a ejected by passive health checks",
		"repin: 3 users re-pinned to another backend (down)",
		"repin: 1 user re-pinned to another backend (drain)",
		"spill: 2 users moved off a (overloaded)",
		"unavailable: 4 requests answered 503: no backend available",
		"panic: panic mode: too few backends are healthy, all of them take traffic",
		"reload: config reloaded",
		"reload-failed: config reload refused, old config kept",
	}, "\n")
	if got != want {
		t.Fatalf("events:\n%s\nwant:\n%s", got, want)
	}

	// A change seen both as a state and as a counter is one event.
	c := rd(2*time.Second, "a", "ejected", "b", "drained")
	c.ejections["a"] = 2
	c.drains["b"] = map[string]float64{"started": 1, "drained": 1}
	c.repins, c.spills, c.reloads, c.noBackend = b.repins, b.spills, b.reloads, b.noBackend
	s.fold(c)
	u, _ := s.since(2, evs[0].Seq) // a page that saw the second fold
	if got := kinds(u.Events); got != "ejected:a drained:b panic:" {
		t.Fatalf("events = %q, want one ejected, one drained, panic over", got)
	}
}

func TestDrainStartedPrecedesTheStateItLedTo(t *testing.T) {
	s := newSampler(10, time.Second)
	s.fold(rd(0, "a", "up", "b", "up"))
	r := rd(time.Second, "a", "drained", "b", "draining")
	r.backends[1].Removing = true
	r.drains["a"] = map[string]float64{"started": 1, "drained": 1}
	r.drains["b"] = map[string]float64{"started": 1}
	s.fold(r)
	u, _ := s.since(0, 0)
	if got, want := kinds(u.Events), "draining:a drained:a draining:b removing:b"; got != want {
		t.Fatalf("events = %q, want %q", got, want)
	}
}

func TestHistoryRingAndCatchUp(t *testing.T) {
	s := newSampler(3, time.Second)
	for i := range 5 {
		r := rd(time.Duration(i)*time.Second, "a", "up")
		r.requests["a"] = float64(i * 10)
		s.fold(r)
	}
	u, _ := s.since(0, 0)
	if !u.Reset || len(u.Points) != 3 || u.Points[0].Seq != 3 || u.Points[2].Seq != 5 {
		t.Fatalf("new page: reset %v points %+v, want the last 3", u.Reset, u.Points)
	}
	if u.Points[2].RPS["a"] != 10 || u.Points[2].States["a"] != "up" {
		t.Errorf("point = %+v, want rps 10, state up", u.Points[2])
	}
	u, _ = s.since(4, 0)
	if u.Reset || len(u.Points) != 1 || u.Points[0].Seq != 5 {
		t.Errorf("page at 4: reset %v points %+v, want just 5", u.Reset, u.Points)
	}
	u, _ = s.since(1, 0)
	if !u.Reset || len(u.Points) != 3 {
		t.Errorf("page too far behind: reset %v, %d points; want a reset with all 3", u.Reset, len(u.Points))
	}
	u, _ = s.since(99, 7)
	if !u.Reset {
		t.Error("a page from a previous dashboard (seq ahead) must be reset")
	}
	// A reset redraws the event list: all events come, whatever the page
	// had seen.
	s.fold(rd(5*time.Second, "a", "down"))
	if u, _ = s.since(1, 1); !u.Reset || len(u.Events) != 1 {
		t.Errorf("reset page: reset %v, %d events; want all 1", u.Reset, len(u.Events))
	}
}

func TestEventListIsBounded(t *testing.T) {
	s := newSampler(3, time.Second)
	for i := range maxEvents + 20 {
		st := "up"
		if i%2 == 1 {
			st = "down"
		}
		s.fold(rd(time.Duration(i)*time.Second, "a", st))
	}
	_, _, _, evs, _ := s.current()
	if len(evs) != maxEvents {
		t.Fatalf("%d events kept, want %d", len(evs), maxEvents)
	}
	if len(row(t, s, "a").Transitions) != maxTransitions {
		t.Errorf("transitions not bounded to %d", maxTransitions)
	}
}

func TestParseEventID(t *testing.T) {
	for in, want := range map[string][2]uint64{"12.3": {12, 3}, " 5.0 ": {5, 0}, "": {0, 0}, "x.1": {0, 0}, "7": {0, 0}, "1.-2": {0, 0}} {
		a, b := parseEventID(in)
		if a != want[0] || b != want[1] {
			t.Errorf("parseEventID(%q) = %d, %d; want %v", in, a, b, want)
		}
	}
}

// checks sets a reading's check counters for backend name.
func checks(r *reading, name string, pass, fail, timeout float64) *reading {
	r.checks[name] = map[string]float64{"pass": pass, "fail": fail, "timeout": timeout}
	return r
}

func TestCheckCountsOverTheLastMinute(t *testing.T) {
	s := newSampler(100, time.Second)
	// Checks made before the dashboard watched are not recent.
	s.fold(checks(rd(0, "a", "up", "b", "up"), "a", 500, 40, 3))
	if c := row(t, s, "a").Checks; c == nil || *c != (checkCounts{}) {
		t.Fatalf("first reading: %+v, want zero counts", c)
	}
	if c := row(t, s, "b").Checks; c != nil {
		t.Fatalf("b has no active checks, yet counts %+v", c)
	}
	// 30 s of passes, then 30 s of failures, two of them timeouts.
	for i := 1; i <= 30; i++ {
		s.fold(checks(rd(time.Duration(i)*time.Second, "a", "up", "b", "up"), "a", 500+float64(i)*2, 40, 3))
	}
	if c := *row(t, s, "a").Checks; c != (checkCounts{Passed: 60, Window: 30}) {
		t.Fatalf("after 30 s of passes: %+v", c)
	}
	for i := 31; i <= 60; i++ {
		timeouts := 3.0
		if i > 58 {
			timeouts += float64(i - 58)
		}
		s.fold(checks(rd(time.Duration(i)*time.Second, "a", "down", "b", "up"), "a", 560, 40+float64(i-30)*2-(timeouts-3), timeouts))
	}
	if c := *row(t, s, "a").Checks; c != (checkCounts{Passed: 60, Failed: 60, TimedOut: 2, Window: 60}) {
		t.Fatalf("after a minute: %+v, want 60 passed, 60 failed (2 timed out) over 60 s", c)
	}
	// The passes age out of the window a second at a time.
	s.fold(checks(rd(70*time.Second, "a", "down", "b", "up"), "a", 560, 98+20, 5))
	if c := *row(t, s, "a").Checks; c != (checkCounts{Passed: 40, Failed: 80, TimedOut: 2, Window: 60}) {
		t.Fatalf("10 s later: %+v, want the 10 oldest seconds (20 passes) gone", c)
	}
	// A counter reset (the backend removed and added under its name)
	// counts from zero; a removed backend's steps go with it.
	s.fold(checks(rd(71*time.Second, "a", "up"), "a", 3, 0, 0))
	if c := *row(t, s, "a").Checks; c.Passed != 40-2+3 || c.Failed != 80 {
		t.Fatalf("after a reset: %+v, want 3 more passes (and the 2 of second 11 gone)", c)
	}
	s.fold(rd(72*time.Second, "b", "up"))
	s.fold(checks(rd(73*time.Second, "a", "up", "b", "up"), "a", 10, 0, 0))
	if c := *row(t, s, "a").Checks; c != (checkCounts{}) {
		t.Fatalf("a re-added: %+v, want a fresh start", c)
	}
	if len(s.checkSteps) != 1 || len(s.checkSteps["a"]) != 0 {
		t.Fatalf("steps kept: %v", s.checkSteps)
	}
}
