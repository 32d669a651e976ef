package lb

import (
	"math"
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
}

// buildView makes the routing view for cfg, reusing the backends of old
// whose name and URL are unchanged (with their counters, health, drain
// state and WebSockets).
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
