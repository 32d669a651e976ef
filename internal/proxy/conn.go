package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"time"
)

const (
	clientReadBuf  = 8 << 10
	clientWriteBuf = 8 << 10
)

var (
	errClientGone  = errors.New("proxy: client went away")
	errHeadTimeout = &httpError{408, "request head timeout"}
	errRespHead    = &httpError{502, "upstream response head too large"}
	errBadUpgrade  = &httpError{502, "upstream switched protocols without an upgrade"}
	errRespFraming = &httpError{502, "upstream response has invalid framing"}
)

// clientConn is one client connection, served by one goroutine. It and
// its buffers are pooled by the Server, so a connection costs allocations
// only when the pool is empty, and a request none.
type clientConn struct {
	s     *Server
	c     net.Conn
	rd    connReader
	cw    connWriter
	bw    *bufio.Writer
	state atomic.Int32

	req      Request
	hb       []byte // the current request head, copied out of rd
	out      []byte // the head sent upstream, without its final CRLF
	body     []byte // the request body re-framed, when buffered for retries
	xff, fwd []byte // scratch for trusted forwarding headers
	peerText []byte
	fwdFor   []byte
	peerPort uint16         // the client's port (a PROXY header's, with ServeConnFrom)
	local    netip.AddrPort // the address the client connected to
	proxyHdr []byte         // scratch for a PROXY header to an upstream
	tried    [2]*Upstream
	tunnel   *Tunnel
	idle     idleRaw // buffer-free waits between requests (idle.go)

	reqBody      bodyState
	respBody     bodyState
	bodyComplete bool // the whole request body is in body
	needHost     bool // HTTP/1.0 request without Host
	sent100      bool
	tmp          [32]byte
}

func newClientConn() *clientConn {
	cc := &clientConn{}
	cc.req.fields = make([]field, 0, 32)
	return cc
}

func (cc *clientConn) serve() {
	s := cc.s
	owned := true // false once the connection is a tunnel or parked
	defer end(s, cc, &owned)
	if tc, ok := cc.c.(*tls.Conn); ok {
		tc.SetDeadline(time.Now().Add(s.to.ClientHeader))
		if err := tc.Handshake(); err != nil {
			return
		}
		switch tc.ConnectionState().NegotiatedProtocol {
		case "", "http/1.1":
		case "h2":
			s.serveH2(cc, tc)
			return
		default:
			return
		}
	}
	cc.loop(true, &owned)
}

// resume serves a parked connection whose next request has begun to
// arrive, on a new goroutine (park_linux.go).
func (cc *clientConn) resume() {
	s := cc.s
	owned := true
	defer end(s, cc, &owned)
	cc.acquireBufs()
	if cc.req.fields == nil {
		cc.req.fields = make([]field, 0, 32)
	}
	cc.loop(false, &owned)
}

// end is deferred by the goroutine serving cc: it releases cc unless a
// tunnel or the idler took it (and then it must not read cc: another
// goroutine may be serving it already).
func end(s *Server, cc *clientConn, owned *bool) {
	if v := recover(); v != nil {
		// Like net/http: a panic (in Route, say) ends this connection,
		// not the process.
		s.log.Error("proxy: panic serving a connection", "client", cc.req.peer, "panic", v, "stack", string(debug.Stack()))
	}
	if *owned {
		s.release(cc)
	}
}

// loop serves requests until the connection ends; it clears owned when
// the connection became a tunnel or was parked, and so is not the
// caller's to release.
func (cc *clientConn) loop(first bool, owned *bool) {
	for ; ; first = false {
		n, err := cc.readHead()
		if err != nil {
			if err == errParked {
				*owned = false
				return
			}
			if err == errVersion && first && cc.isH2Preface() {
				cc.serveH2C()
				return
			}
			if cc.headError(err) {
				cc.linger()
			}
			return
		}
		keep, tun := cc.handle(n)
		if tun != nil {
			*owned = false
			cc.runTunnel(tun)
			return
		}
		if !keep {
			cc.bw.Flush()
			cc.linger()
			return
		}
	}
}

// linger half-closes and reads what the client still sends for a short
// while before the close: closing with unread bytes resets the connection,
// and a reset can destroy the response the client has not read yet.
func (cc *clientConn) linger() {
	closeWrite(cc.c)
	cc.c.SetReadDeadline(time.Now().Add(lingerFor))
	for n := 0; n < lingerBytes; {
		m, err := cc.c.Read(cc.rd.buf)
		n += m
		if err != nil {
			return
		}
	}
}

const (
	lingerFor   = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

// readHead waits for the next request head and parses it. Bytes a client
// pipelined stay buffered; before it blocks, it flushes the responses
// written so far.
func (cc *clientConn) readHead() (int, error) {
	s := cc.s
	r := &cc.req
	searched, partial := 0, false
	for {
		a := cc.rd.avail()
		if len(a) > 0 {
			if end := findHeadEnd(a, searched); end >= 0 {
				if end > s.lim.MaxHeaderBytes {
					return 0, errHeadTooLarge
				}
				n, err := parseRequestHead(a[:end], &r.reqHead)
				if err == errIncomplete {
					err = errRequestLine
				}
				if err == nil {
					r.b = a[:n]
				}
				return n, err
			}
			searched = len(a)
			if len(a) >= s.lim.MaxHeaderBytes {
				return 0, errHeadTooLarge
			}
		}
		if cc.bw.Buffered() > 0 {
			if err := cc.bw.Flush(); err != nil {
				return 0, errClientGone
			}
		}
		idle := len(a) == 0
		var d time.Duration
		if idle {
			d = s.to.ClientIdle
			cc.state.Store(stIdle)
			if s.shutting.Load() {
				return 0, errClientGone
			}
		} else if !partial {
			// A head that does not come in one piece gets ClientHeader
			// from here on (slowloris).
			partial = true
			cc.rd.forceDeadline(time.Now().Add(s.to.ClientHeader))
		}
		var err error
		if idle && cc.idle.rc != nil {
			if _, err = cc.fillIdle(d); err == errParked {
				return 0, err // cc is no longer this goroutine's
			}
		} else {
			_, err = cc.rd.fill(d, s.lim.MaxHeaderBytes+1)
		}
		if idle && !cc.state.CompareAndSwap(stIdle, stActive) {
			return 0, errClientGone
		}
		if err != nil {
			switch {
			case err == errBufferFull:
				return 0, errHeadTooLarge
			case isTimeout(err) && len(cc.rd.avail()) > 0:
				return 0, errHeadTimeout
			}
			return 0, errClientGone
		}
	}
}

// headError answers a request that could not be read.
func (cc *clientConn) headError(err error) bool {
	var he *httpError
	if errors.As(err, &he) {
		cc.s.log.Info("proxy: bad request", "client", cc.req.peer, "status", he.status, "err", he.msg)
		cc.fail(he.status, false)
		return true
	}
	return false
}

// retryable reports whether the request's method is one of RetryMethods.
func (cc *clientConn) retryable() bool {
	m := cc.req.Method()
	for _, x := range cc.s.retry {
		if string(x) == string(m) {
			return true
		}
	}
	return false
}

// handle serves one parsed request whose head is the first n buffered
// bytes. It reports whether the connection may serve another request, or
// the tunnel the connection became.
func (cc *clientConn) handle(n int) (keep bool, tun *Tunnel) {
	s := cc.s
	r := &cc.req
	// Copy the head out of the read buffer: reading the body may reuse it,
	// and Route may be called again after that.
	cc.hb = append(cc.hb[:0], r.b...)
	r.b = cc.hb
	cc.rd.consume(n)
	cc.req.Attempt, cc.req.Tried, cc.req.LastErr = 0, nil, nil
	// An upgrade carrying a body is served as a plain request: the body
	// and the tunnel would both want the client's read side.
	ws := r.IsWebSocket() && !r.chunked && r.cl <= 0
	keep = r.minor == 1 && !r.connClose && !ws && !s.shutting.Load()

	kind := bodyNone
	switch {
	case r.chunked:
		kind = bodyChunked
	case r.cl > 0:
		kind = bodyCL
	}
	if s.lim.MaxBodyBytes > 0 && r.cl > s.lim.MaxBodyBytes {
		cc.logBad(errBodyTooLarge)
		cc.fail(413, false)
		return false, nil
	}
	cc.reqBody.init(kind, r.cl, kind == bodyChunked, s.lim.MaxBodyBytes)
	cc.sent100 = false
	cc.buildHead(ws)

	// Buffer a small body whole, so the request can be retried.
	cc.body = cc.body[:0]
	if !cc.reqBody.done && (kind == bodyChunked || r.cl <= int64(s.lim.RetryBodyBytes)) {
		cc.send100()
		srcErr, _ := cc.reqBody.pump(&cc.rd, s.to.ClientIdle, (*byteSink)(&cc.body), nil, s.lim.RetryBodyBytes)
		if srcErr != nil {
			cc.bodyError(srcErr)
			return false, nil
		}
	}
	cc.bodyComplete = cc.reqBody.done

	for attempt := 0; ; attempt++ {
		cc.req.Attempt = attempt
		cc.req.Tried = cc.tried[:attempt]
		t, err := s.Route(&cc.req)
		if err == nil && t.Upstream == nil {
			err = errors.New("proxy: Route returned no upstream")
		}
		if err != nil {
			status := 502
			if errors.Is(err, ErrNoUpstream) && attempt == 0 {
				// On a retry, the first upstream's failure is the story.
				status = 503
			}
			s.log.Warn("proxy: no route", "client", r.peer, "method", string(r.Method()), "path", string(r.Path()),
				"status", status, "err", err, "attempt", attempt, "first_err", cc.req.LastErr)
			cc.access(status, nil, 0, 0)
			cc.fail(status, keep && cc.reqBody.done)
			return keep && cc.reqBody.done, nil
		}
		start := time.Now()
		res := cc.exchange(&t, ws, keep)
		retry := attempt == 0 && res.err != nil && !res.wrote && !res.streamed && res.clientErr == nil &&
			!errors.Is(res.err, ErrUpstreamTimeout) &&
			(res.dialFailed || (cc.retryable() && cc.bodyComplete))
		if t.Done != nil {
			t.Done(Outcome{Status: res.status, Err: res.err, Duration: time.Since(start), Retrying: retry})
		}
		if retry {
			s.log.Info("proxy: retrying on another upstream", "upstream", t.Upstream.Name(), "err", res.err)
			cc.tried[0] = t.Upstream
			cc.req.LastErr = res.err
			continue
		}
		if res.clientErr != nil {
			if !res.wrote {
				cc.bodyError(res.clientErr)
			}
			return false, nil
		}
		if res.err != nil && !res.wrote {
			status := 502
			if errors.Is(res.err, ErrUpstreamTimeout) {
				status = 504
			}
			s.log.Warn("proxy: upstream failed", "upstream", t.Upstream.Name(), "client", r.peer,
				"method", string(r.Method()), "path", string(r.Path()), "status", status, "err", res.err)
			cc.access(status, nil, 0, time.Since(start))
			cc.fail(status, keep && cc.reqBody.done)
			return keep && cc.reqBody.done, nil
		}
		if res.err != nil {
			s.log.Warn("proxy: upstream failed mid-response", "upstream", t.Upstream.Name(), "client", r.peer,
				"method", string(r.Method()), "path", string(r.Path()), "status", res.status, "err", res.err)
		}
		cc.access(res.status, t.Upstream, cc.respBody.total, time.Since(start))
		if res.tunnel != nil {
			tun := &Tunnel{upstream: t.Upstream, uc: res.tunnel, cc: cc, done: make(chan struct{})}
			if t.OnTunnel != nil {
				t.OnTunnel(tun)
			}
			return false, tun
		}
		return res.keep && keep && !s.shutting.Load(), nil
	}
}

func (cc *clientConn) access(status int, u *Upstream, n int64, d time.Duration) {
	al := cc.s.AccessLog
	if al == nil {
		return
	}
	e := AccessEntry{Time: time.Now(), Client: cc.req.ClientIP(), Method: string(cc.req.Method()),
		Target: string(cc.req.Path()), Status: status, Bytes: n, Duration: d}
	if u != nil {
		e.Upstream = u.Name()
	}
	al(e)
}

// send100 answers Expect: 100-continue just before the body is read. The
// engine answers itself (as nginx does) and does not forward Expect: it
// reads the body to buffer it for retries anyway.
func (cc *clientConn) send100() {
	r := &cc.req
	if cc.sent100 || !r.expect100 || r.minor != 1 {
		return
	}
	cc.sent100 = true
	if len(cc.rd.avail()) > 0 {
		return // the client did not wait
	}
	cc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	cc.bw.Flush()
}

func (cc *clientConn) logBad(err error) {
	var he *httpError
	if errors.As(err, &he) {
		cc.s.log.Info("proxy: bad request", "client", cc.req.peer, "status", he.status, "err", he.msg)
	}
}

// bodyError answers a request whose body could not be read.
func (cc *clientConn) bodyError(err error) {
	var he *httpError
	if errors.As(err, &he) {
		cc.logBad(err)
		cc.fail(he.status, false)
		return
	}
	if isTimeout(err) {
		cc.fail(408, false)
	}
}
