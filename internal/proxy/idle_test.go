package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Keep-alive connections between requests hold no read buffer and no
// response writer; they borrow them again when the next request comes,
// including one that arrives in pieces and one pipelined behind another.
func TestIdleConnectionsHoldNoBuffers(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "path="+r.URL.Path)
	})
	srv := &Server{Route: one(u)}
	srv.bufs.count = true
	p := startProxy(t, srv)
	const n = 20
	conns := make([]*raw, n)
	for i := range conns {
		conns[i] = p.dial()
		conns[i].send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
		if res, body := conns[i].resp("GET"); res.StatusCode != 200 || body != "path=/a" {
			t.Fatalf("status %d body %q", res.StatusCode, body)
		}
	}
	waitLent := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for srv.bufs.lent.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d buffers lent with %d connections idle, want %d", srv.bufs.lent.Load(), n, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitLent(0)
	// A head in two pieces, then two pipelined requests, on idle connections.
	c := conns[0]
	c.send("GET /b HTTP/1.1\r\nHo")
	time.Sleep(20 * time.Millisecond)
	c.send("st: x\r\n\r\n")
	if _, body := c.resp("GET"); body != "path=/b" {
		t.Fatalf("split head: %q", body)
	}
	conns[1].send("GET /c HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"path=/c", "path=/d"} {
		if _, body := conns[1].resp("GET"); body != want {
			t.Fatalf("pipelined: %q, want %q", body, want)
		}
	}
	// A large head grows the read buffer; that one is dropped, not pooled.
	conns[2].send("GET /e HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 12<<10) + "\r\n\r\n")
	if _, body := conns[2].resp("GET"); body != "path=/e" {
		t.Fatalf("big head: %q", body)
	}
	waitLent(0)
	// Closing idle connections leaves nothing lent either.
	for _, c := range conns {
		c.c.Close()
	}
	waitLent(0)
}
