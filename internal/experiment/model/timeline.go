package model

import (
	"fmt"
	"math"
	"time"
)

// The phases, in order. The names are the keys of results.json "phases"
// and of the simulation's per-phase figures.
const (
	Steady       = "steady"        // the initial instances, nothing happens
	ScaleOut     = "scale_out"     // at its start one new instance joins
	Maintenance  = "maintenance"   // one instance drained, then stopped
	Crash        = "crash"         // at its start one instance is SIGKILLed
	StoreRestart = "store_restart" // the shared store stopped, then started
	Recovery     = "recovery"      // nothing happens: how things settle
)

// PhaseNames lists the phases in timeline order.
var PhaseNames = []string{Steady, ScaleOut, Maintenance, Crash, StoreRestart, Recovery}

// Phase is one phase and its share of the run's duration.
type Phase struct {
	Name  string
	Share float64
}

// Timeline is the sequence of phases and the timing of their faults.
//
// With n = Params.Instances, instances are numbered 0..n-1 at the start:
// instance n joins at the start of scale_out; instance 0 is drained at the
// start of maintenance and stopped DrainShare of the phase later; instance
// 1 is killed at the start of crash; the store stops at the start of
// store_restart and starts again StoreDowntime later. Nothing is restarted:
// recovery runs on n-1 instances.
type Timeline struct {
	// Phases are the six phases in PhaseNames order with their shares of
	// the duration (summing to 1).
	Phases []Phase
	// DrainShare is the share of the maintenance phase between the drain
	// and the stop.
	DrainShare float64
	// StoreDowntime is how long the store is down in store_restart.
	StoreDowntime time.Duration
}

// DefaultTimeline gives steady state and scale-out the longest phases:
// imbalance and the new instance's ramp need time to show.
func DefaultTimeline() Timeline {
	return Timeline{
		Phases: []Phase{
			{Steady, 0.2}, {ScaleOut, 0.2}, {Maintenance, 0.2},
			{Crash, 0.15}, {StoreRestart, 0.1}, {Recovery, 0.15},
		},
		DrainShare:    0.5,
		StoreDowntime: 2 * time.Second,
	}
}

func (t Timeline) validate() error {
	if len(t.Phases) != len(PhaseNames) {
		return fmt.Errorf("model: Timeline.Phases must be the %d phases %v", len(PhaseNames), PhaseNames)
	}
	sum := 0.0
	for i, ph := range t.Phases {
		if ph.Name != PhaseNames[i] {
			return fmt.Errorf("model: Timeline.Phases[%d] must be %q, not %q", i, PhaseNames[i], ph.Name)
		}
		if !(ph.Share > 0) {
			return fmt.Errorf("model: Timeline.Phases[%d] (%s) share must be above 0", i, ph.Name)
		}
		sum += ph.Share
	}
	if math.Abs(sum-1) > 1e-9 {
		return fmt.Errorf("model: Timeline.Phases shares must sum to 1, not %g", sum)
	}
	return nil
}

// Span is one phase's interval of the run, [Start, End).
type Span struct {
	Name       string
	Start, End time.Duration
}

// Spans returns the phases as intervals of a run of duration d; the last
// one ends exactly at d.
func (t Timeline) Spans(d time.Duration) []Span {
	out := make([]Span, len(t.Phases))
	acc := 0.0
	for i, ph := range t.Phases {
		start := time.Duration(acc * float64(d))
		acc += ph.Share
		end := time.Duration(acc * float64(d))
		if i == len(t.Phases)-1 {
			end = d
		}
		out[i] = Span{Name: ph.Name, Start: start, End: end}
	}
	return out
}

func (t Timeline) span(d time.Duration, name string) Span {
	for _, s := range t.Spans(d) {
		if s.Name == name {
			return s
		}
	}
	return Span{}
}

// PhaseAt names the phase that instant at of a run of duration d is in.
func (t Timeline) PhaseAt(d, at time.Duration) string {
	spans := t.Spans(d)
	for _, s := range spans {
		if at < s.End {
			return s.Name
		}
	}
	return spans[len(spans)-1].Name
}

// EventKind is what happens to an instance or the store.
type EventKind int

// The timeline's events.
const (
	Join      EventKind = iota // a new instance starts and the balancer adds it
	Drain                      // the balancer drains an instance: no new users
	Stop                       // a drained instance is stopped (gracefully)
	Kill                       // an instance is SIGKILLed
	StoreDown                  // the shared store stops
	StoreUp                    // the shared store starts again
)

var eventNames = [...]string{"join", "drain", "stop", "kill", "store_down", "store_up"}

func (k EventKind) String() string {
	if k >= 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one fault or change at an instant of the run. Instance is the
// instance's number (see Timeline); it is -1 for store events.
type Event struct {
	At       time.Duration
	Kind     EventKind
	Instance int
}

// Events lists the run's events in time order.
func (p *Params) Events() []Event {
	t, d, n := p.Timeline, p.Duration, p.Instances
	so, mt := t.span(d, ScaleOut), t.span(d, Maintenance)
	cr, sr := t.span(d, Crash), t.span(d, StoreRestart)
	return []Event{
		{so.Start, Join, n},
		{mt.Start, Drain, 0},
		{mt.Start + time.Duration(t.DrainShare*float64(mt.End-mt.Start)), Stop, 0},
		{cr.Start, Kill, 1},
		{sr.Start, StoreDown, -1},
		{sr.Start + t.StoreDowntime, StoreUp, -1},
	}
}

// Spans returns the run's phases as intervals.
func (p *Params) Spans() []Span { return p.Timeline.Spans(p.Duration) }
