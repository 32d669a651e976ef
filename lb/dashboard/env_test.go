package dashboard

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/lb"
)

// env is a real balancer over httptest backends, its proxy listening on
// loopback, and the dashboard with the admin API on an httptest server.
type env struct {
	bl       *lb.Balancer
	proxy    string // http://127.0.0.1:PORT of the balancer
	backends []*httptest.Server
	sick     []*atomic.Bool // per backend: /healthz answers 503
	dash     *Dashboard
	srv      *httptest.Server // dashboard + admin API
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newEnv starts n backends named b1..bn answering their name (and
// /healthz, 503 while sick), a balancer
// over them (mut adjusts its config) and the dashboard.
func newEnv(t *testing.T, n int, token string, mut func(*lb.Config), opts ...func(*lb.Options)) *env {
	t.Helper()
	e := &env{}
	cfg := &lb.Config{Admin: lb.AdminConfig{Listen: "off"}, Sticky: lb.StickyConfig{Mode: "none"}}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("b%d", i)
		sick := new(atomic.Bool)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" && sick.Load() {
				http.Error(w, "sick", http.StatusServiceUnavailable)
				return
			}
			if r.URL.Path == "/fail" {
				http.Error(w, "failing on purpose", http.StatusInternalServerError)
				return
			}
			fmt.Fprint(w, name)
		}))
		t.Cleanup(srv.Close)
		e.backends = append(e.backends, srv)
		e.sick = append(e.sick, sick)
		cfg.Backends = append(cfg.Backends, lb.BackendConfig{Name: name, URL: srv.URL})
	}
	if mut != nil {
		mut(cfg)
	}
	lo := lb.Options{Logger: quiet(), Tick: 20 * time.Millisecond}
	for _, o := range opts {
		o(&lo)
	}
	bl, err := lb.New(cfg, lo)
	if err != nil {
		t.Fatal(err)
	}
	e.bl = bl
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = bl.Serve(ln) }()
	t.Cleanup(func() { bl.Close() })
	e.proxy = "http://" + ln.Addr().String()
	e.dash = New(bl, Options{Token: token, Admin: bl.AdminHandler(token), Logger: quiet()})
	t.Cleanup(func() { e.dash.Close() })
	// Timeouts far shorter than the admin server's (10 s read, 30 s
	// write): a live stream must outlast them.
	e.srv = httptest.NewUnstartedServer(e.dash)
	e.srv.Config.ReadTimeout = time.Second
	e.srv.Config.WriteTimeout = time.Second
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// get fetches path from the dashboard server with optional extra headers.
func (e *env) get(t *testing.T, path string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
