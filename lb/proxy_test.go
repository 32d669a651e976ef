package lb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// appBackend is an httptest app instance: it answers its name, fails its
// health check on command, and echoes WebSocket messages.
type appBackend struct {
	name    string
	srv     *httptest.Server
	sick    atomic.Bool // /healthz answers 503
	failing atomic.Bool // every request answers 500
	hits    atomic.Int64
}

func newApp(t *testing.T, name string) *appBackend {
	t.Helper()
	a := &appBackend{name: name}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if a.sick.Load() {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, append([]byte(a.name+":"), msg...)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		if a.failing.Load() {
			http.Error(w, "failing", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, a.name)
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// liveLB is a Balancer serving on a loopback port with its admin API.
type liveLB struct {
	bl    *Balancer
	url   string
	addr  string // host:port of the proxy listener
	admin *httptest.Server
}

func startLB(t *testing.T, cfg *Config, apps ...*appBackend) *liveLB {
	t.Helper()
	return startLBOn(t, cfg, nil, nil, apps...)
}

// startLBOn is startLB with the proxy listener wrapped by wrap (TLS) and
// logs to log, when set.
func startLBOn(t *testing.T, cfg *Config, wrap func(net.Listener) net.Listener, log *slog.Logger, apps ...*appBackend) *liveLB {
	t.Helper()
	if len(cfg.Backends) == 0 {
		for _, a := range apps {
			cfg.Backends = append(cfg.Backends, BackendConfig{Name: a.name, URL: a.srv.URL})
		}
	}
	if cfg.Admin.Listen == "" {
		cfg.Admin.Listen = "off"
	}
	if len(cfg.Sticky.Secrets) == 0 && cfg.Sticky.Mode != "none" {
		cfg.Sticky.Secrets = []string{secretA}
	}
	if log == nil {
		log = quietLogger()
	}
	bl, err := New(cfg, Options{Logger: log, Tick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	scheme := "http://"
	if wrap != nil {
		ln, scheme = wrap(ln), "https://"
	}
	go bl.Serve(ln)
	admin := httptest.NewServer(bl.AdminHandler(cfg.Admin.Token))
	t.Cleanup(func() {
		admin.Close()
		bl.Close()
	})
	return &liveLB{bl: bl, url: scheme + addr, addr: addr, admin: admin}
}

func jarClient(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func adminJSON(t *testing.T, method, url, token string, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: bad JSON: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

func TestProxyStickyThroughEngine(t *testing.T) {
	a, b := newApp(t, "a"), newApp(t, "b")
	l := startLB(t, &Config{}, a, b)
	seen := map[string]bool{}
	for range 4 {
		c := jarClient(t)
		code, first := get(t, c, l.url+"/")
		if code != 200 {
			t.Fatalf("status %d %q", code, first)
		}
		seen[first] = true
		for range 5 {
			if _, body := get(t, c, l.url+"/x"); body != first {
				t.Fatalf("sticky user moved from %s to %s", first, body)
			}
		}
	}
	if len(seen) != 2 {
		t.Fatalf("four users all on %v", seen)
	}
	var list []BackendStatus
	if code := adminJSON(t, "GET", l.admin.URL+"/api/backends", "", "", &list); code != 200 || len(list) != 2 {
		t.Fatalf("GET /api/backends: %d %+v", code, list)
	}
	for _, s := range list {
		if s.State != StateUp || s.Total != 12 || s.PinnedUsers != 2 || !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
			t.Fatalf("backend status %+v, want up, 12 requests, 2 users", s)
		}
	}
	resp, err := http.Get(l.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`unstuck_lb_requests_total{backend="a",code="200"} 12`, `unstuck_lb_request_duration_seconds_bucket{backend="a"`,
		`unstuck_lb_in_flight{backend="a"} 0`, `unstuck_lb_backend_state{backend="a",state="up"} 1`,
		`unstuck_lb_load_imbalance`, `unstuck_lb_websockets_open{backend="b"} 0`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestActiveHealthRiseFall(t *testing.T) {
	a, b := newApp(t, "a"), newApp(t, "b")
	l := startLB(t, &Config{
		Sticky: StickyConfig{Mode: "none"},
		Health: HealthConfig{Active: ActiveHealthConfig{Path: "/healthz", Interval: 20 * time.Millisecond, Rise: 2, Fall: 3}},
	}, a, b)
	state := func(name string) string {
		s, _ := l.bl.status(name)
		return s.State
	}
	a.sick.Store(true)
	testenv.Eventually(t, 10*time.Second, func() error {
		if s := state("a"); s != StateDown {
			return fmt.Errorf("a is %s", s)
		}
		return nil
	})
	before := a.hits.Load()
	for range 10 {
		if code, body := get(t, http.DefaultClient, l.url+"/"); code != 200 || body != "b" {
			t.Fatalf("with a down: %d %q", code, body)
		}
	}
	if a.hits.Load() != before {
		t.Fatal("traffic sent to a backend that is down")
	}
	a.sick.Store(false)
	testenv.Eventually(t, 10*time.Second, func() error {
		if s := state("a"); s != StateUp {
			return fmt.Errorf("a is %s", s)
		}
		return nil
	})
}

// checkCount reads unstuck_lb_health_checks_total{backend,result} from
// the balancer's registry, as a scrape would.
func checkCount(t *testing.T, bl *Balancer, backend, result string) float64 {
	t.Helper()
	fams, err := bl.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "unstuck_lb_health_checks_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var b, r string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "backend":
					b = l.GetValue()
				case "result":
					r = l.GetValue()
				}
			}
			if b == backend && r == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1 // no such series
}

func TestHealthCheckMetricCountsPassesAndFailures(t *testing.T) {
	a, b := newApp(t, "a"), newApp(t, "b")
	l := startLB(t, &Config{
		Sticky: StickyConfig{Mode: "none"},
		Health: HealthConfig{Active: ActiveHealthConfig{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, Rise: 1, Fall: 2}},
	}, a, b)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := checkCount(t, l.bl, "a", "pass"); n < 3 {
			return fmt.Errorf("a: %v checks passed", n)
		}
		return nil
	})
	if n := checkCount(t, l.bl, "a", "fail"); n != 0 {
		t.Fatalf("a healthy, yet %v checks failed", n)
	}
	if n := checkCount(t, l.bl, "a", "timeout"); n != 0 {
		t.Fatalf("a healthy, yet %v checks timed out", n)
	}

	a.sick.Store(true)
	testenv.Eventually(t, 10*time.Second, func() error {
		if s, _ := l.bl.status("a"); s.State != StateDown {
			return fmt.Errorf("a is %s", s.State)
		}
		return nil
	})
	// Down took Fall failures in a row, so no check that began before
	// a fell sick is still counting: from here on only failures count.
	passed, failed := checkCount(t, l.bl, "a", "pass"), checkCount(t, l.bl, "a", "fail")
	if failed < 2 {
		t.Fatalf("a went down after %v failed checks, want at least fall=2", failed)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := checkCount(t, l.bl, "a", "fail"); n < failed+3 {
			return fmt.Errorf("a: %v checks failed, want %v", n, failed+3)
		}
		return nil
	})
	if n := checkCount(t, l.bl, "a", "pass"); n != passed {
		t.Fatalf("a is sick, yet passed checks went from %v to %v", passed, n)
	}
	if n := checkCount(t, l.bl, "b", "pass"); n < 3 || checkCount(t, l.bl, "b", "fail") != 0 {
		t.Fatalf("b: %v passed, %v failed; want only passes", n, checkCount(t, l.bl, "b", "fail"))
	}

	// The series are on /metrics, and go with the backend.
	resp, err := http.Get(l.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`unstuck_lb_health_checks_total{backend="a",result="fail"}`, `unstuck_lb_health_checks_total{backend="b",result="timeout"} 0`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Sticky none: nobody to wait for, so a is removed at the next tick.
	if err := l.bl.Remove("a"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := checkCount(t, l.bl, "a", "fail"); n != -1 {
			return fmt.Errorf("removed backend a still has a check series (%v failed)", n)
		}
		return nil
	})
}

// A drain in progress on a backend that then goes down reads as "down"
// (State keeps its precedence) and Draining says the drain is still on.
func TestDrainingBackendThatGoesDownStaysDraining(t *testing.T) {
	a, b := newApp(t, "a"), newApp(t, "b")
	// Sticky cookies: a drain waits drain.idle for pinned users, so it
	// is still in progress when a goes down.
	l := startLB(t, &Config{
		Health: HealthConfig{Active: ActiveHealthConfig{Path: "/healthz", Interval: 20 * time.Millisecond, Rise: 1, Fall: 1}},
		Drain:  DrainConfig{Idle: time.Hour},
	}, a, b)
	if s, _ := l.bl.status("a"); s.Draining {
		t.Fatalf("a reports draining before any drain: %+v", s)
	}
	if code := adminJSON(t, "POST", l.admin.URL+"/api/backends/a/drain", "", "", nil); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	if s, _ := l.bl.status("a"); s.State != StateDraining || !s.Draining {
		t.Fatalf("after drain: %+v, want state draining and draining true", s)
	}
	a.srv.Close() // the instance stops
	var got BackendStatus
	testenv.Eventually(t, 10*time.Second, func() error {
		if code := adminJSON(t, "GET", l.admin.URL+"/api/backends/a", "", "", &got); code != 200 {
			return fmt.Errorf("GET: %d", code)
		}
		if got.State != StateDown {
			return fmt.Errorf("a is %s", got.State)
		}
		return nil
	})
	if !got.Draining {
		t.Fatalf("a down while draining: %+v, want draining true", got)
	}
	// The JSON field is there for API clients, true or false.
	var raw []map[string]any
	adminJSON(t, "GET", l.admin.URL+"/api/backends", "", "", &raw)
	for _, r := range raw {
		if d, ok := r["draining"].(bool); !ok || d != (r["name"] == "a") {
			t.Errorf("%v: draining = %v, want %v", r["name"], r["draining"], r["name"] == "a")
		}
	}
	if err := l.bl.Undrain("a"); err != nil {
		t.Fatal(err)
	}
	if s, _ := l.bl.status("a"); s.State != StateDown || s.Draining {
		t.Fatalf("after undrain: %+v, want down and not draining", s)
	}
}

func TestPassiveEjectionThroughEngine(t *testing.T) {
	a, b, c := newApp(t, "a"), newApp(t, "b"), newApp(t, "c")
	l := startLB(t, &Config{
		Sticky: StickyConfig{Mode: "none"},
		Health: HealthConfig{Passive: PassiveHealthConfig{Failures: 3, Ejection: time.Hour}},
	}, a, b, c)
	a.failing.Store(true)
	fails := 0
	for range 30 {
		if code, _ := get(t, http.DefaultClient, l.url+"/"); code == 500 {
			fails++
		}
	}
	if fails != 3 {
		t.Fatalf("%d requests failed; a should be ejected after 3 in a row", fails)
	}
	if s, _ := l.bl.status("a"); s.State != StateEjected {
		t.Fatalf("a is %s", s.State)
	}
}

// A backend dies while clients hammer the balancer: every GET still
// succeeds, because a request that never got a byte back is retried on
// another backend and passive checks eject the dead one.
func TestBackendKilledUnderLoadNoGETFails(t *testing.T) {
	apps := []*appBackend{newApp(t, "a"), newApp(t, "b"), newApp(t, "c")}
	l := startLB(t, &Config{
		Sticky: StickyConfig{Mode: "none"},
		Policy: PolicyConfig{Name: PolicyRoundRobin},
	}, apps...)
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(l.url + "/")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = errors.New(resp.Status)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if ok.Load() < 200 {
			return fmt.Errorf("%d requests so far", ok.Load())
		}
		return nil
	})
	// Kill b: drop its connections mid-flight and stop listening.
	apps[1].srv.Listener.Close()
	apps[1].srv.CloseClientConnections()
	killedAt := ok.Load()
	testenv.Eventually(t, 20*time.Second, func() error {
		if ok.Load() < killedAt+500 {
			return fmt.Errorf("%d requests since the kill", ok.Load()-killedAt)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d of %d GETs failed after a backend died; first: %v", f, f+ok.Load(), firstErr.Load())
	}
	if s, _ := l.bl.status("b"); s.State != StateEjected {
		t.Fatalf("dead backend is %s, want ejected", s.State)
	}
}

func TestAdminAPIDrainAddDeleteAndToken(t *testing.T) {
	a, b := newApp(t, "a"), newApp(t, "b")
	const token = "s3cret-admin-token"
	l := startLB(t, &Config{Admin: AdminConfig{Listen: "off", Token: token}, Drain: DrainConfig{Idle: 200 * time.Millisecond}}, a, b)
	var e map[string]string
	if code := adminJSON(t, "GET", l.admin.URL+"/api/backends", "", "", &e); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code := adminJSON(t, "GET", l.admin.URL+"/api/backends", "wrong", "", &e); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	// A user pinned to a.
	var user *http.Client
	for user == nil {
		c := jarClient(t)
		if _, body := get(t, c, l.url+"/"); body == "a" {
			user = c
		}
	}
	var s BackendStatus
	if code := adminJSON(t, "POST", l.admin.URL+"/api/backends/a/drain", token, "", &s); code != 200 || s.State != StateDraining {
		t.Fatalf("drain: %d %+v", code, s)
	}
	if _, body := get(t, user, l.url+"/"); body != "a" {
		t.Fatalf("pinned user moved off a draining backend to %s", body)
	}
	for range 6 {
		if _, body := get(t, jarClient(t), l.url+"/"); body != "b" {
			t.Fatal("new user sent to a draining backend")
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		adminJSON(t, "GET", l.admin.URL+"/api/backends", token, "", &[]BackendStatus{})
		if st, _ := l.bl.status("a"); st.State != StateDrained {
			return fmt.Errorf("a is %s", st.State)
		}
		return nil
	})
	if _, body := get(t, user, l.url+"/"); body != "b" {
		t.Fatalf("user of a drained backend sent to %s", body)
	}
	if code := adminJSON(t, "POST", l.admin.URL+"/api/backends/a/undrain", token, "", &s); code != 200 || s.State != StateUp {
		t.Fatalf("undrain: %d %+v", code, s)
	}
	if code := adminJSON(t, "GET", l.admin.URL+"/api/backends/a", token, "", &s); code != 200 || s.Name != "a" || s.State != StateUp {
		t.Fatalf("GET one backend: %d %+v", code, s)
	}
	if code := adminJSON(t, "POST", l.admin.URL+"/api/backends/zz/drain", token, "", &e); code != 404 {
		t.Fatalf("drain unknown: %d", code)
	}
	c := newApp(t, "c")
	if code := adminJSON(t, "POST", l.admin.URL+"/api/backends", token, `{"name":"c","url":"`+c.srv.URL+`","weight":2}`, &s); code != 201 || s.Name != "c" {
		t.Fatalf("add: %d %+v", code, s)
	}
	if code := adminJSON(t, "POST", l.admin.URL+"/api/backends", token, `{"name":"c","url":"`+c.srv.URL+`"}`, &e); code != 409 {
		t.Fatalf("add duplicate: %d", code)
	}
	if code := adminJSON(t, "POST", l.admin.URL+"/api/backends", token, `{"name":"d","url":"nope"}`, &e); code != 400 || e["error"] == "" {
		t.Fatalf("add bad URL: %d %v", code, e)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, body := get(t, jarClient(t), l.url+"/"); body != "c" {
			return errors.New("c not chosen yet")
		}
		return nil
	})
	if code := adminJSON(t, "DELETE", l.admin.URL+"/api/backends/c", token, "", &s); code != 202 && code != 200 {
		t.Fatalf("delete: %d", code)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		var list []BackendStatus
		adminJSON(t, "GET", l.admin.URL+"/api/backends", token, "", &list)
		if len(list) != 2 {
			return fmt.Errorf("%d backends listed", len(list))
		}
		return nil
	})
	if code := adminJSON(t, "POST", l.admin.URL+"/api/reload", token, "", &e); code != 501 {
		t.Fatalf("reload without a hook: %d", code)
	}
}

func wsDial(t *testing.T, ctx context.Context, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, strings.Replace(url, "http://", "ws://", 1)+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

func wsEcho(t *testing.T, ctx context.Context, c *websocket.Conn, msg string) string {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(got)
}

// A WebSocket through the balancer survives a reload that keeps its
// backend, and gets 1012 when its backend is drained.
func TestWebSocketSurvivesReloadAnd1012OnDrain(t *testing.T) {
	a, b := newApp(t, "a"), newApp(t, "b")
	cfg := &Config{Sticky: StickyConfig{Mode: "none"}, WebSocket: WebSocketConfig{CloseWindow: 20 * time.Millisecond}}
	l := startLB(t, cfg, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws := wsDial(t, ctx, l.url)
	defer ws.CloseNow()
	first := wsEcho(t, ctx, ws, "hello")
	home, _, _ := strings.Cut(first, ":")
	testenv.Eventually(t, 5*time.Second, func() error {
		if s, _ := l.bl.status(home); s.WebSockets != 1 {
			return fmt.Errorf("%s has %d websockets", home, s.WebSockets)
		}
		return nil
	})

	// A second WebSocket, on the other backend (round-robin alternates).
	other := wsDial(t, ctx, l.url)
	defer other.CloseNow()
	otherHome, _, _ := strings.Cut(wsEcho(t, ctx, other, "hi"), ":")
	if otherHome == home {
		t.Fatalf("both WebSockets on %s", home)
	}

	// Reload: another policy, a third backend, home kept, the other removed.
	c := newApp(t, "c")
	keep := map[string]string{"a": a.srv.URL, "b": b.srv.URL}[home]
	next := &Config{
		Sticky:    StickyConfig{Mode: "none"},
		WebSocket: WebSocketConfig{CloseWindow: 20 * time.Millisecond},
		Policy:    PolicyConfig{Name: PolicyLeastConn},
		Backends:  []BackendConfig{{Name: home, URL: keep}, {Name: "c", URL: c.srv.URL}},
		Admin:     AdminConfig{Listen: "off"},
	}
	if _, err := l.bl.Apply(next); err != nil {
		t.Fatal(err)
	}
	if got := wsEcho(t, ctx, ws, "after reload"); got != home+":after reload" {
		t.Fatalf("after reload: %q", got)
	}
	_, _, err := other.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusServiceRestart {
		t.Fatalf("WebSocket of a backend the reload removed: %v (code %d), want 1012", err, code)
	}
	if got := wsEcho(t, ctx, ws, "still here"); got != home+":still here" {
		t.Fatalf("kept WebSocket after the other closed: %q", got)
	}

	// Drain its backend: the tunnel is closed with 1012, service restart.
	if err := l.bl.Drain(home); err != nil {
		t.Fatal(err)
	}
	_, _, err = ws.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusServiceRestart {
		t.Fatalf("read after drain: %v (close code %d), want 1012", err, code)
	}
	// The client reconnects and lands elsewhere.
	ws2 := wsDial(t, ctx, l.url)
	defer ws2.CloseNow()
	if got := wsEcho(t, ctx, ws2, "again"); strings.HasPrefix(got, home+":") {
		t.Fatalf("reconnected to the drained backend: %q", got)
	}
}

func TestShutdownClosesWebSocketsWith1001(t *testing.T) {
	a := newApp(t, "a")
	l := startLB(t, &Config{Sticky: StickyConfig{Mode: "none"}}, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws := wsDial(t, ctx, l.url)
	defer ws.CloseNow()
	wsEcho(t, ctx, ws, "hi")
	done := make(chan error, 1)
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		done <- l.bl.Shutdown(sctx)
	}()
	_, _, err := ws.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
		t.Fatalf("read during shutdown: %v (code %d), want 1001", err, code)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// The cookie is Secure when a trusted proxy says the client used https,
// not when an untrusted client claims it; WebSocket upgrades get it too.
func TestCookieSecureFromTrustedProxyAndOnUpgrade(t *testing.T) {
	a := newApp(t, "a")
	l := startLB(t, &Config{TrustedProxies: []string{"127.0.0.1"}}, a)
	untrusted := startLB(t, &Config{}, a)
	for _, c := range []struct {
		url    string
		secure bool
	}{{l.url, true}, {untrusted.url, false}} {
		req, _ := http.NewRequest("GET", c.url+"/", nil)
		req.Header.Set("X-Forwarded-Proto", "https")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sc := resp.Header.Get("Set-Cookie")
		if sc == "" || strings.Contains(sc, "; Secure") != c.secure {
			t.Errorf("X-Forwarded-Proto https (trusted %v): Set-Cookie %q", c.secure, sc)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, strings.Replace(l.url, "http://", "ws://", 1)+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if sc := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(sc, DefaultCookieName+"=") {
		t.Fatalf("101 response Set-Cookie %q", sc)
	}
}

func TestGeneratedSecretWarns(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	cfg := testConfig(func(c *Config) { c.Sticky.Secrets = nil })
	bl, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(w, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "generated") {
		t.Fatalf("no warning about the generated secret: %s", logs.String())
	}
	c := newClient("10.9.0.1")
	first, _ := c.do(t, bl)
	if again, sc := c.do(t, bl); again != first || sc != "" {
		t.Fatal("generated secret does not pin")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestAccessLog(t *testing.T) {
	a := newApp(t, "a")
	var mu sync.Mutex
	var logs strings.Builder
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	cfg := &Config{Backends: []BackendConfig{{Name: "a", URL: a.srv.URL}}, Log: LogConfig{Access: true},
		Sticky: StickyConfig{Mode: "none"}, Admin: AdminConfig{Listen: "off"}}
	bl, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(w, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go bl.Serve(ln)
	defer bl.Close()
	if code, _ := get(t, http.DefaultClient, "http://"+ln.Addr().String()+"/cart?x=1"); code != 200 {
		t.Fatal(code)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if s := logs.String(); !strings.Contains(s, "log=access") || !strings.Contains(s, "target=\"/cart?x=1\"") ||
			!strings.Contains(s, "status=200") || !strings.Contains(s, "backend=a") {
			return fmt.Errorf("access log: %s", s)
		}
		return nil
	})
}

// A reload that changes engine settings (here the upstream timeout) starts
// a new engine for new connections; the request in flight on the old one
// finishes under the old settings, and the open WebSocket is untouched.
func TestReloadAppliesEngineSettingsWithoutDropping(t *testing.T) {
	release := make(chan struct{})
	var slowActive atomic.Int64
	a := newApp(t, "a")
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			a.srv.Config.Handler.ServeHTTP(w, r)
			return
		}
		slowActive.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "slow done")
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	cfg := func(upstream time.Duration) *Config {
		return &Config{
			Backends: []BackendConfig{{Name: "s", URL: slow.URL}},
			Sticky:   StickyConfig{Mode: "none"},
			Timeouts: TimeoutConfig{Upstream: upstream},
			Admin:    AdminConfig{Listen: "off"},
			Health:   HealthConfig{Passive: PassiveHealthConfig{Disabled: true}},
		}
	}
	l := startLB(t, cfg(0), a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws := wsDial(t, ctx, l.url)
	defer ws.CloseNow()
	if got := wsEcho(t, ctx, ws, "one"); got != "a:one" {
		t.Fatalf("echo %q", got)
	}
	type result struct {
		code int
		body string
		err  error
	}
	fetch := func() result {
		cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := cl.Get(l.url + "/slow")
		if err != nil {
			return result{err: err}
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return result{resp.StatusCode, string(b), err}
	}
	inFlight := make(chan result, 1)
	go func() { inFlight <- fetch() }()
	testenv.Eventually(t, 10*time.Second, func() error {
		if slowActive.Load() != 1 {
			return errors.New("slow request not at the backend yet")
		}
		return nil
	})

	warnings, err := l.bl.Apply(cfg(300 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Fatalf("engine settings reported as needing a restart: %v", warnings)
	}
	if got := wsEcho(t, ctx, ws, "two"); got != "a:two" {
		t.Fatalf("WebSocket after an engine swap: %q", got)
	}
	// A new connection gets the new engine: its upstream timeout answers 504
	// while the backend is still holding the request.
	if r := fetch(); r.err != nil || r.code != http.StatusGatewayTimeout {
		t.Fatalf("request under the new 300ms upstream timeout: %+v", r)
	}
	close(release)
	if r := <-inFlight; r.err != nil || r.code != 200 || r.body != "slow done" {
		t.Fatalf("request in flight across the reload: %+v", r)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := len(l.bl.allGens()); n != 1 {
			return fmt.Errorf("%d engine generations still running", n)
		}
		return nil
	})
	if got := wsEcho(t, ctx, ws, "three"); got != "a:three" {
		t.Fatalf("WebSocket after the old engine retired: %q", got)
	}
}

// A reload that turns on active checks starts them for backends that stay.
func TestReloadRestartsHealthChecks(t *testing.T) {
	a, b := newApp(t, "a"), newApp(t, "b")
	l := startLB(t, &Config{Sticky: StickyConfig{Mode: "none"}}, a, b)
	a.sick.Store(true)
	next := &Config{
		Backends: []BackendConfig{{Name: "a", URL: a.srv.URL}, {Name: "b", URL: b.srv.URL}},
		Sticky:   StickyConfig{Mode: "none"},
		Admin:    AdminConfig{Listen: "off"},
		Health:   HealthConfig{Active: ActiveHealthConfig{Path: "/healthz", Interval: 20 * time.Millisecond, Fall: 2}},
	}
	keep := l.bl.view.Load().byName["a"]
	if _, err := l.bl.Apply(next); err != nil {
		t.Fatal(err)
	}
	if l.bl.view.Load().byName["a"] != keep {
		t.Fatal("reload replaced a backend that stayed")
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if s, _ := l.bl.status("a"); s.State != StateDown {
			return fmt.Errorf("a is %s", s.State)
		}
		return nil
	})
}

func TestAdminAPIRefusesCrossSiteRequests(t *testing.T) {
	a := newApp(t, "a")
	l := startLB(t, &Config{Admin: AdminConfig{Listen: "off"}}, a)
	// A form another site posts to the loopback admin API, as a browser
	// would send it: refused, and the backend is not drained.
	req, _ := http.NewRequest("POST", l.admin.URL+"/api/backends/a/drain", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site drain: %d, want 403", resp.StatusCode)
	}
	var s BackendStatus
	if code := adminJSON(t, "GET", l.admin.URL+"/api/backends/a", "", "", &s); code != 200 || s.State != StateUp {
		t.Fatalf("after a refused cross-site drain: %d %+v", code, s)
	}
	// A script (no browser headers) still works.
	if code := adminJSON(t, "POST", l.admin.URL+"/api/backends/a/drain", "", "", &s); code != 200 || s.State != StateDraining {
		t.Fatalf("scripted drain: %d %+v", code, s)
	}
}
