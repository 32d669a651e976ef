package lb

import "time"

// Config returns the running config (backends as they are now).
func (bl *Balancer) Config() *Config { return bl.view.Load().cfg }

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
	// Source is the DNS discovery URL the backend came from; empty for
	// one listed in the config or added through the API.
	Source string `json:"source,omitempty"`
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
			Removing: removing, Source: b.source,
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
