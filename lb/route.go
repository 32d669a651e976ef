package lb

import (
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

// requestView is what routing reads of a request; *proxy.Request has it.
type requestView interface {
	Header(name string) []byte
	Cookie(name string) []byte
	ClientIP() netip.Addr
	Secure() bool
}

func (bl *Balancer) routeProxy(r *proxy.Request) (proxy.Target, error) {
	return bl.route(r, r.Attempt, r.Tried)
}

// route picks the backend for one attempt: the one a valid cookie pins when
// it can serve, otherwise the policy's choice (re-pinning the cookie).
func (bl *Balancer) route(r requestView, attempt int, tried []*proxy.Upstream) (proxy.Target, error) {
	v := bl.view.Load()
	nowT := time.Now()
	now := nowT.UnixNano()
	var chosen *Backend
	var p Pin
	havePin, setCookie := false, false
	if v.signer != nil {
		if raw := r.Cookie(v.cookieName); len(raw) > 0 {
			if pp, ok := v.signer.Verify(raw, nowT); ok {
				p, havePin = pp, true
				b := v.byName[p.Backend]
				if reason := bl.pinnedUnusable(v, b, now, attempt, tried); reason == "" {
					chosen = b
					setCookie = needsRefresh(p, nowT, &v.cfg.Sticky)
				} else {
					chosen = bl.pick(v, r, now, tried, b)
					if chosen != nil && chosen != b { // spill with nowhere better to go stays
						bl.m.repins.WithLabelValues(reason).Inc()
						if reason == "spill" {
							bl.m.spills.WithLabelValues(b.name).Inc()
						}
						setCookie = true
					}
				}
			} else {
				bl.m.badCookies.Inc()
			}
		}
	}
	if chosen == nil && !havePin {
		chosen = bl.pick(v, r, now, tried, nil)
		setCookie = v.signer != nil
	}
	if chosen == nil {
		bl.m.noBackend.Inc()
		return proxy.Target{}, proxy.ErrNoUpstream
	}
	t := proxy.Target{Upstream: chosen.up, Done: chosen.done, OnTunnel: chosen.onTunnel}
	if v.signer != nil {
		if !havePin {
			p.User = newUserID()
		}
		if setCookie {
			p.Backend = chosen.name
			p.Expires = nowT.Add(v.cfg.Sticky.TTL)
			t.SetCookie = cookieHeader(v.cookieName, v.signer.Sign(p), v.cfg.Sticky.MaxAge, r.Secure())
		}
		// Only users who came back with the cookie count as pinned users:
		// clients that drop cookies (bots, curl) would each look new.
		counted := p.User
		if !havePin {
			counted = 0
		}
		chosen.notePinned(counted, now)
	}
	chosen.inflight.Add(1)
	chosen.total.Add(1)
	return t, nil
}

// needsRefresh reports whether a valid cookie should be re-issued: when
// less than half its TTL is left, or, for a cookie with a Max-Age, when
// the browser would drop it within half its Max-Age (so an active user's
// cookie never lapses).
func needsRefresh(p Pin, now time.Time, sc *StickyConfig) bool {
	if p.Expires.Sub(now) < sc.TTL/2 {
		return true
	}
	issued := p.Expires.Add(-sc.TTL)
	return sc.MaxAge > 0 && now.Sub(issued) > sc.MaxAge/2
}

// pinnedUnusable says why a pinned user cannot stay on b, or "" if it can.
func (bl *Balancer) pinnedUnusable(v *view, b *Backend, now int64, attempt int, tried []*proxy.Upstream) string {
	switch {
	case b == nil:
		return "removed"
	case attempt > 0 && slices.Contains(tried, b.up):
		return "failed"
	case b.drained.Load():
		return "drained"
	case !b.healthy.Load():
		return "down"
	case b.ejected(now):
		return "ejected"
	case v.cfg.Sticky.Spill && b.draining.Load():
		return "drain"
	case v.cfg.Sticky.Spill && overloaded(v, b, now):
		return "spill"
	}
	return ""
}

// overloaded reports whether b carries more than c x its weighted share of
// the in-flight load, counting the request being placed.
func overloaded(v *view, b *Backend, now int64) bool {
	total, weights := 0.0, 0.0
	for _, o := range v.backends {
		if o.serving(now) && !o.draining.Load() {
			total += float64(o.inflight.Load())
			weights += o.effectiveWeight()
		}
	}
	if weights == 0 {
		return false
	}
	capacity := v.cfg.Policy.Factor * (total + 1) * b.effectiveWeight() / weights
	return float64(b.inflight.Load()+1) > math.Ceil(capacity)
}

// panicking reports whether fewer than the panic threshold of the
// non-draining backends can serve.
func (bl *Balancer) panicking(v *view, now int64) bool {
	pct := *v.cfg.Health.PanicThreshold
	if pct == 0 {
		return false
	}
	healthy, total := 0, 0
	for _, b := range v.backends {
		if b.draining.Load() || b.drained.Load() {
			continue
		}
		total++
		if b.serving(now) {
			healthy++
		}
	}
	return total > 0 && healthy*100 < pct*total
}

// pick asks the policy among the backends that take new users, skipping
// those tried by earlier attempts and avoid (a backend a user is being
// moved off). In panic mode every non-draining backend is a candidate.
func (bl *Balancer) pick(v *view, r requestView, now int64, tried []*proxy.Upstream, avoid *Backend) *Backend {
	cp := bl.cands.Get().(*[]*Backend)
	defer bl.cands.Put(cp)
	c := (*cp)[:0]
	panicMode := bl.panicking(v, now)
	for _, b := range v.backends {
		if b == avoid || b.draining.Load() || b.drained.Load() || (!panicMode && !b.serving(now)) {
			continue
		}
		if len(tried) > 0 && slices.Contains(tried, b.up) {
			continue
		}
		c = append(c, b)
	}
	if len(c) == 0 {
		// Spill with nowhere better to go: stay.
		if avoid != nil && avoid.serving(now) && !avoid.drained.Load() && !slices.Contains(tried, avoid.up) {
			return avoid
		}
		return nil
	}
	var key []byte
	if v.keyed {
		key = hashKey(v.hashKey, r)
	}
	chosen := v.policy.Pick(c, key)
	clear(c)
	*cp = c
	return chosen
}

// hashKey extracts the Hash policy's key; a missing header or cookie falls
// back to the client IP so such clients still spread.
func hashKey(k HashKey, r requestView) []byte {
	switch k.Source {
	case "header":
		if h := r.Header(k.Name); len(h) > 0 {
			return h
		}
	case "cookie":
		if c := r.Cookie(k.Name); len(c) > 0 {
			return c
		}
	}
	a := r.ClientIP().As16()
	return a[:]
}
