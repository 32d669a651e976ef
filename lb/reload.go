package lb

import (
	"errors"
	"fmt"
	"time"
)

// Apply switches to cfg (a reload), which it validates, fills in with
// defaults (ApplyDefaults) and keeps, so cfg must not change afterwards.
// Backends whose name and URL are
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
	cfg.ApplyDefaults()
	fresh := bl.syncSources(cfg)
	defer bl.startSources(fresh)
	bl.mu.Lock()
	old := bl.view.Load()
	nv, err := bl.buildView(bl.expand(cfg), old)
	if err != nil {
		bl.mu.Unlock()
		bl.m.reloads.WithLabelValues("error").Inc()
		return nil, err
	}
	bl.install(nv, old)
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
	policy := cfg.Policy.Name
	if bl.opts.Policy != nil {
		policy = fmt.Sprintf("%T", bl.opts.Policy)
	}
	bl.log.Info("config applied", "backends", len(nv.backends), "policy", policy)
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
	if a.HTTP2.Disabled != b.HTTP2.Disabled {
		w = append(w, "http2.disabled")
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
