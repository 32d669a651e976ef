package dashboard

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/unstuck-dev/unstuck/lb"
)

// Event is one thing that happened, as the event list shows it.
type Event struct {
	// Seq orders events; a reconnecting page asks for those after the last
	// one it saw.
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
	// Kind is added, removing, removed, down, ejected, recovered, draining,
	// drained, undrained, state, repin, spill, unavailable (503s for want
	// of a backend), panic, reload or reload-failed.
	Kind    string `json:"kind"`
	Backend string `json:"backend,omitempty"`
	Text    string `json:"text"`
	// Level is info, warn or error: how loud the page shows it.
	Level string `json:"level"`
}

// transition is one observed change of a backend's state: what its health
// checks, passive checks and drains did, as far as one sample a second
// can tell.
type transition struct {
	At   time.Time `json:"at"`
	From string    `json:"from"`
	To   string    `json:"to"`
}

// backendView is a backend's row: the balancer's status plus what the
// sampler derived over the last interval.
type backendView struct {
	lb.BackendStatus
	// Healthy is the balancer's health gauge: not down, not ejected.
	Healthy bool `json:"healthy"`
	// RPS is requests answered per second over the last interval.
	RPS float64 `json:"rps"`
	// ErrorRate is the share (0..1) of those that were 5xx or failed.
	ErrorRate float64 `json:"error_rate"`
	// P50 and P99 are latency percentiles in milliseconds over the last
	// interval, nil when it saw no request.
	P50 *float64 `json:"p50_ms"`
	P99 *float64 `json:"p99_ms"`
	// Transitions are the latest state changes, newest last.
	Transitions []transition `json:"transitions"`
	// Checks counts the active health checks of the last minute; nil
	// when the backend has no active checks.
	Checks *checkCounts `json:"checks"`
}

// DrainHidden says whether a drain is on that State does not show: the
// backend is down or ejected, which outrank draining.
func (v backendView) DrainHidden() bool {
	return v.Draining && (v.State == lb.StateDown || v.State == lb.StateEjected)
}

// checkCounts are a backend's active health check results over the last
// checkWindow (less while the dashboard has not watched it that long).
type checkCounts struct {
	Passed float64 `json:"passed"`
	// Failed counts every check that did not pass, timeouts included.
	Failed   float64 `json:"failed"`
	TimedOut float64 `json:"timed_out"`
	// Window is the span counted, in seconds: 0 until a second reading.
	Window float64 `json:"window_s"`
}

// checkWindow is how far back a row's health check counts reach: long
// enough to show a flapping backend, short enough to show the present.
const checkWindow = time.Minute

// checkStep is what one backend's check counters grew by between two
// readings.
type checkStep struct {
	from, at               time.Time
	pass, fail, timeoutCnt float64
}

// point is one sample in the history the chart draws.
type point struct {
	Seq       uint64             `json:"seq"`
	At        int64              `json:"t"` // unix milliseconds
	RPS       map[string]float64 `json:"rps"`
	States    map[string]string  `json:"states"`
	Imbalance float64            `json:"imbalance"`
}

// update is what the page receives: the current rows, and the history
// points and events it has not seen (all of them when Reset).
type update struct {
	Seq       uint64        `json:"seq"`
	At        time.Time     `json:"at"`
	Interval  float64       `json:"interval_s"`
	Backends  []backendView `json:"backends"`
	Imbalance float64       `json:"imbalance"`
	Panic     bool          `json:"panic"`
	Reset     bool          `json:"reset"`
	Points    []point       `json:"points"`
	Events    []Event       `json:"events"`
}

const (
	maxEvents      = 200 // the event list keeps this many
	maxTransitions = 6   // per backend, in its row
)

// sampler turns successive readings into rows, history and events. It is
// driven by the Dashboard's loop (sample) or directly by tests (fold).
type sampler struct {
	historyLen int
	interval   time.Duration

	mu          sync.Mutex
	prev        *reading
	seq         uint64
	eventSeq    uint64
	rows        []backendView
	at          time.Time
	imbalance   float64
	panic       bool
	points      []point // oldest first, at most historyLen
	events      []Event // oldest first, at most maxEvents
	transitions map[string][]transition
	checkSteps  map[string][]checkStep // per backend, oldest first, within checkWindow
	changed     chan struct{}          // closed and replaced by every fold
}

func newSampler(historyLen int, interval time.Duration) *sampler {
	return &sampler{
		historyLen:  historyLen,
		interval:    interval,
		transitions: map[string][]transition{},
		checkSteps:  map[string][]checkStep{},
		changed:     make(chan struct{}),
		imbalance:   1,
	}
}

// sample reads the balancer once and folds the reading in.
func (s *sampler) sample(bl *lb.Balancer) error {
	backends := bl.Backends()
	fams, err := bl.Registry().Gather()
	if err != nil && len(fams) == 0 {
		return err
	}
	// Stamped when the counters were read, not when the sample was due:
	// on a busy machine the two differ, and a rate over the wrong span
	// draws spikes and dips that never happened.
	r := newReading(time.Now(), backends)
	// Gather returns what it could even on error; a partial reading is
	// better than a frozen page.
	r.read(fams)
	s.fold(r)
	return err
}

// fold derives rates, percentiles and events from the previous reading to
// r, appends a history point and wakes the streams. The first reading only
// sets the baseline: it has rows and a point, but no rates or events.
func (s *sampler) fold(r *reading) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.prev
	s.prev = r
	s.seq++
	s.at = r.at
	s.imbalance = r.imbalance
	s.panic = r.panic

	dt := 0.0
	if prev != nil {
		dt = r.at.Sub(prev.at).Seconds()
	}
	pt := point{Seq: s.seq, At: r.at.UnixMilli(), RPS: map[string]float64{}, States: map[string]string{}, Imbalance: r.imbalance}
	rows := make([]backendView, 0, len(r.backends))
	steps := make(map[string][]checkStep, len(r.backends)) // removed backends' go
	for _, b := range r.backends {
		v := backendView{BackendStatus: b, Healthy: b.State != lb.StateDown && b.State != lb.StateEjected}
		if h, ok := r.healthy[b.Name]; ok {
			v.Healthy = h
		}
		if prev != nil && dt > 0 {
			n := delta(prev.requests[b.Name], r.requests[b.Name])
			v.RPS = n / dt
			if n > 0 {
				v.ErrorRate = math.Min(1, delta(prev.errors[b.Name], r.errors[b.Name])/n)
			}
			lat := r.latency[b.Name].sub(prev.latency[b.Name])
			v.P50 = ms(lat.quantile(0.50))
			v.P99 = ms(lat.quantile(0.99))
		}
		v.Checks = s.foldChecks(prev, r, b.Name, steps)
		pt.RPS[b.Name] = round(v.RPS, 3)
		pt.States[b.Name] = b.State
		rows = append(rows, v)
	}
	if prev != nil {
		s.derive(prev, r)
	}
	for i := range rows {
		// Never null in the JSON: an empty list reads as "no change seen".
		rows[i].Transitions = append([]transition{}, s.transitions[rows[i].Name]...)
	}
	s.checkSteps = steps
	s.rows = rows
	s.points = append(s.points, pt)
	if over := len(s.points) - s.historyLen; over > 0 {
		s.points = slices.Delete(s.points, 0, over)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// foldChecks adds what name's check counters grew by since prev to its
// steps, drops the steps older than checkWindow, keeps the rest in steps
// and sums them. A backend whose checks were not counted in prev (new, or
// checks just turned on) starts from its next reading, so checks made
// before the dashboard watched are not shown as recent.
func (s *sampler) foldChecks(prev, r *reading, name string, steps map[string][]checkStep) *checkCounts {
	cur, ok := r.checks[name]
	if !ok {
		return nil
	}
	l := s.checkSteps[name]
	if prev != nil && r.at.After(prev.at) {
		if p, ok := prev.checks[name]; ok {
			l = append(l, checkStep{
				from: prev.at, at: r.at,
				pass:       delta(p["pass"], cur["pass"]),
				fail:       delta(p["fail"], cur["fail"]),
				timeoutCnt: delta(p["timeout"], cur["timeout"]),
			})
		}
	}
	cut := r.at.Add(-checkWindow)
	i := 0
	for i < len(l) && !l[i].at.After(cut) {
		i++
	}
	l = slices.Clone(l[i:]) // a fresh array, so the dropped steps are freed
	steps[name] = l
	c := &checkCounts{}
	if len(l) > 0 {
		c.Window = round(r.at.Sub(l[0].from).Seconds(), 3)
	}
	for _, st := range l {
		c.Passed += st.pass
		c.Failed += st.fail + st.timeoutCnt
		c.TimedOut += st.timeoutCnt
	}
	return c
}

// derive appends the events between prev and cur: state changes seen in
// the backend lists, and increases of the counters that record what a
// one-second sample can miss (an ejection that ended, a drain of a backend
// that is down, re-pins, spills, reloads).
func (s *sampler) derive(prev, cur *reading) {
	at := cur.at
	before := map[string]lb.BackendStatus{}
	for _, b := range prev.backends {
		before[b.Name] = b
	}
	// State changes first, so the counters below can tell which changes
	// they would report twice.
	type change struct {
		name                string
		tr                  transition
		kind, level, text   string
		added, removingOnly bool
	}
	var changes []change
	seen := map[string]bool{} // backend+"\x00"+kind seen as a state change
	now := map[string]bool{}
	for _, b := range cur.backends {
		now[b.Name] = true
		old, existed := before[b.Name]
		switch {
		case !existed:
			from := ""
			if b.Source != "" {
				from = " from DNS " + b.Source
			}
			changes = append(changes, change{name: b.Name, added: true, kind: "added", level: "info",
				text: fmt.Sprintf("%s added%s (%s, weight %g), %s", b.Name, from, b.URL, b.Weight, b.State)})
		case old.State != b.State:
			kind, level, text := describe(b.Name, old.State, b.State)
			changes = append(changes, change{name: b.Name, tr: transition{At: at, From: old.State, To: b.State}, kind: kind, level: level, text: text})
			seen[b.Name+"\x00"+kind] = true
		}
		if existed && b.Removing && !old.Removing {
			changes = append(changes, change{name: b.Name, removingOnly: true, kind: "removing", level: "info",
				text: b.Name + " is being removed: draining first"})
		}
	}
	// A drain that began in this interval precedes whatever state it led
	// to (drained at once, or hidden behind "down").
	for _, name := range slices.Sorted(maps.Keys(cur.drains)) {
		if n := delta(prev.drains[name]["started"], cur.drains[name]["started"]); n > 0 && !seen[name+"\x00draining"] {
			s.emit(at, "draining", name, "info", name+" draining: no new users")
		}
	}
	for _, c := range changes {
		if !c.added && !c.removingOnly {
			s.noteTransition(c.name, c.tr)
		}
		s.emit(at, c.kind, c.name, c.level, c.text)
	}
	for _, b := range prev.backends {
		if !now[b.Name] {
			s.emit(at, "removed", b.Name, "info", b.Name+" removed")
			delete(s.transitions, b.Name)
		}
	}

	for _, name := range slices.Sorted(maps.Keys(cur.ejections)) {
		if n := delta(prev.ejections[name], cur.ejections[name]); n > 0 && !seen[name+"\x00ejected"] {
			s.emit(at, "ejected", name, "warn", fmt.Sprintf("%s ejected by passive health checks%s", name, times(n)))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cur.drains)) {
		if n := delta(prev.drains[name]["drained"], cur.drains[name]["drained"]); n > 0 && !seen[name+"\x00drained"] {
			s.emit(at, "drained", name, "info", name+" drained")
		}
	}
	for _, reason := range slices.Sorted(maps.Keys(cur.repins)) {
		if n := delta(prev.repins[reason], cur.repins[reason]); n > 0 {
			s.emit(at, "repin", "", "info", fmt.Sprintf("%s re-pinned to another backend (%s)", users(n), reasonText(reason)))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cur.spills)) {
		if n := delta(prev.spills[name], cur.spills[name]); n > 0 {
			s.emit(at, "spill", name, "info", fmt.Sprintf("%s moved off %s (overloaded)", users(n), name))
		}
	}
	if n := delta(prev.noBackend, cur.noBackend); n > 0 {
		s.emit(at, "unavailable", "", "error", fmt.Sprintf("%g %s answered 503: no backend available", n, plural(n, "request", "requests")))
	}
	switch {
	case cur.panic && !prev.panic:
		s.emit(at, "panic", "", "error", "panic mode: too few backends are healthy, all of them take traffic")
	case prev.panic && !cur.panic:
		s.emit(at, "panic", "", "info", "panic mode over")
	}
	if n := delta(prev.reloads["ok"], cur.reloads["ok"]); n > 0 {
		s.emit(at, "reload", "", "info", "config reloaded"+times(n))
	}
	if n := delta(prev.reloads["error"], cur.reloads["error"]); n > 0 {
		s.emit(at, "reload-failed", "", "error", "config reload refused, old config kept"+times(n))
	}
}

// describe names a state change for the event list.
func describe(name, from, to string) (kind, level, text string) {
	wasOut := from == lb.StateDown || from == lb.StateEjected
	switch {
	case from == lb.StateDrained && to == lb.StateDown:
		// Drained outranks down, so this is an undrain revealing that
		// the health checks fail.
		return "undrained", "warn", name + " back in rotation, but down: health checks fail"
	case to == lb.StateDown:
		return "down", "error", name + " is down: health checks fail"
	case to == lb.StateEjected:
		return "ejected", "warn", name + " ejected by passive health checks"
	case wasOut && to == lb.StateUp:
		return "recovered", "info", name + " recovered: up again (was " + from + ")"
	case wasOut && to == lb.StateDraining:
		return "recovered", "info", name + " recovered (was " + from + "), still draining"
	case to == lb.StateDraining:
		return "draining", "info", name + " draining: no new users"
	case to == lb.StateDrained:
		return "drained", "info", name + " drained"
	case to == lb.StateUp:
		return "undrained", "info", name + " back in rotation (was " + from + ")"
	}
	return "state", "info", name + ": " + from + " → " + to
}

func (s *sampler) emit(at time.Time, kind, backend, level, text string) {
	s.eventSeq++
	s.events = append(s.events, Event{Seq: s.eventSeq, At: at, Kind: kind, Backend: backend, Text: text, Level: level})
	if over := len(s.events) - maxEvents; over > 0 {
		s.events = slices.Delete(s.events, 0, over)
	}
}

func (s *sampler) noteTransition(name string, t transition) {
	l := append(s.transitions[name], t)
	if over := len(l) - maxTransitions; over > 0 {
		l = slices.Delete(l, 0, over)
	}
	s.transitions[name] = l
}

// since is the update for a page that has seen history up to point seq
// and events up to eventSeq (zero for a new page: it gets everything), and
// a channel closed at the next fold.
func (s *sampler) since(seq, eventSeq uint64) (update, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := update{
		Seq: s.seq, At: s.at, Interval: s.interval.Seconds(),
		Backends:  slices.Clone(s.rows),
		Imbalance: round(s.imbalance, 3), Panic: s.panic,
	}
	// A page is reset when it is new or so far behind that the points it
	// misses were dropped from the history.
	first := uint64(0)
	if len(s.points) > 0 {
		first = s.points[0].Seq
	}
	u.Reset = seq == 0 || seq+1 < first || seq > s.seq
	if u.Reset {
		// A reset page redraws its event list too (and a page from a
		// previous dashboard has event numbers that mean nothing here).
		eventSeq = 0
	}
	for _, p := range s.points {
		if u.Reset || p.Seq > seq {
			u.Points = append(u.Points, p)
		}
	}
	for _, e := range s.events {
		if e.Seq > eventSeq {
			u.Events = append(u.Events, e)
		}
	}
	return u, s.changed
}

// current is the latest rows, imbalance and events (newest first) for the
// server-rendered page.
func (s *sampler) current() (rows []backendView, imbalance float64, panic bool, events []Event, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	events = slices.Clone(s.events)
	slices.Reverse(events)
	return slices.Clone(s.rows), s.imbalance, s.panic, events, s.at
}

func ms(seconds float64, ok bool) *float64 {
	if !ok {
		return nil
	}
	v := round(seconds*1000, 3)
	return &v
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func times(n float64) string {
	if n <= 1 {
		return ""
	}
	return fmt.Sprintf(" (%g times)", n)
}

func users(n float64) string { return fmt.Sprintf("%g %s", n, plural(n, "user", "users")) }

func plural(n float64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
