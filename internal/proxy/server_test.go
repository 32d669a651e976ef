package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
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
	go srv.Serve(l)
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
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
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
	if err := <-served; err != net.ErrClosed {
		t.Fatalf("Serve returned %v", err)
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
