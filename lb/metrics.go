package lb

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics live in a registry of the balancer's own, so two balancers in one
// process (tests, embedders) never collide and nothing is global.
type metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	ejections  *prometheus.CounterVec
	repins     *prometheus.CounterVec
	spills     *prometheus.CounterVec
	drains     *prometheus.CounterVec
	checks     *prometheus.CounterVec
	badCookies prometheus.Counter
	noBackend  prometheus.Counter
	reloads    *prometheus.CounterVec
	deploy     *deployMetrics
	all        []prometheus.Collector // everything registered
}

// backendMetrics caches a backend's children so the request path does not
// hash label values each time.
type backendMetrics struct {
	latency prometheus.Observer
	codes   sync.Map // int -> prometheus.Counter
	m       *metrics
	name    string
}

func (bm *backendMetrics) count(status int) {
	if c, ok := bm.codes.Load(status); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	code := "error"
	if status > 0 {
		code = strconv.Itoa(status)
	}
	c := bm.m.requests.WithLabelValues(bm.name, code)
	bm.codes.Store(status, c)
	c.Inc()
}

func newMetrics(bl *Balancer) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "unstuck_lb_requests_total", Help: "Requests by backend and response status (error: no response).",
	}, []string{"backend", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "unstuck_lb_request_duration_seconds",
		Help:    "Time from routing to the end of the backend's response.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"backend"})
	m.ejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "unstuck_lb_ejections_total", Help: "Passive health ejections.",
	}, []string{"backend"})
	m.repins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "unstuck_lb_repins_total", Help: "Sticky users moved to another backend, by reason (removed, down, ejected, drained, drain, spill, failed).",
	}, []string{"reason"})
	m.spills = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "unstuck_lb_spills_total", Help: "Pinned users moved off an overloaded backend (sticky.spill).",
	}, []string{"backend"})
	m.drains = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "unstuck_lb_drains_total", Help: "Drain transitions by backend and phase (started, drained).",
	}, []string{"backend", "phase"})
	m.checks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "unstuck_lb_health_checks_total", Help: "Active health checks by backend and result (pass, fail, timeout).",
	}, []string{"backend", "result"})
	m.badCookies = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "unstuck_lb_invalid_cookies_total", Help: "Sticky cookies ignored as forged, expired or malformed.",
	})
	m.noBackend = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "unstuck_lb_no_backend_total", Help: "Requests answered 503 because no backend was available.",
	})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "unstuck_lb_reloads_total", Help: "Config reloads by result (ok, error).",
	}, []string{"result"})
	m.all = []prometheus.Collector{m.requests, m.latency, m.ejections, m.repins, m.spills, m.drains,
		m.checks, m.badCookies, m.noBackend, m.reloads, &stateCollector{bl: bl}}
	m.deploy = newDeployMetrics()
	m.all = append(m.all, m.deploy.collectors()...)
	m.reg.MustRegister(m.all...)
	return m
}

func (m *metrics) forBackend(name string) *backendMetrics {
	return &backendMetrics{latency: m.latency.WithLabelValues(name), m: m, name: name}
}

// forget drops a removed backend's series.
func (m *metrics) forget(name string) {
	l := prometheus.Labels{"backend": name}
	m.requests.DeletePartialMatch(l)
	m.latency.DeletePartialMatch(l)
	m.ejections.DeletePartialMatch(l)
	m.spills.DeletePartialMatch(l)
	m.drains.DeletePartialMatch(l)
	m.checks.DeletePartialMatch(l)
}

// Active health check results, the "result" label of
// unstuck_lb_health_checks_total.
const (
	checkPass    = "pass"
	checkFail    = "fail"    // an answer with the wrong status, or no answer
	checkTimeout = "timeout" // no answer within health.active.timeout
)

// checkCounters are one backend's check counters, made when its check loop
// starts: all three series exist from the first check (so a rate over them
// is defined), and a loop outliving its backend's removal by one probe
// cannot bring a forgotten series back.
func (m *metrics) checkCounters(name string) map[string]prometheus.Counter {
	c := map[string]prometheus.Counter{}
	for _, r := range []string{checkPass, checkFail, checkTimeout} {
		c[r] = m.checks.WithLabelValues(name, r)
	}
	return c
}

// stateCollector reads gauges from the live backends at scrape time, so
// backends added and removed at runtime need no bookkeeping.
type stateCollector struct{ bl *Balancer }

var (
	descInFlight  = prometheus.NewDesc("unstuck_lb_in_flight", "Requests being served, by backend.", []string{"backend"}, nil)
	descState     = prometheus.NewDesc("unstuck_lb_backend_state", "1 for the backend's current state (up, down, ejected, draining, drained).", []string{"backend", "state"}, nil)
	descUp        = prometheus.NewDesc("unstuck_lb_backend_healthy", "1 when the backend takes requests (not down or ejected).", []string{"backend"}, nil)
	descWS        = prometheus.NewDesc("unstuck_lb_websockets_open", "Open WebSocket tunnels, by backend.", []string{"backend"}, nil)
	descPinned    = prometheus.NewDesc("unstuck_lb_pinned_users", "Distinct sticky users seen within drain.idle, by backend.", []string{"backend"}, nil)
	descWeight    = prometheus.NewDesc("unstuck_lb_backend_weight", "Effective weight (slow start lowers it).", []string{"backend"}, nil)
	descImbalance = prometheus.NewDesc("unstuck_lb_load_imbalance", "Max over mean of in-flight requests across healthy backends (1 is perfect).", nil, nil)
	descPanic     = prometheus.NewDesc("unstuck_lb_panic_mode", "1 while too few backends are healthy and all are used.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInFlight, descState, descUp, descWS, descPinned, descWeight, descImbalance, descPanic} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	v := c.bl.view.Load()
	now := time.Now().UnixNano()
	var sum, maxIn float64
	n := 0
	for _, b := range v.backends {
		in := float64(b.inflight.Load())
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, in, b.name)
		st := b.state(now)
		for _, s := range []string{StateUp, StateDown, StateEjected, StateDraining, StateDrained} {
			val := 0.0
			if s == st {
				val = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, val, b.name, s)
		}
		healthy := 0.0
		if b.serving(now) {
			healthy = 1
			sum += in
			maxIn = max(maxIn, in)
			n++
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, healthy, b.name)
		ch <- prometheus.MustNewConstMetric(descWS, prometheus.GaugeValue, float64(b.wsOpen.Load()), b.name)
		ch <- prometheus.MustNewConstMetric(descPinned, prometheus.GaugeValue, float64(b.recentUsers(now, v.cfg.Drain.Idle)), b.name)
		ch <- prometheus.MustNewConstMetric(descWeight, prometheus.GaugeValue, b.effectiveWeight(), b.name)
	}
	imb := 1.0
	if n > 0 && sum > 0 {
		imb = maxIn / (sum / float64(n))
	}
	ch <- prometheus.MustNewConstMetric(descImbalance, prometheus.GaugeValue, imb)
	p := 0.0
	if c.bl.panicking(v, now) {
		p = 1
	}
	ch <- prometheus.MustNewConstMetric(descPanic, prometheus.GaugeValue, p)
}
