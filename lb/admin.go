package lb

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxAdminBody bounds an admin request body; a backend is a few dozen bytes.
const maxAdminBody = 64 << 10

// AdminHandler serves the admin API and /metrics:
//
//	GET    /api/backends              every backend's state
//	GET    /api/backends/{name}       one backend's state
//	POST   /api/backends              add {"name":..,"url":..,"weight":..}
//	DELETE /api/backends/{name}       drain, then remove
//	POST   /api/backends/{name}/drain
//	POST   /api/backends/{name}/undrain
//	GET    /api/discovery             DNS discovery sources and their last answers
//	POST   /api/reload                re-read and apply the config
//	GET    /metrics                   Prometheus
//
// With a non-empty token every request must carry "Authorization: Bearer
// TOKEN" (compared in constant time).
func (bl *Balancer) AdminHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/backends", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, bl.Backends())
	})
	mux.HandleFunc("GET /api/backends/{name}", func(w http.ResponseWriter, r *http.Request) {
		s, ok := bl.status(r.PathValue("name"))
		if !ok {
			writeError(w, http.StatusNotFound, errNotFound.Error())
			return
		}
		writeJSON(w, http.StatusOK, s)
	})
	mux.HandleFunc("POST /api/backends", func(w http.ResponseWriter, r *http.Request) {
		var bc BackendConfig
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&bc); err != nil {
			writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
			return
		}
		b, err := bl.Add(bc)
		if err != nil {
			bl.writeErr(w, err)
			return
		}
		s, _ := bl.status(b.name)
		writeJSON(w, http.StatusCreated, s)
	})
	mux.HandleFunc("DELETE /api/backends/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := bl.Remove(name); err != nil {
			bl.writeErr(w, err)
			return
		}
		s, ok := bl.status(name)
		if !ok {
			writeJSON(w, http.StatusOK, map[string]string{"name": name, "state": "removed"})
			return
		}
		writeJSON(w, http.StatusAccepted, s)
	})
	mux.HandleFunc("POST /api/backends/{name}/drain", func(w http.ResponseWriter, r *http.Request) {
		bl.adminAction(w, r.PathValue("name"), bl.Drain)
	})
	mux.HandleFunc("POST /api/backends/{name}/undrain", func(w http.ResponseWriter, r *http.Request) {
		bl.adminAction(w, r.PathValue("name"), bl.Undrain)
	})
	mux.HandleFunc("GET /api/discovery", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, bl.Discovery())
	})
	mux.HandleFunc("POST /api/reload", func(w http.ResponseWriter, r *http.Request) {
		if bl.opts.Reload == nil {
			writeError(w, http.StatusNotImplemented, "reload is not configured")
			return
		}
		warnings, err := bl.Reload()
		if err != nil {
			writeError(w, http.StatusBadRequest, "config refused, old config kept: "+err.Error())
			return
		}
		if warnings == nil {
			warnings = []string{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "restart_needed_for": warnings})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(bl.m.reg, promhttp.HandlerOpts{}))
	// Without a token, a page on any site the operator visits could post a
	// cross-site form to a loopback admin API and drain a backend; browsers
	// mark such requests (Sec-Fetch-Site, Origin), so refuse them. Scripts
	// and curl send neither header and pass.
	csrf := http.NewCrossOriginProtection()
	if token == "" {
		return csrf.Handler(mux)
	}
	want := sha256.Sum256([]byte("Bearer " + token))
	return csrf.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Hashing both sides first makes the comparison constant-time in
		// the token's length too.
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="unstuck lb admin"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		mux.ServeHTTP(w, r)
	}))
}

// Registry is the balancer's own Prometheus registry, for embedders that
// serve metrics elsewhere.
func (bl *Balancer) Registry() *prometheus.Registry { return bl.m.reg }

func (bl *Balancer) adminAction(w http.ResponseWriter, name string, f func(string) error) {
	if err := f(name); err != nil {
		bl.writeErr(w, err)
		return
	}
	s, _ := bl.status(name)
	writeJSON(w, http.StatusOK, s)
}

func (bl *Balancer) writeErr(w http.ResponseWriter, err error) {
	var fe *FieldError
	switch {
	case errors.Is(err, errNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, errExists):
		writeError(w, http.StatusConflict, err.Error())
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": strings.TrimSpace(msg)})
}
