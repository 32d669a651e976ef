package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"testing"
	"time"
)

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"\r\nGET /x?y=z HTTP/1.0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-Foo\r\nUpgrade: websocket\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nCookie: a=b; c=\"d\"\r\n\r\n",
}

// FuzzParseRequestHead: the parser never panics, and what it accepts is
// unambiguous: spans in bounds, no CR/LF/NUL in names or values, never both
// Content-Length and Transfer-Encoding.
func FuzzParseRequestHead(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end := findHeadEnd(b, 0)
		if end < 0 {
			return
		}
		var r reqHead
		n, err := parseRequestHead(b[:end], &r)
		if err != nil {
			return
		}
		if n != end {
			t.Fatalf("consumed %d of a %d-byte head", n, end)
		}
		if r.hasTE && r.cl >= 0 {
			t.Fatal("accepted both Content-Length and Transfer-Encoding")
		}
		if r.hasTE && !r.chunked {
			t.Fatal("accepted a Transfer-Encoding other than chunked")
		}
		for _, f := range r.fields {
			if bytes.ContainsAny(f.name.of(b), "\r\n\x00 :") || bytes.ContainsAny(f.value.of(b), "\r\n\x00") {
				t.Fatalf("bad field accepted: %q: %q", f.name.of(b), f.value.of(b))
			}
		}
		if bytes.ContainsAny(r.target.of(b), " \r\n") || len(r.method.of(b)) == 0 {
			t.Fatal("bad request line accepted")
		}
		var ri Request
		ri.reqHead, ri.b = r, b
		ri.Cookie("a")
		ri.Header("host")
		ri.IsWebSocket()
	})
}

// FuzzParseResponseHead: never panics; accepted statuses are 100-599.
func FuzzParseResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.0 204\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n",
		"HTTP/1.1 999 X\r\n\r\n",
		"HTTP/1.1 200 OK\nX: y\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end := findHeadEnd(b, 0)
		if end < 0 {
			return
		}
		var r respHead
		if _, err := parseResponseHead(b[:end], &r); err != nil {
			return
		}
		if r.status < 100 || r.status > 599 {
			t.Fatalf("status %d accepted", r.status)
		}
	})
}

// decodeAll runs a chunkDecoder over in, offering at most step bytes more
// each time it asks, and returns the data and trailer lines.
func decodeAll(in []byte, step int) (data, trailers []byte, ok bool) {
	var d chunkDecoder
	avail := 0
	for !d.done() {
		if avail == 0 {
			avail = min(step, len(in))
		}
		kind, n, err := d.step(in[:avail])
		if err != nil {
			return nil, nil, false
		}
		switch kind {
		case ckMore:
			if avail == len(in) {
				return nil, nil, false // truncated
			}
			avail = min(avail+step, len(in))
			continue
		case ckData:
			data = append(data, in[:n]...)
		case ckTrailer:
			trailers = append(trailers, in[:n]...)
		}
		in = in[n:]
		avail -= n
	}
	return data, trailers, true
}

// FuzzChunkDecoder: never panics; the result does not depend on how the
// input is split; what it accepts, Go's own chunked reader reads the same.
func FuzzChunkDecoder(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"A\r\n0123456789\r\n0\r\n\r\n",
		"5\r\nhelloXX",
		"0\r\n\r\n",
		"5 \r\nhello\r\n0\r\n\r\n",
		"ffffffffffffffffff\r\n",
	} {
		f.Add([]byte(s), 1)
	}
	f.Fuzz(func(t *testing.T, in []byte, step int) {
		if step < 1 || step > 64 {
			step = 1 + (step&63+64)%64
		}
		data, tr, ok := decodeAll(in, len(in)+1)
		data2, tr2, ok2 := decodeAll(in, step)
		if ok != ok2 || !bytes.Equal(data, data2) || !bytes.Equal(tr, tr2) {
			t.Fatalf("split changes the result: %v/%v %q/%q", ok, ok2, data, data2)
		}
		if !ok {
			return
		}
		got, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(in)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("net/http reads %q (%v), we read %q", got, err, data)
		}
	})
}

// FuzzProxyConnection feeds arbitrary bytes to a running engine (Go's
// server behind it) as one client connection: whatever comes, the engine
// answers or closes, never panics and never hangs.
func FuzzProxyConnection(f *testing.F) {
	for _, s := range append(requestSeeds,
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabcGET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85\x01\x02\x03\x04hello",
		"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	) {
		f.Add([]byte(s))
	}
	bs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	defer bs.Close()
	u := NewUpstream("b", bs.Listener.Addr().String(), UpstreamOptions{})
	srv := &Server{Route: func(*Request) (Target, error) { return Target{Upstream: u}, nil }, Logger: quietLogger(),
		Limits: Limits{RetryBodyBytes: 8}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	serve(f, srv, l)
	defer srv.Close()
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(in)
			c.(*net.TCPConn).CloseWrite()
		}()
		if _, err := io.Copy(io.Discard, c); err != nil && isTimeout(err) {
			t.Fatalf("engine neither answered nor closed within 10 s")
		}
	})
}
