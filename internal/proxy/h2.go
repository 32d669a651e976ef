//lint:file-ignore SA1019 x/net/http2's Server is deprecated in favour of net/http's, which cannot serve one connection accepted elsewhere (ServeConn); in this Go release both are the same code.

package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 to clients. The protocol itself (frames, HPACK, flow control,
// stream limits and the defences against rapid reset and CONTINUATION
// floods) is golang.org/x/net/http2's; this file turns each stream into
// the engine's own request so that it goes through the same Route hook,
// header rewriting, retries, access log and HTTP/1.1 keep-alive upstream
// pools as a request that arrived over HTTP/1.1. A stream's exchange with
// its upstream is blocking, on the stream's own goroutine (h2exchange.go).

// HTTP2Options configure HTTP/2 to clients. A TLS connection that
// negotiated "h2" by ALPN is always served as HTTP/2 (whoever builds the
// TLS listener decides what ALPN offers); cleartext HTTP/2 needs Cleartext.
// Zero fields take the defaults in brackets.
type HTTP2Options struct {
	// Cleartext serves h2c with prior knowledge: a plain connection that
	// opens with the HTTP/2 preface is served as HTTP/2. Off, the preface
	// answers 505 as any HTTP/2.0 request line does.
	Cleartext bool
	// MaxConcurrentStreams bounds the streams one client connection may
	// have open; more are refused (RST_STREAM REFUSED_STREAM) [100].
	MaxConcurrentStreams uint32
	// CountError, when set, is called with a short name for each protocol
	// error a client commits (and for each connection-level defence that
	// fires), for metrics.
	CountError func(kind string)
}

// h2Preface is how an HTTP/2 client with prior knowledge opens: our
// HTTP/1.1 parser reads its first 18 bytes as a complete HTTP/2.0 head.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\n")

// h2state is the Server's HTTP/2 server, set up at the first HTTP/2
// connection. base exists so that Shutdown can tell every HTTP/2
// connection to finish gracefully (GOAWAY): x/net registers that on it.
type h2state struct {
	once sync.Once
	srv  *http2.Server
	base *http.Server
}

func (s *Server) h2setup() *h2state {
	h := &s.h2
	h.once.Do(func() {
		o := s.HTTP2
		streams := o.MaxConcurrentStreams
		if streams == 0 {
			streams = 100
		}
		h.srv = &http2.Server{
			MaxConcurrentStreams: streams,
			IdleTimeout:          s.to.ClientIdle,
			// A client that stops reading at the TCP level: its
			// connection is closed after ClientWrite without progress.
			WriteByteTimeout: s.to.ClientWrite,
			CountError:       o.CountError,
		}
		h.base = &http.Server{
			// Bounds the header list (SETTINGS_MAX_HEADER_LIST_SIZE,
			// and 431 above it) like an HTTP/1.1 head.
			MaxHeaderBytes: s.lim.MaxHeaderBytes,
			// Protocol errors are the client's: CountError counts them.
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		_ = http2.ConfigureServer(h.base, h.srv)
	})
	return h
}

// shutdownH2 sends GOAWAY on every HTTP/2 connection: streams in flight
// finish, new ones go elsewhere, and the connection closes when idle.
func (s *Server) shutdownH2() {
	h := &s.h2
	if h.base == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // base serves no connection of its own: only the hook runs
	_ = h.base.Shutdown(ctx)
}

// serveH2 serves c, cc's connection (TLS after ALPN h2, or plain after the
// preface), as HTTP/2 until it ends. cc stays active meanwhile, so
// Shutdown waits for it (after sending GOAWAY).
func (s *Server) serveH2(cc *clientConn, c net.Conn) {
	h := s.h2setup()
	// The handshake's deadline (or HTTP/1.1's read deadline, for h2c)
	// must not end the connection: x/net bounds its waits itself.
	c.SetDeadline(time.Time{})
	h.srv.ServeConn(c, &http2.ServeConnOpts{
		BaseConfig: h.base,
		Handler:    &h2handler{s: s, conn: cc},
	})
}

// isH2Preface reports whether cc's buffered bytes are the HTTP/2 preface
// (its first line and blank line, at least).
func (cc *clientConn) isH2Preface() bool {
	return cc.s.HTTP2.Cleartext && bytes.HasPrefix(cc.rd.avail(), h2Preface)
}

// serveH2C serves a plain connection that opened with the HTTP/2 preface,
// replaying what the engine already read of it.
func (cc *clientConn) serveH2C() {
	c := &replayConn{Conn: cc.c, pending: bytes.Clone(cc.rd.avail())}
	cc.rd.consume(len(cc.rd.avail()))
	cc.s.serveH2(cc, c)
}

// replayConn returns pending before reading from Conn.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// h2handler serves the streams of one HTTP/2 connection.
type h2handler struct {
	s    *Server
	conn *clientConn // the connection's: peer, trust, TLS
}

func (h *h2handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	cc := s.streamConn(h.conn)
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("proxy: panic serving an HTTP/2 stream", "client", cc.req.peer, "panic", v, "stack", string(debug.Stack()))
		}
		s.putStreamConn(cc)
	}()
	cc.serveStream(w, r)
}

// streamConn takes a clientConn from the pool as one stream's scratch
// space (parsed head, rewritten head, retry buffer): the code that builds
// the upstream head and calls Route is the HTTP/1.1 path's. It has no
// net.Conn of its own; peer, trust and TLS come from the connection.
func (s *Server) streamConn(conn *clientConn) *clientConn {
	cc, _ := s.pool.Get().(*clientConn)
	if cc == nil {
		cc = newClientConn()
	}
	cc.s = s
	cc.acquireBufs()
	r, cr := &cc.req, &conn.req
	r.peer, r.trust, r.trusted, r.isTLS = cr.peer, cr.trust, cr.trusted, cr.isTLS
	cc.peerText = append(cc.peerText[:0], conn.peerText...)
	cc.fwdFor = append(cc.fwdFor[:0], conn.fwdFor...)
	cc.peerPort, cc.local = conn.peerPort, conn.local
	return cc
}

func (s *Server) putStreamConn(cc *clientConn) {
	cc.bw.Reset(nil)
	cc.tried = [2]*Upstream{}
	cc.req.Tried, cc.req.LastErr = nil, nil
	if cap(cc.body) > 64<<10 {
		cc.body = nil
	}
	if cap(cc.hb) > 64<<10 {
		cc.hb = nil
	}
	s.pool.Put(cc)
}

// streamDeadline bounds one wait on a stream through set (x/net's
// ResponseWriter SetReadDeadline or SetWriteDeadline): armed before a read
// or write, cleared after it, so that a stream waiting for its upstream is
// not cut by a deadline meant for the client.
type streamDeadline struct {
	set func(time.Time) error
	d   time.Duration
}

func (x *streamDeadline) begin() {
	if x.set != nil && x.d > 0 {
		x.set(time.Now().Add(x.d))
	}
}

func (x *streamDeadline) end() {
	if x.set != nil && x.d > 0 {
		x.set(time.Time{})
	}
}

// writeGuard arms a stream's write deadline (x/net's SetWriteDeadline) so
// that a client that stops granting flow-control window loses the stream
// and frees its upstream connection. Each arming is a message to the
// connection's goroutine, so it is armed once per response and moved only
// when half of ClientWrite has passed since: the deadline lies
// ClientWrite + Upstream ahead, which no pause of the upstream reaches
// (Upstream ends the exchange first), and a stalled write trips it within
// ClientWrite + Upstream.
type writeGuard struct {
	set      func(time.Time) error
	d, slack time.Duration
	armed    time.Time
}

func (g *writeGuard) arm() {
	if g.set == nil || g.d <= 0 {
		return
	}
	now := time.Now()
	if !g.armed.IsZero() && now.Sub(g.armed) < g.d/2 {
		return
	}
	g.armed = now
	g.set(now.Add(g.d + g.slack))
}
