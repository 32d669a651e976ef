//go:build linux

package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Connections idle past parkAfter give up their goroutines to the idler
// and are served again, on new goroutines, when their next request comes,
// whole or in pieces.
func TestIdleConnectionsParkAndResume(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "path="+r.URL.Path)
	})
	srv := &Server{Route: one(u), parkAfter: 50 * time.Millisecond}
	srv.bufs.count = true
	p := startProxy(t, srv)
	const n = 20
	conns := make([]*raw, n)
	for i := range conns {
		conns[i] = p.dial()
		conns[i].send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := conns[i].resp("GET"); body != "path=/a" {
			t.Fatalf("body %q", body)
		}
	}
	waitFor(t, "all connections parked", func() bool { return srv.idler.count() == n && srv.bufs.lent.Load() == 0 })
	for round := range 2 {
		for i, c := range conns {
			path := fmt.Sprintf("/r%d-%d", round, i)
			if i%2 == 0 {
				c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
			} else { // the head in two pieces
				c.send("GET " + path + " HTTP/1.1\r\nHo")
				time.Sleep(time.Millisecond)
				c.send("st: x\r\n\r\n")
			}
			if _, body := c.resp("GET"); body != "path="+path {
				t.Fatalf("round %d conn %d: %q", round, i, body)
			}
		}
		waitFor(t, "connections parked again", func() bool { return srv.idler.count() == n })
	}
	// A client that closes a parked connection frees it.
	conns[0].c.Close()
	waitFor(t, "a closed connection released", func() bool { return srv.nconns.Load() == n-1 })
}

// A parked connection still ends after ClientIdle, and Shutdown closes
// parked connections at once and returns.
func TestParkedConnectionsHonourIdleTimeoutAndShutdown(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := &Server{Route: one(u), parkAfter: 50 * time.Millisecond, Timeouts: Timeouts{ClientIdle: 1200 * time.Millisecond}}
	p := startProxy(t, srv)
	c := p.dial()
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.resp("GET")
	waitFor(t, "the connection parked", func() bool { return srv.idler.count() == 1 })
	start := time.Now()
	if !c.closed() {
		t.Fatal("a parked connection was not closed")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %v, want about ClientIdle", d)
	}
	waitFor(t, "the idle connection released", func() bool { return srv.nconns.Load() == 0 })

	srv2 := &Server{Route: one(u), parkAfter: 50 * time.Millisecond}
	p2 := startProxy(t, srv2)
	cs := []*raw{p2.dial(), p2.dial(), p2.dial()}
	for _, c := range cs {
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.resp("GET")
	}
	waitFor(t, "connections parked", func() bool { return srv2.idler.count() == len(cs) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv2.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with parked connections: %v", err)
	}
	for _, c := range cs {
		if !c.closed() {
			t.Fatal("Shutdown left a parked connection open")
		}
	}
	if n := srv2.nconns.Load(); n != 0 {
		t.Fatalf("%d connections counted after Shutdown", n)
	}
}
