package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestTLSListener(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "proto="+r.Header.Get("X-Forwarded-Proto"))
	})
	// Borrow httptest's certificate (valid for 127.0.0.1) and its client.
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	defer ts.Close()
	var secure bool
	srv := &Server{Route: func(req *Request) (Target, error) {
		secure = req.Secure()
		return Target{Upstream: u}, nil
	}, Logger: quietLogger()}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: ts.TLS.Certificates, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv, l)
	defer srv.Close()
	client := ts.Client()
	client.Transport.(*http.Transport).TLSClientConfig.NextProtos = []string{"http/1.1"}
	for i := 0; i < 3; i++ {
		res, err := client.Get("https://" + l.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "proto=https" || res.TLS == nil || res.TLS.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("%q tls=%v", b, res.TLS)
		}
	}
	if !secure {
		t.Fatal("Request.Secure() false under TLS")
	}
}

func TestGracefulShutdown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "done")
	})
	srv := &Server{Route: one(u), Logger: quietLogger()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv, l)
	p := &testProxy{t: t, srv: srv, addr: l.Addr().String()}

	idle := p.dial()
	idle.send("GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
	idle.resp("GET")
	busy := p.dial()
	busy.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	if !idle.closed() {
		t.Fatal("idle keep-alive connection not closed by Shutdown")
	}
	c, _ := net.Pipe()
	defer c.Close()
	if err := srv.ServeConn(c); err != ErrServerClosed {
		t.Fatalf("ServeConn during Shutdown returned %v", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	res, body := busy.resp("GET")
	if body != "done" || !res.Close {
		t.Fatalf("in-flight request: %q close=%v", body, res.Close)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	srv.Close()
}

func TestShutdownHonoursContext(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { close(started); <-release })
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.srv.Shutdown(ctx); err != context.Canceled {
		t.Fatalf("Shutdown with a cancelled context: %v", err)
	}
}

func TestTLSUpstream(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure backend "+r.Proto)
	}))
	defer ts.Close()
	cfg := ts.Client().Transport.(*http.Transport).TLSClientConfig
	u := NewUpstream("tls", ts.Listener.Addr().String(), UpstreamOptions{TLSConfig: cfg, TLSServerName: "example.com"})
	defer u.Close()
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	for i := 0; i < 2; i++ {
		c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if res, body := c.resp("GET"); res.StatusCode != 200 || body != "secure backend HTTP/1.1" {
			t.Fatalf("%d %q", res.StatusCode, body)
		}
	}
}

func TestPanicInRouteEndsOnlyThatConnection(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p := startProxy(t, &Server{Route: func(req *Request) (Target, error) {
		if string(req.Path()) == "/panic" {
			panic("router bug")
		}
		return Target{Upstream: u}, nil
	}})
	c := p.dial()
	c.send("GET /panic HTTP/1.1\r\nHost: a\r\n\r\n")
	if !c.closed() {
		t.Fatal("connection survived a panic")
	}
	if res, body := get(t, p.addr, "/"); res.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
}

func TestStalledClientHitsWriteTimeout(t *testing.T) {
	backendDone := make(chan struct{})
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(backendDone)
		chunk := make([]byte, 64<<10)
		for i := 0; i < 4096; i++ { // 256 MiB: far more than socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	p := startProxy(t, &Server{Route: one(u), Timeouts: Timeouts{ClientWrite: 300 * time.Millisecond}})
	c := p.dial()
	c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	// Never read: the proxy's writes stall, time out, and it gives up on
	// both sides, which the backend sees as a failed write.
	<-backendDone
}

func TestTunnelMaxLifetime(t *testing.T) {
	u := wsBackend(t, func(c net.Conn, br *bufio.Reader) { io.Copy(io.Discard, br) })
	p := startProxy(t, &Server{Route: one(u), Timeouts: Timeouts{TunnelMax: 200 * time.Millisecond}})
	c := p.dial()
	c.send(wsUpgrade)
	c.resp("GET")
	op, payload, err := readFrame(c.br)
	if err != nil || op != 8 || binary.BigEndian.Uint16(payload) != 1001 || string(payload[2:]) != "maximum lifetime" {
		t.Fatalf("op=%d %q %v", op, payload, err)
	}
}
