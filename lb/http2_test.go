package lb

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// testTLS is a certificate for 127.0.0.1 (httptest's) and a pool that
// trusts it.
func testTLS(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	defer ts.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	return ts.TLS.Certificates[0], pool
}

// startLBTLS serves cfg on a TLS listener offering cfg.ALPN(); it returns
// the balancer and a client config that trusts it, offering h2 only.
func startLBTLS(t *testing.T, cfg *Config, log *slog.Logger, apps ...*appBackend) (*liveLB, *tls.Config) {
	t.Helper()
	cert, pool := testTLS(t)
	wrap := func(l net.Listener) net.Listener {
		return tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: cfg.ALPN()})
	}
	l := startLBOn(t, cfg, wrap, log, apps...)
	return l, &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}}
}

// h2Client speaks HTTP/2 only, with a cookie jar.
func h2Client(tc *tls.Config) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: h2Transport(tc)}
}

// h2Transport speaks only HTTP/2: over TLS, or h2c with prior knowledge
// when tc is nil.
func h2Transport(tc *tls.Config) *http.Transport {
	var p http.Protocols
	if tc == nil {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP2(true)
	}
	return &http.Transport{TLSClientConfig: tc, Protocols: &p}
}

// protoApp answers what it saw: its name, the protocol it was spoken to
// in, X-Forwarded-Proto and the body's length.
func protoApp(t *testing.T, name string) *appBackend {
	a := newApp(t, name)
	a.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		if r.URL.Path == "/ws" || r.URL.Path == "/healthz" {
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/x-test")
		fmt.Fprintf(w, "%s %s %s %d", name, r.Proto, r.Header.Get("X-Forwarded-Proto"), n)
	})
	return a
}

func TestHTTP2SameRoutingStickinessAndMetricsAsHTTP1(t *testing.T) {
	a, b := protoApp(t, "a"), protoApp(t, "b")
	var mu sync.Mutex
	var logs strings.Builder
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	l, tc := startLBTLS(t, &Config{Log: LogConfig{Access: true}}, slog.New(slog.NewTextHandler(w, nil)), a, b)
	seen := map[string]bool{}
	for range 4 {
		c := h2Client(tc)
		resp, err := c.Get(l.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("proto %s status %d", resp.Proto, resp.StatusCode)
		}
		f := strings.Fields(string(body))
		if len(f) != 4 || f[1] != "HTTP/1.1" || f[2] != "https" {
			t.Fatalf("backend saw %q; want HTTP/1.1 upstream and X-Forwarded-Proto https", body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/x-test" {
			t.Fatalf("Content-Type %q", ct)
		}
		if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, DefaultCookieName+"=") || !strings.Contains(sc, "Secure") {
			t.Fatalf("first answer's Set-Cookie %q: want the affinity cookie, Secure under TLS", sc)
		}
		seen[f[0]] = true
		for i := range 5 {
			// Bodies, small (buffered, retryable) and large (streamed).
			size := 10
			if i%2 == 1 {
				size = 300 << 10
			}
			resp, err := c.Post(l.url+"/x", "application/octet-stream", bytes.NewReader(make([]byte, size)))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%s HTTP/1.1 https %d", f[0], size); string(got) != want {
				t.Fatalf("sticky POST over h2: %q, want %q", got, want)
			}
		}
	}
	if len(seen) != 2 {
		t.Fatalf("four users all on %v", seen)
	}
	for _, s := range l.bl.Backends() {
		if s.Total != 12 || s.PinnedUsers != 2 || s.InFlight != 0 {
			t.Fatalf("%+v: want 12 requests from 2 pinned users, none in flight", s)
		}
	}
	if n := sumCounter(t, l.bl, "unstuck_lb_requests_total", "code", "200"); n != 24 {
		t.Fatalf("requests_total{code=200} = %v, want 24", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if s := logs.String(); strings.Count(s, "log=access") != 24 || !strings.Contains(s, `method=POST target=/x status=200`) {
		t.Fatalf("access log of 24 HTTP/2 requests: %s", s)
	}
}

// sumCounter adds up the series of a counter whose label is value.
func sumCounter(t *testing.T, bl *Balancer, name, label, value string) float64 {
	t.Helper()
	mfs, err := bl.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func TestHTTP2RetriesAndNoBackend(t *testing.T) {
	a := protoApp(t, "a")
	dead := newApp(t, "dead")
	dead.srv.Close() // connection refused: retried on a
	cfg := &Config{Sticky: StickyConfig{Mode: "none"}, Backends: []BackendConfig{
		{Name: "dead", URL: dead.srv.URL}, {Name: "a", URL: a.srv.URL},
	}}
	l, tc := startLBTLS(t, cfg, nil)
	c := h2Client(tc)
	for range 6 {
		resp, err := c.Get(l.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: a dead backend's dial failure must be retried on another", resp.StatusCode)
		}
	}
	l.bl.Drain("a")
	l.bl.Drain("dead")
	resp, err := c.Get(l.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("no backend: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestHTTP2CleartextPriorKnowledgeBehindFlag(t *testing.T) {
	a := protoApp(t, "a")
	h2c := &http.Client{Timeout: 10 * time.Second, Transport: h2Transport(nil)}
	off := startLB(t, &Config{}, a)
	if resp, err := h2c.Get(off.url + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("h2c without http2.h2c: status %d, want a refused connection", resp.StatusCode)
	}
	on := startLB(t, &Config{HTTP2: HTTP2Config{H2C: true}}, a)
	resp, err := h2c.Get(on.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "a HTTP/1.1 http 0" {
		t.Fatalf("h2c: %s %q", resp.Proto, body)
	}
	// HTTP/1.1 still works on the same listener.
	if code, body := get(t, http.DefaultClient, on.url+"/"); code != 200 || body != "a HTTP/1.1 http 0" {
		t.Fatalf("HTTP/1.1 next to h2c: %d %q", code, body)
	}
}

func TestHTTP2ListenerKeepsWebSocketsOnHTTP1(t *testing.T) {
	a := newApp(t, "a")
	l, tc := startLBTLS(t, &Config{}, nil, a)
	// A WebSocket client offers http/1.1 (browsers do for WebSockets);
	// the listener offers h2 first and falls back.
	ws := tc.Clone()
	ws.NextProtos = []string{"http/1.1"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://"+l.addr+"/ws", &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: ws}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if got := wsEcho(t, ctx, c, "hi"); got != "a:hi" {
		t.Fatalf("echo %q", got)
	}
	// And a client offering both gets h2 for plain requests.
	if p := alpn(t, l.addr, tc); p != "h2" {
		t.Fatalf("ALPN chose %q, want h2", p)
	}
}

// alpn is what the listener at addr chooses for a client offering h2 and
// http/1.1.
func alpn(t *testing.T, addr string, tc *tls.Config) string {
	t.Helper()
	both := tc.Clone()
	both.NextProtos = []string{"h2", "http/1.1"}
	conn, err := tls.Dial("tcp", addr, both)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().NegotiatedProtocol
}

func TestHTTP2DisabledOffersOnlyHTTP1(t *testing.T) {
	a := newApp(t, "a")
	l, tc := startLBTLS(t, &Config{HTTP2: HTTP2Config{Disabled: true}}, nil, a)
	if p := alpn(t, l.addr, tc); p != "http/1.1" {
		t.Fatalf("ALPN chose %q with http2.disabled, want http/1.1", p)
	}
}
