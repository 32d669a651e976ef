package dashboard

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/lb"
)

func TestPageListsBackendsWithoutJavaScript(t *testing.T) {
	e := newEnv(t, 3, "", nil)
	code, body, h := e.get(t, "/")
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", code, h.Get("Content-Type"))
	}
	for i, b := range e.backends {
		name := fmt.Sprintf("b%d", i+1)
		if !strings.Contains(body, `<tr data-name="`+name+`" data-state="up">`) || !strings.Contains(body, b.URL) {
			t.Errorf("server-rendered table lacks an up row for %s (%s)", name, b.URL)
		}
	}
	if !strings.Contains(body, `data-act="drain" data-name="b2"`) {
		t.Error("no drain button for b2")
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP = %q, want script-src 'self'", csp)
	}
	// The page's assets are embedded and served.
	for _, p := range []string{"/dashboard/static/app.js", "/dashboard/static/style.css", "/dashboard/static/icon.svg"} {
		if code, body, _ := e.get(t, p); code != http.StatusOK || len(body) < 100 {
			t.Errorf("GET %s = %d, %d bytes", p, code, len(body))
		}
	}
	// HEAD answers at once instead of holding a stream open.
	if res, err := http.Head(e.srv.URL + "/dashboard/events"); err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("HEAD /dashboard/events: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	if code, _, _ := e.get(t, "/nope"); code != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}

func TestPageShowsTrafficStateAndEvents(t *testing.T) {
	e := newEnv(t, 2, "", nil)
	for range 20 {
		res, err := http.Get(e.proxy + "/fail")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	if err := e.bl.Drain("b2"); err != nil {
		t.Fatal(err)
	}
	// The sampler's own loop runs each second; this test drives it to
	// see one reading with the traffic and the drain.
	testenv.Eventually(t, 5*time.Second, func() error {
		e.dash.sampleOnce()
		rows, _, _, evs, _ := e.dash.s.current()
		var total float64
		for _, r := range rows {
			total += r.RPS
			if r.RPS > 0 && r.ErrorRate != 1 {
				return fmt.Errorf("%s: error rate %v, want 1 (all 500s)", r.Name, r.ErrorRate)
			}
			if r.RPS > 0 && r.P50 == nil {
				return fmt.Errorf("%s: no p50 with traffic", r.Name)
			}
		}
		if total == 0 && len(evs) == 0 {
			return fmt.Errorf("no traffic seen yet")
		}
		if !strings.Contains(kinds(evs), "drain") {
			return fmt.Errorf("no drain event: %s", kinds(evs))
		}
		return nil
	})
	_, body, _ := e.get(t, "/")
	if !strings.Contains(body, `data-name="b2" data-state="drained"`) && !strings.Contains(body, `data-name="b2" data-state="draining"`) {
		t.Error("page does not show b2 draining or drained")
	}
	if !strings.Contains(body, `data-act="undrain" data-name="b2"`) {
		t.Error("a drained backend should offer undrain")
	}
	if !strings.Contains(body, "b2 drain") {
		t.Error("event list lacks the drain")
	}
}

func TestTokenProtectsDataAndIsNeverInThePage(t *testing.T) {
	const token = "tok-3f9a1c77-never-in-html"
	e := newEnv(t, 3, token, nil)
	code, body, _ := e.get(t, "/")
	if code != http.StatusOK || strings.Contains(body, `data-name="b1"`) || !strings.Contains(body, "Enter the admin token") {
		t.Fatalf("without the token the page must be a locked shell; got %d with backends: %v", code, strings.Contains(body, `data-name="b1"`))
	}
	if code, _, _ := e.get(t, "/dashboard/events"); code != http.StatusUnauthorized {
		t.Errorf("events without the token = %d, want 401", code)
	}
	if code, _, _ := e.get(t, "/dashboard/events", "Authorization", "Bearer wrong"); code != http.StatusUnauthorized {
		t.Errorf("events with a wrong token = %d, want 401", code)
	}
	if code, _, h := e.get(t, "/?login"); code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("/?login = %d %q, want a Basic challenge", code, h.Get("WWW-Authenticate"))
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+token))
	for _, auth := range []string{"Bearer " + token, basic} {
		code, body, _ := e.get(t, "/", "Authorization", auth)
		if code != http.StatusOK || !strings.Contains(body, `data-name="b3"`) {
			t.Errorf("with %s: %d, backends listed: %v", auth[:6], code, strings.Contains(body, `data-name="b3"`))
		}
		if strings.Contains(body, token) {
			t.Fatal("the token appears in the page")
		}
		if !strings.Contains(body, `data-token="required"`) {
			t.Error("the page does not tell its script that a token is required")
		}
	}
	// The admin API mounted alongside keeps its own bearer check.
	if code, _, _ := e.get(t, "/api/backends"); code != http.StatusUnauthorized {
		t.Errorf("admin API without the token = %d, want 401", code)
	}
	if code, _, _ := e.get(t, "/api/backends", "Authorization", "Bearer "+token); code != http.StatusOK {
		t.Errorf("admin API with the token = %d, want 200", code)
	}
}

func TestAdminAPIRefusesCrossSiteChanges(t *testing.T) {
	e := newEnv(t, 2, "", nil)
	post := func(hdr ...string) int {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/backends/b1/drain", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	// A page on another site submitting a form to the loopback admin API.
	if code := post("Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("cross-site POST = %d, want 403", code)
	}
	if code := post("Origin", "https://evil.example"); code != http.StatusForbidden {
		t.Errorf("POST from another origin = %d, want 403", code)
	}
	if st := backendState(e.bl, "b1"); st != "up" {
		t.Fatalf("a refused request drained b1: %s", st)
	}
	// The dashboard's own page, and clients that are not browsers, work.
	if code := post("Sec-Fetch-Site", "same-origin"); code != http.StatusOK {
		t.Errorf("same-origin POST = %d, want 200", code)
	}
	if code := post(); code != http.StatusOK {
		t.Errorf("curl-like POST = %d, want 200", code)
	}
}

// sseReader reads the dashboard's events as a browser would.
type sseReader struct {
	res *http.Response
	sc  *bufio.Scanner
}

func openStream(t *testing.T, ctx context.Context, url string, hdr ...string) *sseReader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	return &sseReader{res: res, sc: sc}
}

// next returns the next event's id and decoded data, or an error at the
// end of the stream.
func (r *sseReader) next() (id string, m streamMessage, err error) {
	var data string
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "":
			if data == "" {
				continue
			}
			err = json.Unmarshal([]byte(data), &m)
			return id, m, err
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "data: "):
			data += line[6:]
		}
	}
	if err := r.sc.Err(); err != nil {
		return "", m, err
	}
	return "", m, io.EOF
}

// TestStreamSendsJSONAtMostOncePerSecond also proves a stream outlives the
// server's read and write timeouts (1 s in newEnv): it runs over 2 s.
func TestStreamSendsJSONAtMostOncePerSecond(t *testing.T) {
	e := newEnv(t, 3, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openStream(t, ctx, e.srv.URL+"/dashboard/events")
	id, m, err := s.next()
	if err != nil {
		t.Fatal(err)
	}
	if !m.Reset || len(m.Backends) != 3 || len(m.Points) == 0 || id == "" {
		t.Fatalf("first event: reset %v, %d backends, %d points, id %q; want the whole state", m.Reset, len(m.Backends), len(m.Points), id)
	}
	if m.Backends[0].Name != "b1" || m.Backends[0].State != "up" || m.Backends[0].URL != e.backends[0].URL {
		t.Errorf("first backend = %+v", m.Backends[0])
	}
	// Sample in bursts far faster than once a second: the stream must
	// still coalesce them to at most one event a second, carrying every
	// point since the last.
	prev := m
	for range 2 {
		for range 50 {
			e.dash.sampleOnce()
		}
		_, m, err := s.next()
		if err != nil {
			t.Fatal(err)
		}
		if gap := m.Sent.Sub(prev.Sent); gap < time.Second {
			t.Fatalf("two events %v apart, want at least 1s", gap)
		}
		if m.Reset || m.Seq < prev.Seq+50 || len(m.Points) == 0 || m.Points[0].Seq != prev.Seq+1 || m.Points[len(m.Points)-1].Seq != m.Seq {
			t.Fatalf("update after seq %d: reset %v, seq %d, %d points; want the points %d..%d", prev.Seq, m.Reset, m.Seq, len(m.Points), prev.Seq+1, m.Seq)
		}
		prev = m
	}
}

func TestStreamResumesFromLastEventID(t *testing.T) {
	e := newEnv(t, 2, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openStream(t, ctx, e.srv.URL+"/dashboard/events")
	id, first, err := s.next()
	if err != nil {
		t.Fatal(err)
	}
	s.res.Body.Close()
	if err := e.bl.Drain("b1"); err != nil {
		t.Fatal(err)
	}
	e.dash.sampleOnce()
	s2 := openStream(t, ctx, e.srv.URL+"/dashboard/events", "Last-Event-ID", id)
	_, m, err := s2.next()
	if err != nil {
		t.Fatal(err)
	}
	if m.Reset || len(m.Points) == 0 || m.Points[0].Seq != first.Seq+1 {
		t.Fatalf("resumed stream: reset %v, points %+v; want the points after %d", m.Reset, m.Points, first.Seq)
	}
	if !strings.Contains(kinds(m.Events), "b1") {
		t.Errorf("resumed stream lacks the drain event, got %s", kinds(m.Events))
	}
}

func TestCloseStopsSamplerAndStreams(t *testing.T) {
	e := newEnv(t, 1, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openStream(t, ctx, e.srv.URL+"/dashboard/events")
	if _, _, err := s.next(); err != nil {
		t.Fatal(err)
	}
	e.dash.Close() // waits for the sampler goroutine
	if _, _, err := s.next(); err != io.EOF {
		t.Fatalf("after Close the stream should end, got %v", err)
	}
	e.dash.Close() // twice is fine
}

func TestContextStopsSampler(t *testing.T) {
	e := newEnv(t, 1, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	d := New(e.bl, Options{Context: ctx, Logger: quiet()})
	cancel()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the sampler did not stop when its context ended")
	}
}

// TestReadsTheBalancersMetrics guards the metric names the sampler reads
// against renames in lb: with traffic, each figure it derives is there.
func TestReadsTheBalancersMetrics(t *testing.T) {
	e := newEnv(t, 2, "", activeChecks)
	e.sick[1].Store(true)
	for range 4 {
		res, err := http.Get(e.proxy + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	if err := e.bl.Drain("b1"); err != nil {
		t.Fatal(err)
	}
	var fams []*dto.MetricFamily
	var r *reading
	testenv.Eventually(t, 10*time.Second, func() error {
		var err error
		if fams, err = e.bl.Registry().Gather(); err != nil {
			return err
		}
		r = newReading(time.Now(), e.bl.Backends())
		r.read(fams)
		if r.checks["b1"]["pass"] == 0 || r.checks["b2"]["fail"] == 0 {
			return fmt.Errorf("%s: %v, want b1 passing and b2 failing", mChecks, r.checks)
		}
		return nil
	})
	if got := r.requests["b1"] + r.requests["b2"]; got != 4 {
		t.Errorf("%s: read %v requests, want 4", mRequests, got)
	}
	// b2 may be down before the requests come, so they count together.
	if h1, h2 := r.latency["b1"], r.latency["b2"]; h1.count+h2.count != 4 || len(h1.bounds) == 0 {
		t.Errorf("%s: want 4 observations over b1 and b2: %+v %+v", mLatency, h1, h2)
	}
	if !r.healthy["b1"] || r.healthy["b2"] {
		t.Errorf("%s: %v, want b1 healthy, b2 not (its checks fail)", mHealthy, r.healthy)
	}
	if _, ok := r.checks["b2"]["timeout"]; !ok {
		t.Errorf("%s: no timeout series for b2: %v", mChecks, r.checks["b2"])
	}
	if r.drains["b1"]["started"] != 1 {
		t.Errorf("%s: %v, want b1 started once", mDrains, r.drains)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	for _, n := range []string{mImbalance, mPanic, mNoBackend} {
		if !names[n] {
			t.Errorf("the registry has no %s", n)
		}
	}
}

// activeChecks turns on active health checks at /healthz, fast enough
// for tests: one failure takes a backend down, one pass brings it back.
func activeChecks(c *lb.Config) {
	c.Health.Active = lb.ActiveHealthConfig{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, Rise: 1, Fall: 1}
}

// rowHTML is the server-rendered table row of backend name.
func rowHTML(t *testing.T, body, name string) string {
	t.Helper()
	i := strings.Index(body, `<tr data-name="`+name+`"`)
	if i < 0 {
		t.Fatalf("the page has no row for %s", name)
	}
	row, _, _ := strings.Cut(body[i:], "</tr>")
	return row
}

// A backend draining when it goes down shows "down" and a draining badge
// (and offers undrain), and its row counts the health checks that passed
// before and failed after.
func TestPageShowsDrainBehindDownAndCheckCounts(t *testing.T) {
	e := newEnv(t, 2, "", func(c *lb.Config) {
		activeChecks(c)
		// Sticky cookies keep a drain waiting drain.idle for pinned
		// users, so it is still in progress when b1 goes down.
		c.Sticky = lb.StickyConfig{Mode: "cookie", Secrets: []string{"0123456789abcdef-dashboard"}}
		c.Drain.Idle = time.Hour
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		e.dash.sampleOnce()
		if c := row(t, e.dash.s, "b1").Checks; c == nil || c.Passed == 0 {
			return fmt.Errorf("b1 checks %+v, want some passed", c)
		}
		return nil
	})
	if err := e.bl.Drain("b1"); err != nil {
		t.Fatal(err)
	}
	e.backends[0].Close() // the instance stops
	testenv.Eventually(t, 10*time.Second, func() error {
		e.dash.sampleOnce()
		r := row(t, e.dash.s, "b1")
		if r.State != lb.StateDown || !r.Draining {
			return fmt.Errorf("b1 %s, draining %v; want down and draining", r.State, r.Draining)
		}
		if r.Checks == nil || r.Checks.Failed == 0 || r.Checks.Passed == 0 {
			return fmt.Errorf("b1 checks %+v, want passes and failures", r.Checks)
		}
		return nil
	})
	_, body, _ := e.get(t, "/")
	b1 := rowHTML(t, body, "b1")
	for _, want := range []string{
		`data-state="down"`, `<span class="badge st-down">down</span>`, `<span class="badge st-draining"`, `>draining</span>`,
		`data-act="undrain" data-name="b1"`, `class="checks"`, ` passed</span>`, `<span class="ck-fail">`,
	} {
		if !strings.Contains(b1, want) {
			t.Errorf("b1's row lacks %s:\n%s", want, b1)
		}
	}
	b2 := rowHTML(t, body, "b2")
	if strings.Contains(b2, "st-draining") || !strings.Contains(b2, `data-act="drain" data-name="b2"`) {
		t.Errorf("b2 is up and not draining, yet its row reads:\n%s", b2)
	}
	if !strings.Contains(b2, `<span class="ck-fail ck-none">0 failed</span>`) {
		t.Errorf("b2's checks all pass, yet its row reads:\n%s", b2)
	}
}

func TestTooManyStreams(t *testing.T) {
	e := newEnv(t, 1, "", nil)
	d := New(e.bl, Options{MaxStreams: 1, Logger: quiet()})
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := httptestServer(t, d)
	s := openStream(t, ctx, srv+"/dashboard/events")
	if _, _, err := s.next(); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(srv + "/dashboard/events")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second stream = %d, want 503", res.StatusCode)
	}
}

func TestPageShowsWhereDiscoveredBackendsCameFrom(t *testing.T) {
	d := testenv.StartDNS(t)
	var src string
	e := newEnv(t, 1, "", func(c *lb.Config) {
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(c.Backends[0].URL, "http://"))
		d.SetA("i1.shop.test", "127.0.0.1")
		d.SetSRV("_http._tcp.shop.test", "i1.shop.test:"+port)
		src = "dns+srv://_http._tcp.shop.test?resolver=" + d.Addr
		c.Backends = []lb.BackendConfig{{URL: src}}
	})
	_, body, _ := e.get(t, "/")
	// html/template writes the + of dns+srv as &#43;.
	want := `<span class="source" title="discovered from DNS">via dns&#43;srv://_http._tcp.shop.test?resolver=` + d.Addr + `</span>`
	if !strings.Contains(body, want) {
		t.Fatalf("the page does not say the backend came from %s:\n%s", src, body)
	}
}
