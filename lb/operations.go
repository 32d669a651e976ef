package lb

import (
	"errors"
	"slices"
	"time"
)

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

// Add adds a backend at runtime; it is checked as a backend in the config
// file is, and a name is chosen when bc has none. It is not written to the
// config file: a reload replaces the backend set with the file's. DNS
// discovery sources belong in the config (or --backend), not here.
func (bl *Balancer) Add(bc BackendConfig) (*Backend, error) {
	if isDNSURL(bc.URL) {
		return nil, fieldErr("url", "a DNS discovery source (%s) goes in the config file or --backend, not the admin API", bc.URL)
	}
	bc.source, bc.tlsName = "", ""
	return bl.add(bc)
}

// add is Add for a backend of any origin, DNS discovery's included.
func (bl *Balancer) add(bc BackendConfig) (*Backend, error) {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	v := bl.view.Load()
	if bc.Name == "" {
		for i := len(v.backends); ; i++ {
			if n := defaultBackendName(i); v.byName[n] == nil {
				bc.Name = n
				break
			}
		}
	}
	if err := bc.validate(""); err != nil {
		return nil, err
	}
	if v.byName[bc.Name] != nil {
		return nil, errExists
	}
	setDefault(&bc.Weight, 1)
	u, _ := parseBackendURL(bc.URL) // validated
	b := bl.newBackend(bc, u)
	nv := *v
	nv.backends = append(slices.Clip(v.backends), b)
	nv.byName = cloneMap(v.byName)
	nv.byName[b.name] = b
	nv.cfg = withBackends(v.cfg, nv.backends)
	b.startRamp(time.Now(), v.cfg.Health.SlowStart)
	bl.install(&nv, v)
	bl.startHealth(b, v.cfg.Health.Active)
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
	bl.install(&nv, v)
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
