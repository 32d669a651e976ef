package proxy

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// testProxy runs a Server on a loopback port for the test's lifetime.
type testProxy struct {
	t    *testing.T
	srv  *Server
	addr string
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startProxy(t *testing.T, srv *Server) *testProxy {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = quietLogger()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv, l)
	t.Cleanup(func() { srv.Close() })
	return &testProxy{t: t, srv: srv, addr: l.Addr().String()}
}

// serve accepts on l and gives every connection to srv, as lb's accept
// loop does, until the test ends.
func serve(tb testing.TB, srv *Server, l net.Listener) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if srv.ServeConn(c) != nil {
				c.Close()
			}
		}
	}()
	tb.Cleanup(func() { l.Close(); <-done })
}

// one routes every request to u.
func one(u *Upstream) func(*Request) (Target, error) {
	return func(*Request) (Target, error) { return Target{Upstream: u}, nil }
}

func backend(t *testing.T, h http.HandlerFunc, configure ...func(*http.Server)) (*httptest.Server, *Upstream) {
	t.Helper()
	bs := httptest.NewUnstartedServer(h)
	for _, f := range configure {
		f(bs.Config)
	}
	bs.Start()
	t.Cleanup(bs.Close)
	u := NewUpstream("b", bs.Listener.Addr().String(), UpstreamOptions{})
	t.Cleanup(u.Close)
	return bs, u
}

// raw is a client speaking bytes to the proxy.
type raw struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (p *testProxy) dial() *raw {
	p.t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a hung test fails instead of hanging
	return &raw{t: p.t, c: c, br: bufio.NewReader(c)}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// resp reads one response (for a request of method) and its whole body.
func (r *raw) resp(method string) (*http.Response, string) {
	r.t.Helper()
	res, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return res, string(b)
}

// expectStatus sends req and checks the status of the answer.
func (p *testProxy) expectStatus(req string, status int) *http.Response {
	p.t.Helper()
	r := p.dial()
	r.send(req)
	res, _ := r.resp("GET")
	if res.StatusCode != status {
		p.t.Fatalf("request %q: status %d, want %d", req, res.StatusCode, status)
	}
	return res
}

// closed reports whether the proxy closed the connection (reading EOF).
func (r *raw) closed() bool {
	_, err := r.br.ReadByte()
	return err != nil
}

func get(t *testing.T, addr, path string) (*http.Response, string) {
	t.Helper()
	res, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}
