package lb

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// DNS discovery: a backend entry whose URL is dns://HOST:PORT or
// dns+srv://NAME (discovery_url.go) stands for the instances the name
// resolves to, as they come and go. Each source re-resolves on its
// interval, and sooner after one of its backends fails. Every address
// becomes a backend named after the entry and the address, so every
// balancer and every resolution agree on its name and sticky cookies
// stay valid. A new address is added as the admin API adds a backend
// (slow start, health checks); a vanished one is removed as DELETE does:
// drained first (its pinned users re-pinned at once with sticky.spill,
// else once idle for drain.idle), in-flight requests finish. A failing or
// empty answer changes nothing: the last good set stays, and the failure
// is logged and counted.

// dnsSource is one discovery entry with its last good answer.
type dnsSource struct {
	spec      *dnsSpec
	prefix    string // the entry's name: the prefix of its backends' names
	weight    int
	sendProxy bool

	kick   chan struct{} // resolve now (a backend failed)
	cancel context.CancelFunc

	mu       sync.Mutex
	targets  []dnsTarget // last good answer, sorted
	good     bool        // an answer was ever had
	last     time.Time   // last resolution, whatever its result
	result   string      // ok, error, empty
	lastErr  string
	failures int // in a row
}

// dnsTarget is one address a source resolved; host is the DNS name it
// came from (for TLS verification).
type dnsTarget struct {
	addr netip.AddrPort
	host string
}

func (s *dnsSource) backendConfig(t dnsTarget) BackendConfig {
	u := url.URL{Scheme: s.spec.scheme, Host: t.addr.String()}
	bc := BackendConfig{Name: discoveredName(s.prefix, t.addr), URL: u.String(), Weight: s.weight, SendProxy: s.sendProxy,
		source: s.spec.raw}
	if s.spec.scheme == "https" {
		bc.tlsName = t.host
	}
	return bc
}

// discovery holds the sources of the running config by entry name.
type discovery struct {
	mu      sync.Mutex
	sources map[string]*dnsSource
}

// syncSources makes the sources match cfg's DNS entries: kept ones (same
// name, URL) keep their answer and take the new weight, new ones are
// resolved once now (bounded by their timeout) so that the first view
// has their backends, dropped ones stop. It returns the new ones, whose
// loops startSources starts once their backends are live.
func (bl *Balancer) syncSources(cfg *Config) (fresh []*dnsSource) {
	d := &bl.disc
	d.mu.Lock()
	old := d.sources
	d.sources = map[string]*dnsSource{}
	for i, bc := range cfg.Backends {
		if !isDNSURL(bc.URL) {
			continue
		}
		name := bc.nameOrDefault(i)
		if s := old[name]; s != nil && s.spec.raw == bc.URL {
			s.mu.Lock()
			s.weight, s.sendProxy = bc.Weight, bc.SendProxy
			s.mu.Unlock()
			d.sources[name] = s
			delete(old, name)
			continue
		}
		spec, _ := parseDNSURL(bc.URL) // validated
		s := &dnsSource{spec: spec, prefix: name, weight: bc.Weight, sendProxy: bc.SendProxy, kick: make(chan struct{}, 1), cancel: func() {}}
		d.sources[name] = s
		fresh = append(fresh, s)
	}
	d.mu.Unlock()
	for _, s := range old {
		s.cancel()
		bl.m.deploy.dnsTargets.DeleteLabelValues(s.spec.raw)
	}
	var wg sync.WaitGroup
	for _, s := range fresh {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bl.resolveOnce(s)
		}()
	}
	wg.Wait()
	return fresh
}

// startSources starts the resolution loops of sources syncSources made.
func (bl *Balancer) startSources(fresh []*dnsSource) {
	for _, s := range fresh {
		ctx, cancel := context.WithCancel(bl.ctx)
		s.cancel = cancel
		bl.wg.Add(1)
		go func() {
			defer bl.wg.Done()
			bl.watchSource(ctx, s)
		}()
	}
}

// expand returns cfg with each DNS entry replaced by a backend per address
// of its source's last good answer (none before the first). Names that
// collide with an entry listed by hand are skipped, and logged.
func (bl *Balancer) expand(cfg *Config) *Config {
	if !slices.ContainsFunc(cfg.Backends, func(b BackendConfig) bool { return isDNSURL(b.URL) }) {
		return cfg
	}
	out := *cfg
	out.Backends = nil
	static := map[string]bool{}
	for _, bc := range cfg.Backends {
		if !isDNSURL(bc.URL) {
			static[bc.Name] = true
		}
	}
	bl.disc.mu.Lock()
	defer bl.disc.mu.Unlock()
	for i, bc := range cfg.Backends {
		if !isDNSURL(bc.URL) {
			out.Backends = append(out.Backends, bc)
			continue
		}
		s := bl.disc.sources[bc.nameOrDefault(i)]
		if s == nil {
			continue
		}
		s.mu.Lock()
		for _, t := range s.targets {
			b := s.backendConfig(t)
			if static[b.Name] {
				bl.log.Warn("discovered backend has the name of a listed one: skipped", "backend", b.Name, "source", s.spec.raw)
				continue
			}
			out.Backends = append(out.Backends, b)
		}
		s.mu.Unlock()
	}
	return &out
}

// watchSource re-resolves s every interval, after a failure sooner (1s,
// doubling up to the interval), and when kicked, at most once a second.
func (bl *Balancer) watchSource(ctx context.Context, s *dnsSource) {
	t := time.NewTimer(bl.nextResolve(s))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			s.mu.Lock()
			wait := time.Second - time.Since(s.last)
			s.mu.Unlock()
			if wait > 0 {
				t.Reset(min(wait, bl.nextResolve(s))) // soon, not now
				continue
			}
		case <-t.C:
		}
		changed := bl.resolveOnce(s)
		if changed != nil && ctx.Err() == nil {
			bl.applyTargets(s, changed)
		}
		t.Reset(bl.nextResolve(s))
	}
}

func (bl *Balancer) nextResolve(s *dnsSource) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures == 0 {
		return s.spec.interval
	}
	return min(time.Second<<min(s.failures-1, 10), s.spec.interval)
}

// resolveOnce resolves s and records the outcome; it returns the old set
// when a good answer changed it (nil otherwise), and the new set is then
// s.targets.
func (bl *Balancer) resolveOnce(s *dnsSource) (old []dnsTarget) {
	ctx, cancel := context.WithTimeout(bl.ctx, s.spec.timeout)
	defer cancel()
	ts, err := s.spec.resolve(ctx)
	result := "ok"
	switch {
	case err != nil:
		result = "error"
	case len(ts) == 0:
		result = "empty"
	}
	bl.m.deploy.dns.WithLabelValues(s.spec.raw, result).Inc()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.result = time.Now(), result
	if result != "ok" {
		s.failures++
		s.lastErr = "no addresses"
		if err != nil {
			s.lastErr = err.Error()
		}
		bl.log.Warn("DNS discovery: keeping the last good set", "source", s.spec.raw, "result", result,
			"err", s.lastErr, "backends", len(s.targets))
		return nil
	}
	s.failures, s.lastErr = 0, ""
	bl.m.deploy.dnsTargets.WithLabelValues(s.spec.raw).Set(float64(len(ts)))
	if s.good && slices.Equal(ts, s.targets) {
		return nil
	}
	old = s.targets
	if old == nil {
		old = []dnsTarget{}
	}
	s.targets, s.good = ts, true
	return old
}

// applyTargets adds the backends of addresses that appeared and removes
// (drain first) those of addresses that vanished, one Add or Remove each.
// An address that comes back while its backend drains is undrained.
func (bl *Balancer) applyTargets(s *dnsSource, old []dnsTarget) {
	bl.reloadMu.Lock() // not while a reload expands the config
	defer bl.reloadMu.Unlock()
	bl.disc.mu.Lock()
	current := bl.disc.sources[s.prefix] == s
	bl.disc.mu.Unlock()
	if !current {
		return // a reload dropped or replaced the source
	}
	s.mu.Lock()
	now := slices.Clone(s.targets)
	s.mu.Unlock()
	for _, t := range now {
		bc := s.backendConfig(t)
		b := bl.view.Load().byName[bc.Name]
		switch {
		case b == nil:
			if _, err := bl.add(bc); err != nil {
				bl.log.Warn("DNS discovery: cannot add backend", "backend", bc.Name, "source", s.spec.raw, "err", err)
				continue
			}
			bl.log.Info("DNS discovery: backend appeared", "backend", bc.Name, "source", s.spec.raw)
		case b.source == s.spec.raw && b.isRemoving():
			bl.Undrain(bc.Name)
			bl.log.Info("DNS discovery: draining backend came back", "backend", bc.Name, "source", s.spec.raw)
		}
	}
	for _, t := range old {
		if slices.Contains(now, t) {
			continue
		}
		name := s.backendConfig(t).Name
		if b := bl.view.Load().byName[name]; b != nil && b.source == s.spec.raw {
			bl.log.Info("DNS discovery: backend vanished: draining, then removing", "backend", name, "source", s.spec.raw)
			bl.Remove(name)
		}
	}
}

// kickSource asks b's source, if it has one, to resolve now: a backend
// that fails may be gone from DNS already.
func (bl *Balancer) kickSource(b *Backend) {
	if b.source == "" {
		return
	}
	bl.disc.mu.Lock()
	defer bl.disc.mu.Unlock()
	for _, s := range bl.disc.sources {
		if s.spec.raw == b.source {
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
	}
}

// resolve asks DNS for the spec's addresses, sorted. Any error fails the
// whole answer: a partial one would drain healthy backends.
func (sp *dnsSpec) resolve(ctx context.Context) ([]dnsTarget, error) {
	r := net.DefaultResolver
	if sp.resolver != "" {
		addr := sp.resolver
		r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
	}
	type hostPort struct {
		host string
		port uint16
	}
	hosts := []hostPort{{sp.name, sp.port}}
	if sp.srv {
		_, recs, err := r.LookupSRV(ctx, "", "", sp.name)
		if notFound(err) {
			return nil, nil // no such name, or no records: empty
		}
		if err != nil {
			return nil, err
		}
		hosts = hosts[:0]
		for _, rec := range recs {
			if rec.Priority == recs[0].Priority { // sorted by priority: the preferred group
				hosts = append(hosts, hostPort{strings.TrimSuffix(rec.Target, "."), rec.Port})
			}
		}
	}
	var out []dnsTarget
	for _, h := range hosts {
		ips, err := r.LookupNetIP(ctx, sp.family, h.host)
		if notFound(err) {
			continue // a name without addresses (yet): empty, not failed
		}
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			t := dnsTarget{addr: netip.AddrPortFrom(ip.Unmap(), h.port), host: h.host}
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	slices.SortFunc(out, func(a, b dnsTarget) int { return a.addr.Compare(b.addr) })
	return out, nil
}

func notFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// DiscoveryStatus is one DNS discovery source as GET /api/discovery
// reports it.
type DiscoveryStatus struct {
	Name     string    `json:"name"`
	URL      string    `json:"url"`
	Backends []string  `json:"backends"` // names, from the last good answer
	Last     time.Time `json:"last_resolved"`
	Result   string    `json:"last_result"` // ok, error, empty
	Error    string    `json:"last_error,omitempty"`
	// Failures counts failed or empty answers in a row; the last good
	// set is kept meanwhile.
	Failures int `json:"failures"`
}

// Discovery reports every DNS discovery source.
func (bl *Balancer) Discovery() []DiscoveryStatus {
	bl.disc.mu.Lock()
	srcs := make([]*dnsSource, 0, len(bl.disc.sources))
	for _, s := range bl.disc.sources {
		srcs = append(srcs, s)
	}
	bl.disc.mu.Unlock()
	slices.SortFunc(srcs, func(a, b *dnsSource) int { return strings.Compare(a.prefix, b.prefix) })
	out := make([]DiscoveryStatus, 0, len(srcs))
	for _, s := range srcs {
		s.mu.Lock()
		st := DiscoveryStatus{Name: s.prefix, URL: s.spec.raw, Backends: []string{}, Last: s.last, Result: s.result,
			Error: s.lastErr, Failures: s.failures}
		for _, t := range s.targets {
			st.Backends = append(st.Backends, discoveredName(s.prefix, t.addr))
		}
		s.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// nameOrDefault is the entry's name, or the one it takes by default: for
// a DNS source, its name's first label; else b1, b2, ... by position.
func (b BackendConfig) nameOrDefault(i int) string {
	if b.Name != "" {
		return b.Name
	}
	if isDNSURL(b.URL) {
		if sp, err := parseDNSURL(b.URL); err == nil {
			return dnsPrefix(sp)
		}
	}
	return defaultBackendName(i)
}

// isRemoving reports whether b is being drained to be removed.
func (b *Backend) isRemoving() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.removing
}
