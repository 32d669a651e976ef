package lb

import (
	"slices"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

// done ends one attempt: in-flight count, metrics, latency, passive health.
func (bl *Balancer) done(b *Backend, o proxy.Outcome) {
	b.inflight.Add(-1)
	b.bm.count(o.Status)
	if o.Status > 0 {
		b.bm.latency.Observe(o.Duration.Seconds())
		b.observeLatency(o.Duration)
	}
	v := bl.view.Load()
	if v.cfg.Health.Passive.Disabled {
		return
	}
	// A client that went away leaves Status 0 and no Err: not the backend's fault.
	if o.Err != nil || (o.Status >= 400 && slices.Contains(v.cfg.Health.Passive.Statuses, o.Status)) {
		if o.Err != nil {
			bl.kickSource(b) // gone from DNS already?
		}
		bl.passiveFailure(v, b, o)
	} else if b.consecFails.Load() != 0 {
		b.consecFails.Store(0)
	}
}

// passiveFailure counts a failure and ejects b after enough in a row,
// unless that would eject more than the allowed share of the backends in
// service, or the last one.
func (bl *Balancer) passiveFailure(v *view, b *Backend, o proxy.Outcome) {
	pc := v.cfg.Health.Passive
	if b.consecFails.Add(1) < int32(pc.Failures) {
		return
	}
	bl.mu.Lock()
	defer bl.mu.Unlock()
	now := time.Now()
	if b.ejected(now.UnixNano()) || b.consecFails.Load() < int32(pc.Failures) {
		return
	}
	// The share counts backends that would serve but for an ejection: a
	// down or draining one takes no new users anyway, and counting it
	// would let the last healthy backends be ejected together.
	ejected, inService := 0, 0
	for _, x := range v.backends {
		if !x.healthy.Load() || x.draining.Load() || x.drained.Load() {
			continue
		}
		inService++
		if x.ejected(now.UnixNano()) {
			ejected++
		}
	}
	if ejected+1 >= inService || (ejected+1)*100 > pc.MaxEjectedPercent*inService {
		bl.log.Warn("backend failing but not ejected: too many backends ejected already",
			"backend", b.name, "ejected", ejected, "in_service", inService, "max_ejected_percent", pc.MaxEjectedPercent)
		b.consecFails.Store(0)
		return
	}
	b.mu.Lock()
	if now.Sub(b.ejectEnd) > 2*pc.MaxEjection {
		b.ejections = 0 // long healthy since: start the growth again
	}
	b.ejections++
	d := min(pc.Ejection*time.Duration(b.ejections), pc.MaxEjection)
	b.ejectEnd = now.Add(d)
	b.mu.Unlock()
	b.ejectedTo.Store(now.Add(d).UnixNano())
	b.consecFails.Store(0)
	b.startRamp(now.Add(d), v.cfg.Health.SlowStart)
	bl.m.ejections.WithLabelValues(b.name).Inc()
	errText := ""
	if o.Err != nil {
		errText = o.Err.Error()
	}
	bl.log.Warn("backend ejected", "backend", b.name, "for", d, "failures", pc.Failures,
		"last_status", o.Status, "last_error", errText)
}
