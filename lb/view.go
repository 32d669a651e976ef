package lb

import (
	"net/url"
	"time"
)

// view is everything routing reads, swapped whole on every change so the
// request path takes no lock.
type view struct {
	cfg        *Config
	backends   []*Backend
	byName     map[string]*Backend
	policy     Policy
	keyed      bool    // policy wants the request's key
	hashKey    HashKey // what the key is
	signer     *Signer
	cookieName string
	// secrets sign and verify sticky cookies; generated says they were
	// made up because the config has none. Both carry over a view
	// without stickiness, so turning it off and on keeps cookies valid.
	secrets   [][]byte
	generated bool
}

// buildView makes the routing view for cfg, reusing the backends of old
// whose name and URL are unchanged (with their counters, health, drain
// state and WebSockets). It changes nothing, not even the backends it
// reuses: install makes the view live.
func (bl *Balancer) buildView(cfg *Config, old *view) (*view, error) {
	v := &view{cfg: cfg, byName: map[string]*Backend{}}
	v.hashKey, _ = parseHashKey(cfg.Policy.Key) // validated
	kind, _ := policyKindOf(cfg.Policy.Name)    // validated
	switch {
	case bl.opts.Policy != nil:
		v.policy, v.keyed = bl.opts.Policy, true
	case old != nil && old.cfg.Policy == cfg.Policy:
		v.policy, v.keyed = old.policy, old.keyed // keep round-robin position
	default:
		p, err := kind.build(cfg.Policy)
		if err != nil {
			return nil, err
		}
		v.policy, v.keyed = p, kind.keyed
	}
	if old != nil {
		v.secrets, v.generated = old.secrets, old.generated
	}
	if cfg.Sticky.Mode == "cookie" {
		switch {
		case len(cfg.Sticky.Secrets) > 0:
			v.secrets, v.generated = nil, false
			for _, s := range cfg.Sticky.Secrets {
				v.secrets = append(v.secrets, []byte(s))
			}
		case !v.generated:
			// Generated once and kept across reloads, so cookies stay
			// valid; never secrets the config no longer lists.
			v.secrets, v.generated = [][]byte{[]byte(GenerateSecret())}, true
		}
		s, err := NewSigner(cfg.Sticky.Cookie, v.secrets)
		if err != nil {
			return nil, err
		}
		v.signer, v.cookieName = s, cfg.Sticky.Cookie
	}
	for _, bc := range cfg.Backends {
		u, _ := parseBackendURL(bc.URL) // validated
		b := old.backend(bc.Name, u)
		if b != nil && b.sendProxy != bc.SendProxy {
			b = nil // a new upstream: its connections start differently
		}
		if b == nil {
			b = bl.newBackend(bc, u)
		}
		v.backends = append(v.backends, b)
		v.byName[b.name] = b
	}
	return v, nil
}

// backend is v's backend named name if it has URL u; v may be nil.
func (v *view) backend(name string, u *url.URL) *Backend {
	if v == nil {
		return nil
	}
	if b := v.byName[name]; b != nil && b.url.String() == u.String() {
		return b
	}
	return nil
}

// install makes nv, built from old (nil at the start), the view routing
// reads; callers hold bl.mu. Here the built view meets the running
// balancer: new backends get their metrics, kept ones the weight nv's
// config gives them, and a secret generated just now is warned about.
func (bl *Balancer) install(nv, old *view) {
	now := time.Now()
	for i, b := range nv.backends {
		if old.backend(b.name, b.url) == b {
			b.setWeight(nv.cfg.Backends[i].Weight, now, nv.cfg.Health.SlowStart)
		} else {
			b.bm = bl.m.forBackend(b.name)
		}
	}
	if nv.generated && (old == nil || !old.generated) {
		bl.log.Warn("no sticky secret configured: generated one; sticky cookies will not survive a restart and other balancers will not accept them. Set sticky.secrets, --secret or UNSTUCK_SECRET.")
	}
	bl.view.Store(nv)
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
		c.Backends[i] = BackendConfig{Name: b.name, URL: b.url.String(), Weight: int(b.baseWeight()), SendProxy: b.sendProxy,
			source: b.source, tlsName: b.tlsName}
	}
	return &c
}
