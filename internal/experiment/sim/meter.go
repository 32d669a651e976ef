package sim

import (
	"math"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// phaseStats accumulates one phase's figures as the run goes; every field
// is a count over the phase unless its comment says otherwise.
type phaseStats struct {
	name       string
	start, end float64 // seconds
	perInst    []float64
	// eligible marks the instances that served for the whole phase: up
	// at its start and touched by no event during it.
	eligible []bool

	requests    float64 // all requests, logins and logouts included
	script      float64 // browse, add to cart, view cart
	logins      float64
	logouts     float64
	feed        float64 // revocations delivered: each logout x instances up
	lost        float64 // sessions lost (users who had to log in again)
	cartLost    float64 // cart items lost with them or to two tabs
	errors      float64
	spills      float64 // affinity: requests moved by the load bound or a drain
	repins      float64 // users moved to another instance, for any reason
	misses      float64 // affinity: near-cache misses (store reads)
	downReqs    float64 // requests while the store was down
	downMisses  float64 // near-cache misses while the store was down
	downWrites  float64 // writes while the store was down
	twoTabInt   float64 // integral of two-tab users' request rate (per second)
	chatInt     float64 // integral of chatting users (user-seconds)
	chatDeliver float64 // integral of chatting users' fan-out (instance-seconds)
	uploads     float64
	maxRate     float64 // the most active user's rate (requests/s)
}

// window is the current LoadWindow of per-instance request counts.
type window struct {
	start  float64
	counts []float64
}

// point is one LoadWindow (or, once the series is full, several merged)
// of the time series the report draws.
type point struct {
	T           float64   `json:"t"`             // window end, seconds
	RPS         float64   `json:"rps"`           // all requests per second
	MaxOverMean float64   `json:"max_over_mean"` // over instances up
	CV          float64   `json:"cv"`
	PerInstance []float64 `json:"per_instance,omitempty"` // requests/s, small fleets only
	weight      float64
}

// maxPoints bounds the time series: when it is full, neighbouring points
// are merged in pairs and windows count double from then on, so memory
// stays flat however long the simulated duration.
const maxPoints = 512

// perInstanceSeriesMax is the largest fleet whose per-instance load is
// kept over time (for the calibration chart); bigger fleets keep only the
// imbalance over time.
const perInstanceSeriesMax = 16

type meter struct {
	phases []*phaseStats
	cur    *phaseStats
	win    window
	series []point
	// merge is how many windows one series point holds (a power of two).
	merge   int
	pending point // windows accumulated toward the next point
	pendN   int

	joinT, fairT float64 // the join and when fair share was reached (-1: not yet)
	joiner       int32
}

func newMeter(p *model.Params, instances int) *meter {
	m := &meter{merge: 1, joinT: -1, fairT: -1, joiner: -1}
	for _, s := range p.Spans() {
		m.phases = append(m.phases, &phaseStats{
			name: s.Name, start: s.Start.Seconds(), end: s.End.Seconds(),
			perInst: make([]float64, instances), eligible: make([]bool, instances),
		})
	}
	m.win.counts = make([]float64, instances)
	return m
}

// startPhase moves on to phase i; up says which instances are serving.
func (m *meter) startPhase(i int, up []bool) {
	m.cur = m.phases[i]
	copy(m.cur.eligible, up)
}

// touched excludes an instance from the current phase's imbalance.
func (m *meter) touched(inst int32) { m.cur.eligible[inst] = false }

// closeWindow ends the window at t: one series point, and the fair-share
// check for a joined instance.
func (m *meter) closeWindow(t float64, up []bool) {
	var loads []float64
	total, nUp := 0.0, 0
	for i, c := range m.win.counts {
		if up[i] {
			loads = append(loads, c)
			total += c
			nUp++
		}
	}
	span := t - m.win.start
	if span > 0 {
		im := model.ImbalanceOf(loads)
		pt := point{T: t, RPS: total / span, MaxOverMean: im.MaxOverMean, CV: im.CV, weight: 1}
		if len(m.win.counts) <= perInstanceSeriesMax {
			pt.PerInstance = make([]float64, len(m.win.counts))
			for i, c := range m.win.counts {
				pt.PerInstance[i] = c / span
			}
		}
		m.addPoint(pt)
	}
	if m.joiner >= 0 && m.fairT < 0 && t > m.joinT && span > 0 && up[m.joiner] {
		if model.ReachedFairShare(m.win.counts[m.joiner], total, nUp) {
			m.fairT = t - m.joinT
		}
	}
	clear(m.win.counts)
	m.win.start = t
}

// addPoint folds a window into the series, merging when it is full.
func (m *meter) addPoint(pt point) {
	if m.pendN == 0 {
		m.pending = pt
	} else {
		m.pending = mergePoints(m.pending, pt)
	}
	m.pendN++
	if m.pendN < m.merge {
		return
	}
	m.series = append(m.series, m.pending)
	m.pendN = 0
	if len(m.series) == maxPoints {
		half := m.series[:0]
		for i := 0; i+1 < len(m.series); i += 2 {
			half = append(half, mergePoints(m.series[i], m.series[i+1]))
		}
		m.series = half
		m.merge *= 2
	}
}

// mergePoints averages two consecutive points, weighted by the windows
// each holds; the later one's end time is kept.
func mergePoints(a, b point) point {
	w := a.weight + b.weight
	avg := func(x, y float64) float64 { return (x*a.weight + y*b.weight) / w }
	out := point{T: b.T, RPS: avg(a.RPS, b.RPS), MaxOverMean: avg(a.MaxOverMean, b.MaxOverMean), CV: avg(a.CV, b.CV), weight: w}
	if a.PerInstance != nil && b.PerInstance != nil {
		out.PerInstance = make([]float64, len(a.PerInstance))
		for i := range out.PerInstance {
			out.PerInstance[i] = avg(a.PerInstance[i], b.PerInstance[i])
		}
	}
	return out
}

// imbalance is the phase's imbalance over its eligible instances.
func (ph *phaseStats) imbalance() model.Imbalance {
	var loads []float64
	for i, ok := range ph.eligible {
		if ok {
			loads = append(loads, ph.perInst[i])
		}
	}
	return model.ImbalanceOf(loads)
}

// eligibleLoad is the requests served by the instances imbalance counts,
// and how many they are.
func (ph *phaseStats) eligibleLoad() (total float64, n int) {
	for i, ok := range ph.eligible {
		if ok {
			total += ph.perInst[i]
			n++
		}
	}
	return total, n
}

func (ph *phaseStats) seconds() float64 { return math.Max(1e-9, ph.end-ph.start) }
