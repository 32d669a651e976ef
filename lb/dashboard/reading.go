package dashboard

import (
	"math"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/unstuck-dev/unstuck/lb"
)

// reading is one sample of the balancer: its backends and the counters the
// dashboard turns into rates and events. Counters are cumulative, as
// Prometheus keeps them; the sampler subtracts consecutive readings.
type reading struct {
	at        time.Time
	backends  []lb.BackendStatus
	requests  map[string]float64 // backend -> requests answered (any status)
	errors    map[string]float64 // backend -> 5xx answers and failures without a response
	latency   map[string]histogram
	healthy   map[string]bool               // backend -> takes requests (not down or ejected)
	ejections map[string]float64            // backend -> passive ejections
	drains    map[string]map[string]float64 // backend -> phase (started, drained) -> count
	checks    map[string]map[string]float64 // backend -> result (pass, fail, timeout) -> active checks; absent without active checks
	repins    map[string]float64            // reason -> users re-pinned
	spills    map[string]float64            // backend -> users moved off it
	reloads   map[string]float64            // result (ok, error) -> reloads
	noBackend float64                       // requests answered 503 for want of a backend
	imbalance float64
	panic     bool
}

// histogram is one backend's latency histogram: cumulative counts per
// finite upper bound (ascending) and the count of all observations.
type histogram struct {
	bounds []float64
	counts []float64
	count  float64
}

// Metric names the dashboard reads; they are lb's (lb/metrics.go).
const (
	mRequests  = "unstuck_lb_requests_total"
	mLatency   = "unstuck_lb_request_duration_seconds"
	mHealthy   = "unstuck_lb_backend_healthy"
	mEjections = "unstuck_lb_ejections_total"
	mDrains    = "unstuck_lb_drains_total"
	mChecks    = "unstuck_lb_health_checks_total"
	mRepins    = "unstuck_lb_repins_total"
	mSpills    = "unstuck_lb_spills_total"
	mReloads   = "unstuck_lb_reloads_total"
	mNoBackend = "unstuck_lb_no_backend_total"
	mImbalance = "unstuck_lb_load_imbalance"
	mPanic     = "unstuck_lb_panic_mode"
)

func newReading(at time.Time, backends []lb.BackendStatus) *reading {
	return &reading{
		at:        at,
		backends:  backends,
		requests:  map[string]float64{},
		errors:    map[string]float64{},
		latency:   map[string]histogram{},
		healthy:   map[string]bool{},
		ejections: map[string]float64{},
		drains:    map[string]map[string]float64{},
		checks:    map[string]map[string]float64{},
		repins:    map[string]float64{},
		spills:    map[string]float64{},
		reloads:   map[string]float64{},
		imbalance: 1,
	}
}

// read folds the gathered metric families into r. Unknown families are
// ignored, so the balancer can grow metrics without breaking this.
func (r *reading) read(families []*dto.MetricFamily) {
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case mRequests:
				b := label(m, "backend")
				v := m.GetCounter().GetValue()
				r.requests[b] += v
				if isError(label(m, "code")) {
					r.errors[b] += v
				}
			case mLatency:
				r.latency[label(m, "backend")] = readHistogram(m.GetHistogram())
			case mHealthy:
				r.healthy[label(m, "backend")] = m.GetGauge().GetValue() == 1
			case mEjections:
				r.ejections[label(m, "backend")] += m.GetCounter().GetValue()
			case mDrains:
				b := label(m, "backend")
				if r.drains[b] == nil {
					r.drains[b] = map[string]float64{}
				}
				r.drains[b][label(m, "phase")] += m.GetCounter().GetValue()
			case mChecks:
				b := label(m, "backend")
				if r.checks[b] == nil {
					r.checks[b] = map[string]float64{}
				}
				r.checks[b][label(m, "result")] += m.GetCounter().GetValue()
			case mRepins:
				r.repins[label(m, "reason")] += m.GetCounter().GetValue()
			case mSpills:
				r.spills[label(m, "backend")] += m.GetCounter().GetValue()
			case mReloads:
				r.reloads[label(m, "result")] += m.GetCounter().GetValue()
			case mNoBackend:
				r.noBackend += m.GetCounter().GetValue()
			case mImbalance:
				r.imbalance = m.GetGauge().GetValue()
			case mPanic:
				r.panic = m.GetGauge().GetValue() == 1
			}
		}
	}
}

// isError says whether a status label counts toward the error rate: 5xx
// answers and "error" (the backend failed before answering).
func isError(code string) bool {
	return code == "error" || (len(code) == 3 && code[0] == '5')
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func readHistogram(h *dto.Histogram) histogram {
	bs := h.GetBucket()
	out := histogram{count: float64(h.GetSampleCount())}
	for _, b := range bs {
		if math.IsInf(b.GetUpperBound(), +1) {
			continue
		}
		out.bounds = append(out.bounds, b.GetUpperBound())
		out.counts = append(out.counts, float64(b.GetCumulativeCount()))
	}
	if !sort.Float64sAreSorted(out.bounds) {
		// Prometheus guarantees ascending bounds; anything else is not a
		// histogram this code can interpolate.
		return histogram{count: out.count}
	}
	return out
}

// delta is the counter's increase from prev to cur. A decrease means the
// series restarted (a backend removed and added again under its name), so
// everything counted since is the increase.
func delta(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// sub is the histogram of the observations made between prev and cur.
func (cur histogram) sub(prev histogram) histogram {
	if cur.count < prev.count || len(cur.bounds) != len(prev.bounds) {
		return cur
	}
	d := histogram{bounds: cur.bounds, counts: make([]float64, len(cur.counts)), count: cur.count - prev.count}
	for i := range cur.counts {
		if cur.bounds[i] != prev.bounds[i] || cur.counts[i] < prev.counts[i] {
			return cur
		}
		d.counts[i] = cur.counts[i] - prev.counts[i]
	}
	return d
}

// quantile estimates the q-quantile (0 < q < 1) of h the way Prometheus's
// histogram_quantile does: find the bucket holding the rank and interpolate
// linearly inside it (from 0 for the first bucket). A rank beyond the last
// finite bound answers that bound. ok is false without observations.
func (h histogram) quantile(q float64) (v float64, ok bool) {
	if h.count <= 0 || len(h.bounds) == 0 {
		return 0, false
	}
	rank := q * h.count
	lower, below := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank && c > below {
			return lower + (h.bounds[i]-lower)*(rank-below)/(c-below), true
		}
		lower, below = h.bounds[i], c
	}
	return h.bounds[len(h.bounds)-1], true
}

// reasonText is how a re-pin reason reads in the event list.
func reasonText(reason string) string {
	if reason == "" {
		return "unknown reason"
	}
	return strings.ReplaceAll(reason, "_", " ")
}
