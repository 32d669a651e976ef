package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestGetThroughProxy(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s xff=%s host=%s", r.Method, r.URL.Path, r.Header.Get("X-Forwarded-For"), r.Host)
	})
	p := startProxy(t, &Server{Route: one(u)})
	res, body := get(t, p.addr, "/x")
	if res.StatusCode != 200 || body != "hello GET /x xff=127.0.0.1 host="+p.addr {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
}

func TestKeepAliveReusesUpstreamConnection(t *testing.T) {
	var conns atomic.Int64
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }, func(hs *http.Server) {
		hs.ConnState = func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	for i := 0; i < 20; i++ {
		c.send("GET /k HTTP/1.1\r\nHost: a\r\n\r\n")
		res, body := c.resp("GET")
		if res.StatusCode != 200 || body != "ok" || res.Close {
			t.Fatalf("request %d: %d %q close=%v", i, res.StatusCode, body, res.Close)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("backend saw %d connections for 20 sequential requests, want 1", n)
	}
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	c.send("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nPOST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /4 HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []string{"/1", "/2", "/3", "/4"} {
		if _, body := c.resp("GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}

func TestChunkedBothWaysWithTrailers(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(200)
		w.Write([]byte("got:"))
		w.(http.Flusher).Flush()
		w.Write(b)
		w.Header().Set("X-Sum", "trailer-from-upstream;"+r.Trailer.Get("X-Client-Sum"))
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	c.send("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Client-Sum\r\n\r\n" +
		"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Client-Sum: 42\r\n\r\n")
	res, body := c.resp("POST")
	if body != "got:hello world" {
		t.Fatalf("body %q", body)
	}
	if len(res.TransferEncoding) != 1 || res.TransferEncoding[0] != "chunked" {
		t.Fatalf("response not chunked: %v", res.TransferEncoding)
	}
	if got := res.Trailer.Get("X-Sum"); got != "trailer-from-upstream;42" {
		t.Fatalf("trailer %q", got)
	}
}

func TestSlowUpstreamBodyArrivesProgressively(t *testing.T) {
	release := make(chan struct{})
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first"))
		w.(http.Flusher).Flush()
		<-release
		w.Write([]byte("second"))
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	c.send("GET /s HTTP/1.1\r\nHost: a\r\n\r\n")
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	// The first part must arrive while the upstream is still blocked.
	if _, err := io.ReadFull(res.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first part: %q %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(res.Body)
	if string(rest) != "second" {
		t.Fatalf("rest %q", rest)
	}
}

func TestHeadAnd204And304HaveNoBody(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	c.send("HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n")
	res, body := c.resp("HEAD")
	if res.StatusCode != 200 || body != "" || res.ContentLength != 5 {
		t.Fatalf("HEAD: %d %q cl=%d", res.StatusCode, body, res.ContentLength)
	}
	for _, path := range []string{"/204", "/304"} {
		c.send("GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n")
		if res, body := c.resp("GET"); body != "" || fmt.Sprint(res.StatusCode) != path[1:] {
			t.Fatalf("%s: %d %q", path, res.StatusCode, body)
		}
	}
	// The connection is still in sync after the bodiless responses.
	c.send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := c.resp("GET"); body != "hello" {
		t.Fatalf("after: %q", body)
	}
}

func TestExpect100Continue(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s expect=%q", b, r.Header.Get("Expect"))
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	c.send("PUT /e HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	line, err := c.br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim: %q %v", line, err)
	}
	c.br.ReadString('\n')
	c.send("data")
	if _, body := c.resp("PUT"); body != `data expect=""` {
		t.Fatalf("body %q", body)
	}
}

func TestConnectionCloseAndHTTP10(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s", r.Host)
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	c.send("GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	res, body := c.resp("GET")
	if !res.Close || body != "host=h" || !c.closed() {
		t.Fatalf("close: %v %q", res.Close, body)
	}
	c = p.dial()
	c.send("GET /a HTTP/1.0\r\n\r\n")
	res, body = c.resp("GET")
	if !res.Close || body != "host="+u.Addr() || !c.closed() {
		t.Fatalf("1.0: close=%v %q", res.Close, body)
	}
}

func TestHTTP10ClientGetsChunkedBodyDecoded(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part1")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part2")
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	c.send("GET / HTTP/1.0\r\nHost: a\r\n\r\n")
	res, body := c.resp("GET")
	if body != "part1part2" || len(res.TransferEncoding) != 0 {
		t.Fatalf("%q %v", body, res.TransferEncoding)
	}
}

func TestHopByHopHeadersStripped(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"Connection", "Keep-Alive", "X-Secret", "Proxy-Connection", "Te", "Upgrade", "Proxy-Authorization"} {
			if v := r.Header.Get(h); v != "" {
				fmt.Fprintf(w, "leaked %s=%s;", h, v)
			}
		}
		w.Header().Set("Connection", "X-Internal")
		w.Header().Set("X-Internal", "yes")
		w.Header().Set("Keep-Alive", "timeout=5")
		fmt.Fprintf(w, "end-to-end=%s", r.Header.Get("X-Keep"))
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	c.send("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nX-Keep: k\r\n" +
		"Keep-Alive: 300\r\nProxy-Connection: x\r\nTE: gzip\r\nUpgrade: h2c\r\nProxy-Authorization: Basic x\r\n\r\n")
	res, body := c.resp("GET")
	if body != "end-to-end=k" {
		t.Fatalf("body %q", body)
	}
	if res.Header.Get("X-Internal") != "" || res.Header.Get("Keep-Alive") != "" {
		t.Fatalf("response hop-by-hop leaked: %v", res.Header)
	}
}

func TestForwardedHeaders(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%s|xfp=%s|xfh=%s|fwd=%s", r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"),
			r.Header.Get("X-Forwarded-Host"), strings.Join(r.Header.Values("Forwarded"), "+"))
	})
	var clientIP atomic.Value
	route := func(req *Request) (Target, error) {
		clientIP.Store(req.ClientIP().String())
		return Target{Upstream: u}, nil
	}
	spoof := "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\n\r\n"

	p := startProxy(t, &Server{Route: route})
	c := p.dial()
	c.send(spoof)
	_, body := c.resp("GET")
	want := `xff=127.0.0.1|xfp=http|xfh=example.com|fwd=for=127.0.0.1;host="example.com";proto=http`
	if body != want {
		t.Fatalf("untrusted peer:\n got %s\nwant %s", body, want)
	}
	if clientIP.Load() != "127.0.0.1" {
		t.Fatalf("ClientIP from untrusted peer: %v", clientIP.Load())
	}

	p = startProxy(t, &Server{Route: route, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	c = p.dial()
	c.send(spoof)
	_, body = c.resp("GET")
	want = `xff=6.6.6.6, 127.0.0.1|xfp=https|xfh=evil|fwd=for=6.6.6.6, for=127.0.0.1;host="example.com";proto=http`
	if body != want {
		t.Fatalf("trusted peer:\n got %s\nwant %s", body, want)
	}
	if clientIP.Load() != "6.6.6.6" {
		t.Fatalf("ClientIP via trusted peer: %v", clientIP.Load())
	}
}

func TestRequestAccessorsAndSetCookie(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var seen string
	p := startProxy(t, &Server{Route: func(req *Request) (Target, error) {
		seen = fmt.Sprintf("%s %s %s %s ws=%v secure=%v", req.Method(), req.Path(), req.Header("x-a"), req.Cookie("s"), req.IsWebSocket(), req.Secure())
		return Target{Upstream: u, SetCookie: "s=v2; Path=/; HttpOnly"}, nil
	}})
	c := p.dial()
	c.send("GET /p?q=1 HTTP/1.1\r\nHost: a\r\nX-A: va\r\nCookie: a=1; s=\"v1\"; b=2\r\n\r\n")
	res, _ := c.resp("GET")
	if seen != "GET /p?q=1 va v1 ws=false secure=false" {
		t.Fatalf("accessors: %s", seen)
	}
	if got := res.Header.Get("Set-Cookie"); got != "s=v2; Path=/; HttpOnly" {
		t.Fatalf("Set-Cookie %q", got)
	}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// twoRoute tries a first, then b, recording each attempt.
type twoRoute struct {
	a, b     *Upstream
	mu       sync.Mutex
	attempts []string
	outcomes []Outcome
}

func (tr *twoRoute) route(req *Request) (Target, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	u := tr.a
	if req.Attempt == 1 {
		if len(req.Tried) != 1 || req.Tried[0] != tr.a || req.LastErr == nil {
			return Target{}, errors.New("retry without Tried/LastErr")
		}
		u = tr.b
	}
	tr.attempts = append(tr.attempts, u.Name())
	return Target{Upstream: u, Done: func(o Outcome) {
		tr.mu.Lock()
		tr.outcomes = append(tr.outcomes, o)
		tr.mu.Unlock()
	}}, nil
}

func TestRetryOnAnotherUpstreamWhenConnectFails(t *testing.T) {
	_, good := backend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "good %s", b)
	})
	tr := &twoRoute{a: NewUpstream("dead", deadAddr(t), UpstreamOptions{}), b: good}
	p := startProxy(t, &Server{Route: tr.route})
	c := p.dial()
	// Even a POST is retried when nothing could be sent.
	c.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
	if res, body := c.resp("POST"); res.StatusCode != 200 || body != "good hi" {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if fmt.Sprint(tr.attempts) != "[dead b]" || len(tr.outcomes) != 2 || !tr.outcomes[0].Retrying ||
		tr.outcomes[0].Err == nil || tr.outcomes[1].Status != 200 {
		t.Fatalf("attempts %v outcomes %+v", tr.attempts, tr.outcomes)
	}
}

// hangup is a backend that reads a request and closes without answering.
func hangup(t *testing.T) *Upstream {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				br := bufio.NewReader(c)
				http.ReadRequest(br)
				c.Close()
			}()
		}
	}()
	return NewUpstream("hangup", l.Addr().String(), UpstreamOptions{})
}

func TestRetryMethodsRetriedAfterFailureButPostIsNot(t *testing.T) {
	_, good := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") })
	tr := &twoRoute{a: hangup(t), b: good}
	p := startProxy(t, &Server{Route: tr.route, Limits: Limits{RetryMethods: []string{"GET", "PUT"}}})
	c := p.dial()
	c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if res, body := c.resp("GET"); res.StatusCode != 200 || body != "good" {
		t.Fatalf("GET: %d %q", res.StatusCode, body)
	}
	c.send("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	if res, body := c.resp("PUT"); res.StatusCode != 200 || body != "good" {
		t.Fatalf("PUT with buffered body: %d %q", res.StatusCode, body)
	}
	c.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	if res, body := c.resp("POST"); res.StatusCode != 502 || !strings.Contains(body, "Bad Gateway") {
		t.Fatalf("POST: %d %q", res.StatusCode, body)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if fmt.Sprint(tr.attempts) != "[hangup b hangup b hangup]" {
		t.Fatalf("attempts %v", tr.attempts)
	}
}

// By default only the safe methods are retried once the upstream may have
// seen the request: PUT is idempotent by RFC 9110, but not every app is.
func TestDefaultRetryMethodsAreTheSafeOnes(t *testing.T) {
	_, good := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") })
	tr := &twoRoute{a: hangup(t), b: good}
	p := startProxy(t, &Server{Route: tr.route})
	c := p.dial()
	for _, m := range []string{"GET", "HEAD", "OPTIONS"} {
		c.send(m + " / HTTP/1.1\r\nHost: a\r\n\r\n")
		if res, _ := c.resp(m); res.StatusCode != 200 {
			t.Fatalf("%s: %d", m, res.StatusCode)
		}
	}
	for _, m := range []string{"PUT", "DELETE"} {
		c.send(m + " / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
		if res, _ := c.resp(m); res.StatusCode != 502 {
			t.Fatalf("%s: %d, want 502 (not retried)", m, res.StatusCode)
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if fmt.Sprint(tr.attempts) != "[hangup b hangup b hangup b hangup hangup]" {
		t.Fatalf("attempts %v", tr.attempts)
	}
}

func TestLargeBodyNotRetried(t *testing.T) {
	_, good := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") })
	tr := &twoRoute{a: hangup(t), b: good}
	p := startProxy(t, &Server{Route: tr.route, Limits: Limits{RetryBodyBytes: 8, RetryMethods: []string{"PUT"}}})
	c := p.dial()
	c.send("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n01234567890123456789")
	if res, _ := c.resp("PUT"); res.StatusCode != 502 {
		t.Fatalf("status %d", res.StatusCode)
	}
}

func TestDeadPooledConnectionRetriedTransparently(t *testing.T) {
	bs, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "ok%s", b)
	})
	var routes atomic.Int64
	p := startProxy(t, &Server{Route: func(*Request) (Target, error) {
		routes.Add(1)
		return Target{Upstream: u}, nil
	}})
	c := p.dial()
	c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.resp("GET")
	bs.CloseClientConnections() // the pooled connection dies while idle
	c.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n!")
	if res, body := c.resp("POST"); res.StatusCode != 200 || body != "ok!" {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
	if routes.Load() != 2 {
		t.Fatalf("Route called %d times; the dead-connection retry should stay inside the exchange", routes.Load())
	}
}

func TestErrorsNoUpstreamBadGatewayTimeout(t *testing.T) {
	p := startProxy(t, &Server{Route: func(*Request) (Target, error) { return Target{}, ErrNoUpstream }})
	res := p.expectStatus("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 503)
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	p = startProxy(t, &Server{Route: one(NewUpstream("dead", deadAddr(t), UpstreamOptions{}))})
	p.expectStatus("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 502)

	release := make(chan struct{})
	_, slow := backend(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	defer close(release)
	var outcome atomic.Value
	p = startProxy(t, &Server{
		Route: func(*Request) (Target, error) {
			return Target{Upstream: slow, Done: func(o Outcome) { outcome.Store(o) }}, nil
		},
		Timeouts: Timeouts{Upstream: 300 * 1e6},
	})
	p.expectStatus("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 504)
	if o := outcome.Load().(Outcome); !errors.Is(o.Err, ErrUpstreamTimeout) || o.Retrying {
		t.Fatalf("outcome %+v", o)
	}
}

func TestClientHeaderTimeout408(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {})
	p := startProxy(t, &Server{Route: one(u), Timeouts: Timeouts{ClientHeader: 200 * 1e6}})
	c := p.dial()
	c.send("GET / HTTP/1.1\r\nHost: a\r\n") // never finished
	if res, _ := c.resp("GET"); res.StatusCode != 408 {
		t.Fatalf("status %d", res.StatusCode)
	}
}

func TestSmugglingAndMalformedRequests(t *testing.T) {
	var hits atomic.Int64
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	p := startProxy(t, &Server{Route: one(u), Limits: Limits{MaxHeaderBytes: 4096, MaxBodyBytes: 10}})
	cases := []struct {
		name, req string
		status    int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
		{"differing CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
		{"differing CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", 400},
		{"signed CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400},
		{"TE not chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 400},
		{"chunk without CRLF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400},
		{"chunk line bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400},
		{"bad header name", "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400},
		{"CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400},
		{"bare LF in middle", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", 400},
		{"bad request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"HTTP/2 line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405},
		{"absolute-form for another host", "GET http://evil/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"authority-form", "GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"asterisk without OPTIONS", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"too many fields", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", 200) + "\r\n", 431},
		{"oversized head", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 5000) + "\r\n\r\n", 431},
		{"body over limit (CL)", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", 413},
		{"body over limit (chunked)", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n", 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := p.dial()
			c.send(tc.req)
			res, body := c.resp("GET")
			if res.StatusCode != tc.status {
				t.Fatalf("status %d %q, want %d", res.StatusCode, body, tc.status)
			}
			if !res.Close || !c.closed() {
				t.Fatal("connection not closed after a framing error")
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d malformed requests reached the backend", n)
	}
}

func TestMaxConnsClosesAtAccept(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p := startProxy(t, &Server{Route: one(u), Limits: Limits{MaxConns: 1}})
	c1 := p.dial()
	c1.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c1.resp("GET") // c1 is now surely accepted and held
	c2 := p.dial()
	c2.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if !c2.closed() {
		t.Fatal("second connection over MaxConns was served")
	}
}

func TestLargeBodiesStreamBothWays(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d;", n)
		w.Write([]byte(strings.Repeat("y", 3<<20)))
	})
	p := startProxy(t, &Server{Route: one(u), Limits: Limits{RetryBodyBytes: 1024}})
	c := p.dial()
	const size = 5 << 20
	go func() {
		io.WriteString(c.c, fmt.Sprintf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size))
		io.WriteString(c.c, strings.Repeat("z", size))
		io.WriteString(c.c, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := 0; i < 64; i++ {
			fmt.Fprintf(c.c, "%x\r\n%s\r\n", 40000, strings.Repeat("q", 40000))
		}
		io.WriteString(c.c, "0\r\n\r\n")
	}()
	for _, want := range []string{fmt.Sprint(size), fmt.Sprint(64 * 40000)} {
		_, body := c.resp("POST")
		if !strings.HasPrefix(body, want+";") || len(body) != len(want)+1+3<<20 {
			t.Fatalf("want %s; got %d bytes starting %q", want, len(body), body[:min(20, len(body))])
		}
	}
}

func TestUpstreamCloseDropsIdleConnections(t *testing.T) {
	var conns atomic.Int64
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }, func(hs *http.Server) {
		hs.ConnState = func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.resp("GET")
	u.Close()
	c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if res, body := c.resp("GET"); res.StatusCode != 200 || body != "ok" {
		t.Fatalf("after Close: %d %q", res.StatusCode, body)
	}
	if conns.Load() != 2 {
		t.Fatalf("backend saw %d connections, want 2 (a fresh dial after Close)", conns.Load())
	}
}

func TestAccessLog(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "12345") })
	entries := make(chan AccessEntry, 1)
	p := startProxy(t, &Server{Route: one(u), AccessLog: func(e AccessEntry) { entries <- e }})
	c := p.dial()
	c.send("GET /logged?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
	c.resp("GET")
	e := <-entries
	if e.Method != "GET" || e.Target != "/logged?x=1" || e.Status != 200 || e.Upstream != "b" || e.Bytes != 5 || e.Client.String() != "127.0.0.1" {
		t.Fatalf("%+v", e)
	}
}

func TestFullDuplexEchoOfLargeUpload(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		io.Copy(w, r.Body) // answers while it still reads
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	const size = 16 << 20
	go func() {
		fmt.Fprintf(c.c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size)
		chunk := []byte(strings.Repeat("e", 64<<10))
		for i := 0; i < size/len(chunk); i++ {
			if _, err := c.c.Write(chunk); err != nil {
				return
			}
		}
	}()
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	if err != nil || n != size {
		t.Fatalf("echoed %d bytes (%v), want %d", n, err, size)
	}
	// The connection is still usable afterwards.
	c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if res, _ := c.resp("GET"); res.StatusCode != 200 {
		t.Fatalf("next request: %d", res.StatusCode)
	}
}

func TestEarlyAnswerToLargeUploadIsRelayed(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too big for me", http.StatusRequestEntityTooLarge) // without reading
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	go func() {
		fmt.Fprintf(c.c, "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", 64<<20)
		chunk := []byte(strings.Repeat("e", 64<<10))
		for {
			if _, err := c.c.Write(chunk); err != nil {
				return
			}
		}
	}()
	res, body := c.resp("PUT")
	if res.StatusCode != 413 || body != "too big for me\n" {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
	if !c.closed() {
		t.Fatal("connection with an unread body left open")
	}
}

func TestAbsoluteFormBecomesOriginForm(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RequestURI+" "+r.Host) })
	var paths []string
	p := startProxy(t, &Server{Route: func(req *Request) (Target, error) {
		paths = append(paths, string(req.Path()))
		return Target{Upstream: u}, nil
	}})
	c := p.dial()
	for _, tc := range []struct{ target, want string }{
		{"http://Example.com:80/a/b?c=d", "/a/b?c=d example.com:80"},
		{"HTTP://example.com:80", "/ example.com:80"},
		{"*", ""}, // Go's server answers OPTIONS * itself, with no body
	} {
		method := "GET"
		if tc.target == "*" {
			method = "OPTIONS"
		}
		c.send(method + " " + tc.target + " HTTP/1.1\r\nHost: example.com:80\r\n\r\n")
		if _, body := c.resp(method); body != tc.want {
			t.Fatalf("%s: got %q, want %q", tc.target, body, tc.want)
		}
	}
	if fmt.Sprint(paths) != "[/a/b?c=d / *]" {
		t.Fatalf("Route saw %v", paths)
	}
}

func TestTolerableFramingVariantsAccepted(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s|%v", b, r.Header["Content-Length"])
	})
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	for _, tc := range []struct{ req, want string }{
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "hello|[5]"},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", "hello|[5]"},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "hello|[]"},
		{"\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "|[0]"},
	} {
		c.send(tc.req)
		if res, body := c.resp("POST"); res.StatusCode != 200 || body != tc.want {
			t.Fatalf("%q: %d %q, want %q", tc.req, res.StatusCode, body, tc.want)
		}
	}
}

func TestStreamedUploadAfterUpstreamDroppedIdleConnection(t *testing.T) {
	bs, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	})
	p := startProxy(t, &Server{Route: one(u), Limits: Limits{RetryBodyBytes: 16}})
	c := p.dial()
	c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.resp("GET")
	bs.CloseClientConnections() // the pooled connection is now dead
	body := strings.Repeat("u", 100000)
	c.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + body)
	if res, got := c.resp("POST"); res.StatusCode != 200 || got != "100000" {
		t.Fatalf("%d %q", res.StatusCode, got)
	}
}

func TestEqualFold(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"Content-Length", "content-length", true},
		{"content-length", "CONTENT-LENGTH", true},
		{"Host", "host", true},
		{"Hosts", "host", false},
		{"h@st", "h`st", false}, // '@' and '`' are not a case pair
		{"[", "{", false},
		{"", "", true},
	} {
		if got := equalFold([]byte(c.a), c.b); got != c.want {
			t.Errorf("equalFold(%q, %q) = %v", c.a, c.b, got)
		}
		if got := equalFold([]byte(c.a), []byte(c.b)); got != c.want {
			t.Errorf("equalFold(%q, []byte(%q)) = %v", c.a, c.b, got)
		}
	}
}
