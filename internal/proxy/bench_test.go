package proxy

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
)

const benchReq = "GET /api/items?page=2 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk/4.1\r\n" +
	"Accept: */*\r\nAccept-Encoding: gzip\r\nCookie: unstuck_affinity=b1.1767225600.abcdef0123456789; theme=dark\r\n\r\n"

func BenchmarkParseRequestHead(b *testing.B) {
	in := []byte(benchReq)
	var r reqHead
	r.fields = make([]field, 0, 32)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if findHeadEnd(in, 0) < 0 {
			b.Fatal("no end")
		}
		if _, err := parseRequestHead(in, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildUpstreamHead(b *testing.B) {
	cc := newClientConn()
	cc.s = &Server{}
	cc.hb = []byte(benchReq)
	r := &cc.req
	if _, err := parseRequestHead(cc.hb, &r.reqHead); err != nil {
		b.Fatal(err)
	}
	r.b = cc.hb
	cc.peerText = []byte("127.0.0.1")
	cc.fwdFor = cc.peerText
	b.ReportAllocs()
	for b.Loop() {
		cc.buildHead(false)
		if cc.req.Cookie("unstuck_affinity") == nil {
			b.Fatal("cookie")
		}
	}
}

// rawBackend answers every request head with a fixed 100-byte response,
// allocation-free, so that allocations measured are the proxy's.
func rawBackend(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 100))
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 16<<10)
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(resp); err != nil {
							return
						}
						n = copy(buf, buf[i+4:n])
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// BenchmarkProxyGET is one keep-alive GET through the engine per op, over
// loopback, with a raw client and backend: allocs/op are the proxy's.
func BenchmarkProxyGET(b *testing.B) {
	u := NewUpstream("b1", rawBackend(b), UpstreamOptions{})
	srv := &Server{Route: func(*Request) (Target, error) { return Target{Upstream: u}, nil }, Logger: quietLogger()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serve(b, srv, l)
	defer srv.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	req := []byte(benchReq)
	var rh respHead
	rh.fields = make([]field, 0, 16)
	buf := make([]byte, 0, 4096)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		buf = buf[:0]
		for {
			p, err := br.Peek(1)
			if err != nil {
				b.Fatal(err)
			}
			_ = p
			n := br.Buffered()
			chunk, _ := br.Peek(n)
			buf = append(buf, chunk...)
			br.Discard(n)
			end := findHeadEnd(buf, 0)
			if end < 0 {
				continue
			}
			if _, err := parseResponseHead(buf[:end], &rh); err != nil {
				b.Fatal(err)
			}
			for int64(len(buf)-end) < rh.cl {
				p, err := br.Peek(1)
				if err != nil {
					b.Fatal(err)
				}
				_ = p
				n := br.Buffered()
				chunk, _ := br.Peek(n)
				buf = append(buf, chunk...)
				br.Discard(n)
			}
			return
		}
	}
	roundTrip()
	b.ReportAllocs()
	for b.Loop() {
		roundTrip()
	}
}

func TestParseAndRewriteDoNotAllocate(t *testing.T) {
	cc := newClientConn()
	cc.s = &Server{}
	cc.hb = []byte("POST /x HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, X-Hop, Upgrade\r\nUpgrade: websocket\r\n" +
		"X-Hop: 1\r\nContent-Length: 5, 5\r\nExpect: 100-continue\r\nCookie: a=1; unstuck_affinity=v\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n")
	cc.peerText = []byte("127.0.0.1")
	cc.fwdFor = cc.peerText
	r := &cc.req
	r.trusted = true
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := parseRequestHead(cc.hb, &r.reqHead); err != nil {
			t.Fatal(err)
		}
		r.b = cc.hb
		cc.buildHead(r.IsWebSocket())
		if cc.req.Cookie("unstuck_affinity") == nil || cc.req.Header("x-hop") == nil {
			t.Fatal("lookup")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per request head", allocs)
	}
}
