package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Large Content-Length bodies both ways arrive intact (by splice between
// plain TCP sockets), the access log counts them, and the connection
// serves the next request. The streamed upload takes the pooled upstream
// connection, which a peek found open, instead of dialing.
func TestLargeBodiesSplicedIntact(t *testing.T) {
	var conns atomic.Int64
	const size = 1<<20 + 12345
	blob := make([]byte, size)
	rand.Read(blob)
	sum := sha256.Sum256(blob)
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" {
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(blob)
	}, func(hs *http.Server) {
		hs.ConnState = func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
	})
	entries := make(chan AccessEntry, 4)
	srv := &Server{Route: one(u), AccessLog: func(e AccessEntry) { entries <- e }}
	p := startProxy(t, srv)
	c := p.dial()
	for range 2 {
		c.send("GET /blob HTTP/1.1\r\nHost: a\r\n\r\n")
		res, body := c.resp("GET")
		if res.StatusCode != 200 || sha256.Sum256([]byte(body)) != sum {
			t.Fatalf("status %d, %d bytes, body differs", res.StatusCode, len(body))
		}
		if e := <-entries; e.Bytes != size {
			t.Fatalf("access log counts %d bytes, want %d", e.Bytes, size)
		}
	}
	go func() {
		fmt.Fprintf(c.c, "PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size)
		c.c.Write(blob)
	}()
	res, body := c.resp("PUT")
	if want := fmt.Sprintf("%d %s", size, hex.EncodeToString(sum[:])); res.StatusCode != 200 || body != want {
		t.Fatalf("upload: %d %q, want %q", res.StatusCode, body, want)
	}
	<-entries
	if n := conns.Load(); n != 1 {
		t.Fatalf("backend saw %d connections, want 1 (the upload reusing the pooled one)", n)
	}
	if srv.spliced.Load() < 2*size {
		t.Fatalf("%d bytes spliced, want the bodies' (%d+)", srv.spliced.Load(), 2*size)
	}
	c.send("GET /blob HTTP/1.1\r\nHost: a\r\n\r\n")
	if res, body := c.resp("GET"); res.StatusCode != 200 || len(body) != size {
		t.Fatalf("after: %d, %d bytes", res.StatusCode, len(body))
	}
}

// scriptedBackend answers each connection's first request head with head
// and body, then waits (stall) or closes.
func scriptedBackend(t *testing.T, head string, body []byte, stall bool) *Upstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				var got []byte
				for !bytes.Contains(got, []byte("\r\n\r\n")) {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					got = append(got, buf[:n]...)
				}
				c.Write([]byte(head))
				c.Write(body)
				if stall {
					<-done
				}
			}()
		}
	}()
	u := NewUpstream("s", l.Addr().String(), UpstreamOptions{})
	t.Cleanup(u.Close)
	return u
}

// A spliced response that ends early, or stalls past the Upstream
// timeout, ends the client connection after the bytes that came, and the
// router hears of the failure.
func TestSplicedResponseTruncatedOrStalled(t *testing.T) {
	for _, stall := range []bool{false, true} {
		t.Run(fmt.Sprintf("stall=%v", stall), func(t *testing.T) {
			sent := bytes.Repeat([]byte("t"), 200<<10)
			u := scriptedBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n", sent, stall)
			outcomes := make(chan Outcome, 1)
			srv := &Server{
				Route: func(*Request) (Target, error) {
					return Target{Upstream: u, Done: func(o Outcome) { outcomes <- o }}, nil
				},
				Timeouts: Timeouts{Upstream: 300 * time.Millisecond},
			}
			p := startProxy(t, srv)
			c := p.dial()
			c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			res, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, res.Body)
			if err == nil || n >= 1<<20 || n < int64(len(sent)) {
				t.Fatalf("read %d bytes, err %v: want the %d sent, then an error", n, err, len(sent))
			}
			o := <-outcomes
			if o.Err == nil || o.Status != 200 {
				t.Fatalf("outcome %+v: want status 200 with an error", o)
			}
			if stall && !isTimeout(o.Err) {
				t.Fatalf("stalled upstream: %v, want a timeout", o.Err)
			}
		})
	}
}

// A client that stops reading a large response is cut off after
// ClientWrite; one that stops sending a large upload gets 408 after
// ClientIdle. Neither holds the proxy.
func TestSplicedBodiesHonourClientTimeouts(t *testing.T) {
	big := bytes.Repeat([]byte("w"), 32<<20)
	u := scriptedBackend(t, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(big)), big, true)
	outcomes := make(chan Outcome, 1)
	srv := &Server{
		Route: func(*Request) (Target, error) {
			return Target{Upstream: u, Done: func(o Outcome) { outcomes <- o }}, nil
		},
		Timeouts: Timeouts{ClientWrite: 300 * time.Millisecond},
	}
	p := startProxy(t, srv)
	c := p.dial()
	c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n") // and never read
	select {
	case <-outcomes:
	case <-time.After(10 * time.Second):
		t.Fatal("a client that does not read held the exchange past ClientWrite")
	}

	_, u2 := backend(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	})
	p2 := startProxy(t, &Server{Route: one(u2), Timeouts: Timeouts{ClientIdle: 300 * time.Millisecond}})
	c2 := p2.dial()
	c2.send("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n" + strings.Repeat("p", 100<<10))
	res, _ := c2.resp("PUT")
	if res.StatusCode != 408 {
		t.Fatalf("stalled upload: %d, want 408", res.StatusCode)
	}
}
