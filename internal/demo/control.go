package demo

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Balancer is what the control API needs of the balancer in front of the
// fleet: a new instance joins it, a drained one leaves it, and the listing
// shows the balancer's view (draining, drained) over the fleet's.
type Balancer interface {
	AddBackend(ctx context.Context, name, url string) error
	Drain(ctx context.Context, name string) error
	Undrain(ctx context.Context, name string) error
	// BackendState is the balancer's state of the backend ("up", "down",
	// "ejected", "draining", "drained"), or "" if it has none, and the
	// requests it has served so far.
	BackendState(name string) (state string, total uint64)
}

// Control serves the demo's control API on the admin listener:
//
//	GET  /api/instances                 [{"name","state","pid","addr"}]
//	POST /api/instances                 add one; {"name": ...}
//	POST /api/instances/{name}/crash    SIGKILL it
//	POST /api/instances/{name}/restart  start it again on its address
//	POST /api/instances/{name}/drain    no new users; pinned ones finish
//	POST /api/instances/{name}/undrain  take new users again
type Control struct {
	Fleet    *Fleet
	Balancer Balancer

	mu    sync.Mutex
	rates map[string]float64 // requests/s per instance over the last sample
	last  map[string]uint64
	at    time.Time
}

// Run samples the balancer's request counters once a second, for the
// requests/s the listing shows, until ctx ends.
func (c *Control) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		c.sample(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (c *Control) sample(now time.Time) {
	if c.Balancer == nil {
		return
	}
	totals := map[string]uint64{}
	for _, in := range c.Fleet.List() {
		_, totals[in.Name] = c.Balancer.BackendState(in.Name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if secs := now.Sub(c.at).Seconds(); c.last != nil && secs > 0 {
		c.rates = map[string]float64{}
		for name, total := range totals {
			if prev, ok := c.last[name]; ok && total >= prev {
				c.rates[name] = float64(total-prev) / secs
			}
		}
	}
	c.last, c.at = totals, now
}

// Register adds the control routes to mux.
func (c *Control) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/instances", c.list)
	mux.HandleFunc("POST /api/instances", c.add)
	mux.HandleFunc("POST /api/instances/{name}/{action}", c.act)
}

func (c *Control) list(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.instances())
}

// instances merges the balancer's view into the fleet's: a running process
// that the balancer drains is "draining", not "up". Only an instance that
// serves (up or draining) shows a rate: the last sample of one that just
// went down is stale, and it serves nothing now.
func (c *Control) instances() []InstanceInfo {
	list := c.Fleet.List()
	for i := range list {
		if list[i].State != StateUp || c.Balancer == nil {
			continue
		}
		switch st, _ := c.Balancer.BackendState(list[i].Name); st {
		case "draining", "drained", "ejected", "down":
			list[i].State = State(st)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range list {
		if list[i].State == StateUp || list[i].State == "draining" {
			list[i].RPS = c.rates[list[i].Name]
		}
	}
	return list
}

func (c *Control) add(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	in, err := c.Fleet.Add(ctx)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if c.Balancer != nil {
		if err := c.Balancer.AddBackend(ctx, in.Name, "http://"+in.Addr); err != nil {
			writeError(w, http.StatusInternalServerError, "instance started but the balancer refused it: "+err.Error())
			return
		}
	}
	writeJSON(w, http.StatusCreated, in)
}

func (c *Control) act(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	var err error
	switch r.PathValue("action") {
	case "crash":
		err = c.Fleet.Crash(name)
	case "restart":
		_, err = c.Fleet.Restart(ctx, name)
		if err == nil && c.Balancer != nil {
			// A restarted instance is a fresh start: take new users again.
			err = c.Balancer.Undrain(ctx, name)
		}
	case "drain":
		err = c.requireBalancer()
		if err == nil {
			err = c.Balancer.Drain(ctx, name)
		}
	case "undrain":
		err = c.requireBalancer()
		if err == nil {
			err = c.Balancer.Undrain(ctx, name)
		}
	default:
		writeError(w, http.StatusNotFound, "unknown action: use crash, restart, drain or undrain")
		return
	}
	if err != nil {
		status := http.StatusConflict
		if _, ferr := c.Fleet.get(name); ferr != nil {
			status = http.StatusNotFound
		}
		writeError(w, status, err.Error())
		return
	}
	for _, in := range c.instances() {
		if in.Name == name {
			writeJSON(w, http.StatusOK, in)
			return
		}
	}
	writeError(w, http.StatusNotFound, "no instance named "+name)
}

func (c *Control) requireBalancer() error {
	if c.Balancer == nil {
		return errNoBalancer
	}
	return nil
}

type controlError string

func (e controlError) Error() string { return string(e) }

const errNoBalancer = controlError("no balancer to drain in")

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
