package shop

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// controlClient forwards the page's chaos buttons to the demo's control API
// (on the admin listener), so the page needs no cross-origin access to it.
type controlClient struct {
	base   string // e.g. http://127.0.0.1:9090; empty when there is no control API
	self   string // this instance's name
	client *http.Client
}

func (c *controlClient) enabled() bool { return c.base != "" }

// list answers GET /api/fleet with the control API's GET /api/instances.
func (c *controlClient) list(w http.ResponseWriter, r *http.Request) {
	if !c.enabled() {
		writeJSON(w, http.StatusOK, []map[string]string{{"name": c.self, "state": "up"}})
		return
	}
	c.forward(r.Context(), w, http.MethodGet, "/api/instances")
}

// act answers POST /api/fleet/{name}/{action}. When the page asks this very
// instance to crash, the answer goes out first and the request is made
// after it, or the browser would see its own request cut off by the crash.
func (c *controlClient) act(w http.ResponseWriter, r *http.Request) {
	if !c.enabled() {
		writeError(w, http.StatusNotImplemented, "no control API: run the shop under `unstuck demo`")
		return
	}
	name, action := r.PathValue("name"), r.PathValue("action")
	switch action {
	case "crash", "restart", "drain", "undrain":
	default:
		writeError(w, http.StatusNotFound, "unknown action "+action+": crash, restart, drain or undrain")
		return
	}
	path := "/api/instances/" + name + "/" + action
	if name == c.self && action == "crash" {
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "crashing " + name})
		http.NewResponseController(w).Flush()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.forward(ctx, discard{}, http.MethodPost, path)
		}()
		return
	}
	c.forward(r.Context(), w, http.MethodPost, path)
}

// add answers POST /api/fleet by adding one instance.
func (c *controlClient) add(w http.ResponseWriter, r *http.Request) {
	if !c.enabled() {
		writeError(w, http.StatusNotImplemented, "no control API: run the shop under `unstuck demo`")
		return
	}
	c.forward(r.Context(), w, http.MethodPost, "/api/instances")
}

func (c *controlClient) forward(ctx context.Context, w http.ResponseWriter, method, path string) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	resp, err := c.client.Do(req)
	if err != nil {
		slog.Warn("control API unreachable", "path", path, "err", err)
		writeError(w, http.StatusBadGateway, "control API unreachable: "+err.Error())
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<20))
}

// discard is a ResponseWriter for a forwarded call whose answer nobody reads.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
