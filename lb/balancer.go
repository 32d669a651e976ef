package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

// Options are what a Balancer needs besides its Config.
type Options struct {
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Reload returns the config that POST /api/reload applies, typically
	// by re-reading the config file. Nil makes the endpoint answer 501.
	Reload func() (*Config, error)
	// Tick is how often drain, ejection and slow start are re-evaluated
	// [250ms]. Tests lower it.
	Tick time.Duration
}

// Balancer is an HTTP and WebSocket load balancer: it decides which backend
// serves each request (policy, sticky cookie, health, drain) and leaves
// the HTTP/1.1 work to the internal proxy engine. Create with New, serve
// with Serve, stop with Shutdown.
type Balancer struct {
	log  *slog.Logger
	opts Options
	// The proxy engine reads its settings once, so a reload that changes
	// them starts a new engine (a generation) on the same listeners and
	// shuts the old one down gracefully; see serve.go.
	cur    atomic.Pointer[proxy.Server]
	srvMu  sync.Mutex
	gens   []*proxy.Server
	lns    map[net.Listener]struct{}
	m      *metrics
	view   atomic.Pointer[view]
	mu     sync.Mutex // serialises changes to the view (reload, admin)
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// cands recycles candidate lists: the slice goes through the Policy
	// interface, so a stack array would escape and allocate per request.
	cands sync.Pool

	lastPrune time.Time // maintain's last sweep of pinned-user maps

	closing    atomic.Bool
	reloadMu   sync.Mutex
	generated  bool // the signing secret was generated, not configured
	secretsCur [][]byte
}

// view is everything routing reads, swapped whole on every change so the
// request path takes no lock.
type view struct {
	cfg        *Config
	backends   []*Backend
	byName     map[string]*Backend
	policy     Policy
	hashKey    HashKey
	hashed     bool
	signer     *Signer
	cookieName string
}

// New builds a Balancer from cfg (validated here; defaults applied). When
// sticky cookies are on and no secret is configured, a random one is
// generated and a warning logged: it neither survives a restart nor is
// shared by a fleet.
func New(cfg *Config, opts Options) (*Balancer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Tick <= 0 {
		opts.Tick = 250 * time.Millisecond
	}
	bl := &Balancer{log: opts.Logger, opts: opts}
	bl.cands.New = func() any { s := make([]*Backend, 0, 16); return &s }
	bl.ctx, bl.cancel = context.WithCancel(context.Background())
	bl.m = newMetrics(bl)
	v, err := bl.buildView(cfg, nil)
	if err != nil {
		return nil, err
	}
	bl.view.Store(v)
	for _, b := range v.backends {
		bl.startHealth(b, cfg.Health.Active)
	}
	bl.lns = map[net.Listener]struct{}{}
	g := bl.newGen(cfg)
	bl.gens = []*proxy.Server{g}
	bl.cur.Store(g)
	bl.wg.Add(1)
	go bl.maintainLoop()
	return bl, nil
}

// buildView makes the routing view for cfg, reusing the backends of old
// whose name and URL are unchanged (with their counters, health, drain
// state and WebSockets).
func (bl *Balancer) buildView(cfg *Config, old *view) (*view, error) {
	v := &view{cfg: cfg, byName: map[string]*Backend{}}
	switch cfg.Policy.Name {
	case PolicyRoundRobin:
		v.policy = &RoundRobin{}
	case PolicyLeastConn:
		v.policy = &LeastConn{}
	case PolicyP2C:
		v.policy = &P2C{Latency: cfg.Policy.Latency}
	case PolicyRandom:
		v.policy = Random{}
	case PolicyHash:
		k, _ := parseHashKey(cfg.Policy.Key)
		v.policy = &Hash{Key: k, Factor: cfg.Policy.Factor}
		v.hashKey, v.hashed = k, true
	}
	if old != nil && old.cfg.Policy == cfg.Policy {
		v.policy = old.policy // keep round-robin position
	}
	if cfg.Sticky.Mode == "cookie" {
		var secrets [][]byte
		for _, s := range cfg.Sticky.Secrets {
			secrets = append(secrets, []byte(s))
		}
		if len(secrets) == 0 {
			// Generate once; keep it across reloads (so cookies stay valid),
			// but never fall back to secrets the config no longer lists.
			if bl.secretsCur == nil || !bl.generated {
				bl.secretsCur = [][]byte{[]byte(GenerateSecret())}
				bl.generated = true
				bl.log.Warn("no sticky secret configured: generated one; sticky cookies will not survive a restart and other balancers will not accept them. Set sticky.secrets, --secret or UNSTUCK_SECRET.")
			}
			secrets = bl.secretsCur
		} else {
			bl.secretsCur, bl.generated = secrets, false
		}
		s, err := NewSigner(cfg.Sticky.Cookie, secrets)
		if err != nil {
			return nil, err
		}
		v.signer, v.cookieName = s, cfg.Sticky.Cookie
	}
	for _, bc := range cfg.Backends {
		u, _ := parseBackendURL(bc.URL) // validated
		var b *Backend
		if old != nil {
			if ob := old.byName[bc.Name]; ob != nil && ob.url.String() == u.String() {
				b = ob
				b.weightW.Store(math.Float64bits(float64(bc.Weight)))
				b.updateWeight(time.Now(), cfg.Health.SlowStart)
			}
		}
		if b == nil {
			b = bl.newBackend(bc.Name, u, bc.Weight)
		}
		v.backends = append(v.backends, b)
		v.byName[b.name] = b
	}
	return v, nil
}

func (bl *Balancer) newBackend(name string, u *url.URL, weight int) *Backend {
	b := newBackend(name, u, weight)
	b.bm = bl.m.forBackend(name)
	b.done = func(o proxy.Outcome) { bl.done(b, o) }
	b.onTunnel = func(t *proxy.Tunnel) { bl.trackTunnel(b, t) }
	return b
}

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
	var p pin
	havePin, setCookie := false, false
	if v.signer != nil {
		if raw := r.Cookie(v.cookieName); len(raw) > 0 {
			if pp, ok := v.signer.Verify(raw, nowT); ok {
				p, havePin = pp, true
				b := v.byName[p.backend]
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
			p.user = newUserID()
		}
		if setCookie {
			p.backend = chosen.name
			p.expires = nowT.Add(v.cfg.Sticky.TTL)
			t.SetCookie = cookieHeader(v.cookieName, v.signer.Sign(p), v.cfg.Sticky.MaxAge, r.Secure())
		}
		// Only users who came back with the cookie count as pinned users:
		// clients that drop cookies (bots, curl) would each look new.
		counted := p.user
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
func needsRefresh(p pin, now time.Time, sc *StickyConfig) bool {
	if p.expires.Sub(now) < sc.TTL/2 {
		return true
	}
	issued := p.expires.Add(-sc.TTL)
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
	if v.hashed {
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
	if o.Err != nil || o.Status >= 500 {
		bl.passiveFailure(v, b, o)
	} else if b.consecFails.Load() != 0 {
		b.consecFails.Store(0)
	}
}

// passiveFailure counts a failure and ejects b after enough in a row,
// unless that would eject more than the allowed share of backends.
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
	ejected := 0
	for _, x := range v.backends {
		if x.ejected(now.UnixNano()) {
			ejected++
		}
	}
	if (ejected+1)*100 > pc.MaxEjectedPercent*len(v.backends) {
		bl.log.Warn("backend failing but not ejected: too many backends ejected already",
			"backend", b.name, "ejected", ejected, "max_ejected_percent", pc.MaxEjectedPercent)
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

// trackTunnel keeps a WebSocket so drain, removal and shutdown can close it.
func (bl *Balancer) trackTunnel(b *Backend, t *proxy.Tunnel) {
	if bl.closing.Load() {
		t.Close(1001, "going away")
		return
	}
	b.addTunnel(t)
	go func() {
		<-t.Closed()
		b.removeTunnel(t)
	}()
}

// closeTunnels closes ts with code, spread evenly over window, so clients
// do not all reconnect at once.
func (bl *Balancer) closeTunnels(ts []*proxy.Tunnel, code uint16, reason string, window time.Duration, stop <-chan struct{}) {
	if len(ts) == 0 {
		return
	}
	step := window / time.Duration(len(ts))
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i, t := range ts {
		if i > 0 && step > 0 {
			timer.Reset(step)
			select {
			case <-timer.C:
			case <-stop:
				return
			}
		}
		t.Close(code, reason)
	}
}

func (bl *Balancer) closeTunnelsAsync(ts []*proxy.Tunnel, code uint16, reason string, window time.Duration) {
	if len(ts) == 0 {
		return
	}
	bl.wg.Add(1)
	go func() {
		defer bl.wg.Done()
		bl.closeTunnels(ts, code, reason, window, bl.ctx.Done())
	}()
}

// maintainLoop re-evaluates what changes with time alone: ejections that
// end, slow-start weights, and drains that complete.
func (bl *Balancer) maintainLoop() {
	defer bl.wg.Done()
	t := time.NewTicker(bl.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-bl.ctx.Done():
			return
		case <-t.C:
			bl.maintain()
		}
	}
}

func (bl *Balancer) maintain() {
	v := bl.view.Load()
	nowT := time.Now()
	now := nowT.UnixNano()
	var remove []*Backend
	prune := nowT.Sub(bl.lastPrune) >= pruneEvery
	if prune {
		bl.lastPrune = nowT
	}
	for _, b := range v.backends {
		if prune {
			b.recentUsers(now, v.cfg.Drain.Idle) // forget users gone quiet
		}
		if e := b.ejectedTo.Load(); e != 0 && now >= e {
			if b.ejectedTo.CompareAndSwap(e, 0) {
				bl.log.Info("backend back from ejection", "backend", b.name)
			}
		}
		b.updateWeight(nowT, v.cfg.Health.SlowStart)
		if !b.draining.Load() || b.drained.Load() {
			continue
		}
		b.mu.Lock()
		start, removing := b.drainStart, b.removing
		b.mu.Unlock()
		idleFrom := max(b.lastPin.Load(), start.UnixNano())
		idle := b.inflight.Load() == 0
		var why string
		switch {
		case idle && (v.signer == nil || v.cfg.Sticky.Spill):
			why = "no pinned users to wait for"
		case idle && now-idleFrom >= int64(v.cfg.Drain.Idle):
			why = "pinned users idle"
		case nowT.Sub(start) >= v.cfg.Drain.Deadline:
			why = "deadline"
		default:
			continue
		}
		if !b.drained.CompareAndSwap(false, true) {
			continue
		}
		bl.m.drains.WithLabelValues(b.name, "drained").Inc()
		ts := b.tunnelList()
		bl.log.Info("backend drained", "backend", b.name, "why", why, "websockets", len(ts))
		bl.closeTunnelsAsync(ts, 1012, "service restart", v.cfg.WebSocket.CloseWindow)
		if removing {
			remove = append(remove, b)
		}
	}
	for _, b := range remove {
		bl.removeNow(b)
	}
}

// pruneEvery is how often the pinned-user maps drop users idle for longer
// than drain.idle, so they stay bounded without anyone reading them.
const pruneEvery = 5 * time.Second

// errors the admin API maps to statuses.
var (
	errNotFound = errors.New("no such backend")
	errExists   = errors.New("a backend with that name exists")
)

// Drain stops sending new users to the named backend; users pinned to it
// keep coming until idle for drain.idle or until drain.deadline (with
// sticky.spill they are moved at once). Then it is drained, and its
// WebSockets are closed with 1012 spread over websocket.close_window.
func (bl *Balancer) Drain(name string) error {
	b := bl.view.Load().byName[name]
	if b == nil {
		return errNotFound
	}
	b.mu.Lock()
	if !b.draining.Load() {
		b.drainStart = time.Now()
		b.draining.Store(true)
		bl.m.drains.WithLabelValues(name, "started").Inc()
		bl.log.Info("backend draining", "backend", name)
	}
	b.mu.Unlock()
	return nil
}

// Undrain puts a draining or drained backend back into rotation (and
// cancels a pending removal).
func (bl *Balancer) Undrain(name string) error {
	b := bl.view.Load().byName[name]
	if b == nil {
		return errNotFound
	}
	b.mu.Lock()
	b.removing = false
	b.draining.Store(false)
	b.drained.Store(false)
	b.mu.Unlock()
	bl.log.Info("backend undrained", "backend", name)
	return nil
}

// Add adds a backend at runtime. It is not written to the config file: a
// reload replaces the backend set with the file's.
func (bl *Balancer) Add(bc BackendConfig) (*Backend, error) {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	v := bl.view.Load()
	if bc.Weight == 0 {
		bc.Weight = 1
	}
	if bc.Name == "" {
		for i := len(v.backends) + 1; ; i++ {
			if n := fmt.Sprintf("b%d", i); v.byName[n] == nil {
				bc.Name = n
				break
			}
		}
	}
	if !backendNameRE.MatchString(bc.Name) {
		return nil, fieldErr("name", "%q: use 1-64 letters, digits, '-', '_' or '.'", bc.Name)
	}
	if v.byName[bc.Name] != nil {
		return nil, errExists
	}
	if bc.Weight < 0 || bc.Weight > 10000 {
		return nil, fieldErr("weight", "%d is not between 1 and 10000", bc.Weight)
	}
	u, err := parseBackendURL(bc.URL)
	if err != nil {
		return nil, fieldErr("url", "%v", err)
	}
	b := bl.newBackend(bc.Name, u, bc.Weight)
	nv := *v
	nv.backends = append(slices.Clip(v.backends), b)
	nv.byName = cloneMap(v.byName)
	nv.byName[b.name] = b
	nv.cfg = withBackends(v.cfg, nv.backends)
	bl.startHealth(b, v.cfg.Health.Active)
	b.startRamp(time.Now(), v.cfg.Health.SlowStart)
	bl.view.Store(&nv)
	bl.log.Info("backend added", "backend", b.name, "url", u.String())
	return b, nil
}

// Remove drains the named backend and removes it once drained.
func (bl *Balancer) Remove(name string) error {
	b := bl.view.Load().byName[name]
	if b == nil {
		return errNotFound
	}
	b.mu.Lock()
	b.removing = true
	b.mu.Unlock()
	if b.drained.Load() {
		bl.removeNow(b)
		return nil
	}
	return bl.Drain(name)
}

// removeNow takes b out of the view, if it is still there (a reload may
// have replaced it with a backend of the same name).
func (bl *Balancer) removeNow(b *Backend) {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	v := bl.view.Load()
	name := b.name
	if v.byName[name] != b {
		return
	}
	nv := *v
	nv.backends = slices.DeleteFunc(slices.Clone(v.backends), func(x *Backend) bool { return x == b })
	nv.byName = cloneMap(v.byName)
	delete(nv.byName, name)
	nv.cfg = withBackends(v.cfg, nv.backends)
	bl.view.Store(&nv)
	bl.retire(b, v.cfg.WebSocket.CloseWindow)
	bl.log.Info("backend removed", "backend", name)
}

// retire stops a backend that left the view: health checks stop, idle
// connections close, WebSockets get 1012 spread over window. Requests in
// flight finish.
func (bl *Balancer) retire(b *Backend, window time.Duration) {
	b.mu.Lock()
	b.removed = true
	stop := b.stopHealth
	b.mu.Unlock()
	if stop != nil {
		stop()
	}
	b.up.Close()
	bl.closeTunnelsAsync(b.tunnelList(), 1012, "service restart", window)
	if bl.view.Load().byName[b.name] == nil {
		bl.m.forget(b.name) // a same-named successor keeps the series
	}
}

func cloneMap(m map[string]*Backend) map[string]*Backend {
	c := make(map[string]*Backend, len(m)+1)
	for k, v := range m {
		c[k] = v
	}
	return c
}

// withBackends returns a copy of cfg whose backend list matches bs, so the
// view's config stays the truth for the admin API.
func withBackends(cfg *Config, bs []*Backend) *Config {
	c := *cfg
	c.Backends = make([]BackendConfig, len(bs))
	for i, b := range bs {
		c.Backends[i] = BackendConfig{Name: b.name, URL: b.url.String(), Weight: int(b.baseWeight())}
	}
	return &c
}

// Apply switches to cfg (a reload). Backends whose name and URL are
// unchanged keep their state, in-flight requests and WebSockets; removed
// ones finish their in-flight requests and their WebSockets get 1012 spread
// over websocket.close_window. An invalid cfg is refused and nothing
// changes. Timeouts, limits, retries, trusted proxies and the access log
// are applied by starting a new engine on the same listeners: new
// connections go to it, the old one finishes its requests and closes its
// idle connections, and WebSockets stay open. Listener, TLS, admin and log
// format changes need a restart; they are returned as warnings.
func (bl *Balancer) Apply(cfg *Config) (warnings []string, err error) {
	bl.reloadMu.Lock()
	defer bl.reloadMu.Unlock()
	if err := cfg.Validate(); err != nil {
		bl.m.reloads.WithLabelValues("error").Inc()
		return nil, err
	}
	bl.mu.Lock()
	old := bl.view.Load()
	nv, err := bl.buildView(cfg, old)
	if err != nil {
		bl.mu.Unlock()
		bl.m.reloads.WithLabelValues("error").Inc()
		return nil, err
	}
	bl.view.Store(nv)
	bl.mu.Unlock()
	for _, b := range nv.backends {
		ob := old.byName[b.name]
		if ob != b {
			bl.startHealth(b, cfg.Health.Active)
			b.startRamp(time.Now(), cfg.Health.SlowStart)
			continue
		}
		b.mu.Lock()
		same := b.healthCfg == cfg.Health.Active
		b.mu.Unlock()
		if !same {
			bl.restartHealth(b, cfg.Health.Active)
		}
	}
	for _, ob := range old.backends {
		if nv.byName[ob.name] != ob {
			bl.retire(ob, cfg.WebSocket.CloseWindow)
		}
	}
	if !sameEngine(old.cfg, cfg) {
		bl.swapServer(cfg)
	}
	warnings = restartNeeded(old.cfg, cfg)
	for _, w := range warnings {
		bl.log.Warn("config change needs a restart", "field", w)
	}
	bl.m.reloads.WithLabelValues("ok").Inc()
	bl.log.Info("config applied", "backends", len(nv.backends), "policy", cfg.Policy.Name)
	return warnings, nil
}

// restartNeeded lists the fields a reload cannot apply: the listeners, TLS
// and the logger. (Engine settings are applied by a new engine generation.)
func restartNeeded(a, b *Config) []string {
	var w []string
	if a.Listen != b.Listen {
		w = append(w, "listen")
	}
	if a.TLS != b.TLS {
		w = append(w, "tls")
	}
	if a.Admin != b.Admin {
		w = append(w, "admin")
	}
	if a.Log.Level != b.Log.Level || a.Log.Format != b.Log.Format {
		w = append(w, "log")
	}
	return w
}

// Reload calls Options.Reload and applies its config.
func (bl *Balancer) Reload() ([]string, error) {
	if bl.opts.Reload == nil {
		return nil, errors.New("reload is not configured")
	}
	cfg, err := bl.opts.Reload()
	if err != nil {
		bl.m.reloads.WithLabelValues("error").Inc()
		bl.log.Error("reload refused; the old config keeps running", "err", err)
		return nil, err
	}
	w, err := bl.Apply(cfg)
	if err != nil {
		bl.log.Error("reload refused; the old config keeps running", "err", err)
	}
	return w, err
}

// Config returns the running config (backends as they are now).
func (bl *Balancer) Config() *Config { return bl.view.Load().cfg }

// Shutdown stops accepting connections, lets in-flight requests finish and
// closes WebSockets with 1001 spread over the time left until ctx's
// deadline (shutdown.grace when ctx has none). It returns when all is
// closed or ctx ends, and then closes whatever is left.
func (bl *Balancer) Shutdown(ctx context.Context) error {
	bl.closing.Store(true)
	v := bl.view.Load()
	window := v.cfg.Shutdown.Grace
	if dl, ok := ctx.Deadline(); ok {
		window = time.Until(dl)
	}
	// Leave a tenth of the window for the last closes to be sent.
	window = window * 9 / 10
	var ts []*proxy.Tunnel
	for _, b := range v.backends {
		ts = append(ts, b.tunnelList()...)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		bl.closeTunnels(ts, 1001, "going away", window, ctx.Done())
		for _, t := range ts {
			select {
			case <-t.Closed():
			case <-ctx.Done():
				return
			}
		}
	}()
	err := bl.shutdownServers(ctx)
	select {
	case <-closed:
	case <-ctx.Done():
	}
	bl.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return ctx.Err()
}

// Close stops everything at once: listeners, connections, WebSockets,
// health checks. Safe to call more than once.
func (bl *Balancer) Close() error {
	bl.closing.Store(true)
	err := bl.closeServers()
	bl.cancel()
	bl.wg.Wait()
	return err
}

// BackendStatus is one backend as GET /api/backends reports it.
type BackendStatus struct {
	Name   string  `json:"name"`
	URL    string  `json:"url"`
	Weight float64 `json:"weight"`
	// State is one word, by precedence: drained, down, ejected, draining,
	// up. A drain in progress on a backend that is down or ejected reads
	// as down or ejected here; Draining tells it apart.
	State string `json:"state"`
	// Draining is true from Drain (or DELETE) until Undrain, whether the
	// drain is in progress or done, whatever the backend's health: a
	// backend that is "down" and Draining gets no new users once it
	// comes back up.
	Draining    bool   `json:"draining"`
	InFlight    int64  `json:"in_flight"`
	Total       uint64 `json:"total"`
	PinnedUsers int    `json:"pinned_users"`
	WebSockets  int64  `json:"websockets"`
	Removing    bool   `json:"removing,omitempty"`
}

// Backends reports every backend's state.
func (bl *Balancer) Backends() []BackendStatus {
	v := bl.view.Load()
	now := time.Now().UnixNano()
	out := make([]BackendStatus, 0, len(v.backends))
	for _, b := range v.backends {
		b.mu.Lock()
		removing := b.removing
		b.mu.Unlock()
		out = append(out, BackendStatus{
			Name: b.name, URL: b.url.String(), Weight: b.effectiveWeight(), State: b.state(now),
			Draining: b.draining.Load() || b.drained.Load(),
			InFlight: b.inflight.Load(), Total: b.total.Load(),
			PinnedUsers: b.recentUsers(now, v.cfg.Drain.Idle), WebSockets: b.wsOpen.Load(),
			Removing: removing,
		})
	}
	return out
}

func (bl *Balancer) status(name string) (BackendStatus, bool) {
	for _, s := range bl.Backends() {
		if s.Name == name {
			return s, true
		}
	}
	return BackendStatus{}, false
}
