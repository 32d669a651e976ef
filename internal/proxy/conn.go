package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
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
	tried    [2]*Upstream
	tunnel   *Tunnel

	reqBody      bodyState
	respBody     bodyState
	bodyComplete bool // the whole request body is in body
	needHost     bool // HTTP/1.0 request without Host
	sent100      bool
	tmp          [32]byte
}

func newClientConn() *clientConn {
	cc := &clientConn{}
	cc.rd.buf = make([]byte, clientReadBuf)
	cc.bw = bufio.NewWriterSize(&cc.cw, clientWriteBuf)
	cc.req.impl.fields = make([]field, 0, 32)
	return cc
}

func (cc *clientConn) serve() {
	s := cc.s
	si := &s.impl
	tunneled := false
	defer func() {
		if !tunneled {
			s.release(cc)
		}
	}()
	if tc, ok := cc.c.(*tls.Conn); ok {
		tc.SetDeadline(time.Now().Add(si.to.ClientHeader))
		if err := tc.Handshake(); err != nil {
			return
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			return
		}
	}
	for {
		n, err := cc.readHead()
		if err != nil {
			cc.headError(err)
			return
		}
		keep, tun := cc.handle(n)
		if tun != nil {
			tunneled = true
			cc.runTunnel(tun)
			return
		}
		if !keep {
			cc.bw.Flush()
			closeWrite(cc.c)
			return
		}
	}
}

// readHead waits for the next request head and parses it. Bytes a client
// pipelined stay buffered; before it blocks, it flushes the responses
// written so far.
func (cc *clientConn) readHead() (int, error) {
	si := &cc.s.impl
	r := &cc.req.impl
	searched, partial := 0, false
	for {
		a := cc.rd.avail()
		if len(a) > 0 {
			if end := findHeadEnd(a, searched); end >= 0 {
				if end > si.lim.MaxHeaderBytes {
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
			if len(a) >= si.lim.MaxHeaderBytes {
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
			d = si.to.ClientIdle
			cc.state.Store(stIdle)
			if si.shutting.Load() {
				return 0, errClientGone
			}
		} else if !partial {
			// A head that does not come in one piece gets ClientHeader
			// from here on (slowloris).
			partial = true
			cc.rd.forceDeadline(time.Now().Add(si.to.ClientHeader))
		}
		_, err := cc.rd.fill(d, si.lim.MaxHeaderBytes+1)
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
func (cc *clientConn) headError(err error) {
	var he *httpError
	if errors.As(err, &he) {
		cc.s.impl.log.Info("proxy: bad request", "client", cc.req.impl.peer, "status", he.status, "err", he.msg)
		cc.fail(he.status, false)
	}
}

func (cc *clientConn) idempotent() bool {
	m := cc.req.impl.method()
	for _, x := range cc.s.impl.idem {
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
	si := &s.impl
	r := &cc.req.impl
	// Copy the head out of the read buffer: reading the body may reuse it,
	// and Route may be called again after that.
	cc.hb = append(cc.hb[:0], r.b...)
	r.b = cc.hb
	cc.rd.consume(n)
	cc.req.Attempt, cc.req.Tried, cc.req.LastErr = 0, nil, nil
	ws := r.isWebSocket()
	keep = r.minor == 1 && !r.connClose && !ws && !si.shutting.Load()

	kind := bodyNone
	switch {
	case r.chunked:
		kind = bodyChunked
	case r.cl > 0:
		kind = bodyCL
	}
	if si.lim.MaxBodyBytes > 0 && r.cl > si.lim.MaxBodyBytes {
		cc.logBad(errBodyTooLarge)
		cc.fail(413, false)
		return false, nil
	}
	cc.reqBody.init(kind, r.cl, kind == bodyChunked, si.lim.MaxBodyBytes)
	cc.sent100 = false
	cc.buildHead(ws)

	// Buffer a small body whole, so the request can be retried.
	cc.body = cc.body[:0]
	if !cc.reqBody.done && (kind == bodyChunked || r.cl <= int64(si.lim.RetryBodyBytes)) {
		cc.send100()
		srcErr, _ := cc.reqBody.pump(&cc.rd, si.to.ClientIdle, (*byteSink)(&cc.body), nil, si.lim.RetryBodyBytes)
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
			if errors.Is(err, ErrNoUpstream) {
				status = 503
			}
			si.log.Warn("proxy: no route", "client", r.peer, "method", r.method(), "path", r.path(), "status", status, "err", err)
			cc.access(status, nil, 0, 0)
			cc.fail(status, keep && cc.reqBody.done)
			return keep && cc.reqBody.done, nil
		}
		start := time.Now()
		res := cc.exchange(&t, ws, keep)
		retry := attempt == 0 && res.err != nil && !res.wrote && !res.streamed && res.clientErr == nil &&
			!errors.Is(res.err, ErrUpstreamTimeout) &&
			(res.dialFailed || (cc.idempotent() && cc.bodyComplete))
		if t.Done != nil {
			t.Done(Outcome{Status: res.status, Err: res.err, Duration: time.Since(start), Retrying: retry})
		}
		if retry {
			si.log.Info("proxy: retrying on another upstream", "upstream", t.Upstream.Name(), "err", res.err)
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
			si.log.Warn("proxy: upstream failed", "upstream", t.Upstream.Name(), "client", r.peer,
				"method", r.method(), "path", r.path(), "status", status, "err", res.err)
			cc.access(status, nil, 0, time.Since(start))
			cc.fail(status, keep && cc.reqBody.done)
			return keep && cc.reqBody.done, nil
		}
		if res.err != nil {
			si.log.Warn("proxy: upstream failed mid-response", "upstream", t.Upstream.Name(), "client", r.peer,
				"method", r.method(), "path", r.path(), "status", res.status, "err", res.err)
		}
		cc.access(res.status, t.Upstream, cc.respBody.total, time.Since(start))
		if res.tunnel != nil {
			tun := &Tunnel{}
			tun.impl.upstream = t.Upstream
			tun.impl.uc = res.tunnel
			tun.impl.cc = cc
			tun.impl.done = make(chan struct{})
			if t.OnTunnel != nil {
				t.OnTunnel(tun)
			}
			return false, tun
		}
		return res.keep && keep && !si.shutting.Load(), nil
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
	r := &cc.req.impl
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
		cc.s.impl.log.Info("proxy: bad request", "client", cc.req.impl.peer, "status", he.status, "err", he.msg)
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

// result is how one exchange with an upstream went.
type result struct {
	status     int
	err        error // upstream side
	clientErr  error // client side (body framing, size, gone)
	wrote      bool  // response bytes went to the client
	dialFailed bool
	streamed   bool // the client's body was consumed while sending: no retry
	keep       bool // the client connection may go on
	tunnel     *upConn
}

// exchange sends the request to t's upstream and relays the response.
func (cc *clientConn) exchange(t *Target, ws, keep bool) (res result) {
	si := &cc.s.impl
	u := &t.Upstream.impl
	uc := u.get(si.clk.get(), si.to.UpstreamIdle)
	reused := uc != nil
	var n int
	for {
		if uc == nil {
			var err error
			uc, err = u.dial(context.Background(), si.to.Dial, &si.to, &si.clk)
			if err != nil {
				res.err, res.dialFailed = err, true
				return res
			}
		}
		err := cc.sendRequest(uc, u, &res)
		got := false
		if err == nil {
			n, got, err = cc.readRespHead(uc)
		}
		if err == nil {
			break
		}
		uc.c.Close()
		if res.clientErr != nil {
			return res
		}
		// A pooled connection the upstream closed while it idled fails
		// at once with nothing read: dial afresh, once.
		if reused && !got && !res.streamed && !isTimeout(err) {
			uc, reused = nil, false
			continue
		}
		if isTimeout(err) {
			err = fmt.Errorf("%w: %w", ErrUpstreamTimeout, err)
		}
		res.err = err
		return res
	}
	return cc.relay(t, uc, n, ws, keep, res)
}

// sendRequest writes the head and body upstream: one write when the body
// is buffered.
func (cc *clientConn) sendRequest(uc *upConn, u *upstreamImpl, res *result) error {
	bw := uc.bw
	bw.Write(cc.out)
	if cc.needHost {
		bw.WriteString("Host: ")
		bw.WriteString(u.addr)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(cc.body)
	if !cc.reqBody.done {
		res.streamed = true
		cc.send100()
		srcErr, dstErr := cc.reqBody.pump(&cc.rd, cc.s.impl.to.ClientIdle, bw, bw, 0)
		if srcErr != nil {
			res.clientErr = srcErr
			return srcErr
		}
		if dstErr != nil {
			return dstErr
		}
	}
	return bw.Flush()
}

// readRespHead reads a response head; got reports whether any byte came.
func (cc *clientConn) readRespHead(uc *upConn) (n int, got bool, err error) {
	si := &cc.s.impl
	searched := 0
	for {
		a := uc.rd.avail()
		if len(a) > 0 {
			got = true
			if end := findHeadEnd(a, searched); end >= 0 {
				n, err := parseResponseHead(a[:end], &uc.resp)
				if err == errIncomplete {
					err = errStatusLine
				}
				return n, true, err
			}
			searched = len(a)
		}
		// Flush responses to pipelined requests before waiting.
		if cc.bw.Buffered() > 0 {
			if err := cc.bw.Flush(); err != nil {
				return 0, got, err
			}
		}
		if _, err := uc.rd.fill(si.to.Upstream, maxRespHead); err != nil {
			if err == errBufferFull {
				err = errRespHead
			}
			return 0, got, err
		}
	}
}

// relay writes the response whose head is the first n bytes buffered on
// uc to the client, and its body after it.
func (cc *clientConn) relay(t *Target, uc *upConn, n int, ws, keep bool, res result) result {
	si := &cc.s.impl
	r := &cc.req.impl
	rh := &uc.resp
	for rh.status < 200 && rh.status != 101 {
		// Interim responses: 100 is ours to send (see send100); others
		// (103 Early Hints) go to HTTP/1.1 clients.
		if rh.status != 100 && r.minor == 1 {
			cc.writeRespHead(uc.rd.avail()[:n], rh, "", bodyNone, false, true)
			res.wrote = true
		}
		uc.rd.consume(n)
		var err error
		if n, _, err = cc.readRespHead(uc); err != nil {
			uc.c.Close()
			if isTimeout(err) {
				err = fmt.Errorf("%w: %w", ErrUpstreamTimeout, err)
			}
			res.err = err
			return res
		}
	}
	res.status = rh.status
	hb := uc.rd.avail()[:n]
	if rh.status == 101 {
		if !ws || !rh.upgradeWS || !rh.connUpg {
			uc.c.Close()
			res.err = errBadUpgrade
			return res
		}
		cc.writeRespHead(hb, rh, t.SetCookie, bodyNone, false, true)
		uc.rd.consume(n)
		res.wrote = true
		if err := cc.bw.Flush(); err != nil {
			uc.c.Close()
			res.clientErr = errClientGone
			return res
		}
		res.tunnel = uc
		return res
	}
	kind := bodyNone
	noBody := string(r.method()) == "HEAD" || rh.status == 204 || rh.status == 304
	switch {
	case noBody:
	case rh.hasTE:
		if !rh.chunked || rh.cl >= 0 {
			uc.c.Close()
			res.err = errRespFraming
			return res
		}
		kind = bodyChunked
	case rh.cl >= 0:
		kind = bodyCL
	default:
		kind = bodyClose
	}
	outChunked := r.minor == 1 && (kind == bodyChunked || kind == bodyClose)
	keepUp := rh.minor == 1 && !rh.connClose && kind != bodyClose
	res.keep = keep && (kind != bodyClose || outChunked) && !si.shutting.Load()
	cc.writeRespHead(hb, rh, t.SetCookie, kind, outChunked, res.keep)
	uc.rd.consume(n)
	res.wrote = true
	cc.respBody.init(kind, rh.cl, outChunked, 0)
	srcErr, dstErr := cc.respBody.pump(&uc.rd, si.to.Upstream, cc.bw, cc.bw, 0)
	switch {
	case srcErr != nil:
		uc.c.Close()
		res.err, res.keep = srcErr, false
	case dstErr != nil:
		uc.c.Close()
		res.clientErr, res.keep = errClientGone, false
	case keepUp && len(uc.rd.avail()) == 0:
		u := &t.Upstream.impl
		u.put(uc, si.clk.get(), si.to.UpstreamIdle)
	default:
		uc.c.Close()
	}
	return res
}

// writeRespHead writes the response head for the client: hop-by-hop
// fields dropped, framing set by the engine.
func (cc *clientConn) writeRespHead(hb []byte, rh *respHead, setCookie string, kind int, outChunked, keep bool) {
	bw := cc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(hb[9:12])
	bw.WriteByte(' ')
	bw.Write(rh.reason.of(hb))
	bw.WriteString("\r\n")
	keepCL := kind == bodyNone && rh.status != 204 && rh.status >= 200
	for _, f := range rh.fields {
		name := f.name.of(hb)
		switch len(name) {
		case 2:
			if asciiEqualFold(name, "te") {
				continue
			}
		case 7:
			if asciiEqualFold(name, "upgrade") && rh.status != 101 {
				continue
			}
			if asciiEqualFold(name, "trailer") && !outChunked {
				continue
			}
		case 10:
			if asciiEqualFold(name, "connection") || asciiEqualFold(name, "keep-alive") {
				continue
			}
		case 14:
			if asciiEqualFold(name, "content-length") && !keepCL {
				continue
			}
		case 16:
			if asciiEqualFold(name, "proxy-connection") {
				continue
			}
		case 17:
			if asciiEqualFold(name, "transfer-encoding") {
				continue
			}
		}
		if rh.nConnTok > 0 && listedIn(name, hb, rh.connTokens[:rh.nConnTok]) {
			continue
		}
		bw.Write(name)
		bw.WriteString(": ")
		bw.Write(f.value.of(hb))
		bw.WriteString("\r\n")
	}
	if setCookie != "" {
		bw.WriteString("Set-Cookie: ")
		bw.WriteString(setCookie)
		bw.WriteString("\r\n")
	}
	switch {
	case kind == bodyCL:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(cc.tmp[:0], rh.cl, 10))
		bw.WriteString("\r\n")
	case outChunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case rh.status == 101:
		bw.WriteString("Connection: Upgrade\r\n")
	case !keep && rh.status >= 200:
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

func listedIn(name, b []byte, toks []span) bool {
	for _, t := range toks {
		if equalFoldBytes(name, t.of(b)) {
			return true
		}
	}
	return false
}

// buildHead writes the request head for the upstream into cc.out, without
// the final CRLF (a Host may still be added per attempt).
func (cc *clientConn) buildHead(ws bool) {
	r := &cc.req.impl
	b := r.b
	o := cc.out[:0]
	o = append(o, r.reqHead.method.of(b)...)
	o = append(o, ' ')
	o = append(o, r.target.of(b)...)
	o = append(o, " HTTP/1.1\r\n"...)
	cc.xff, cc.fwd = cc.xff[:0], cc.fwd[:0]
	var xfp, xfh []byte
	for _, f := range r.fields {
		name, v := f.name.of(b), f.value.of(b)
		switch len(name) {
		case 2:
			if asciiEqualFold(name, "te") && !asciiEqualFold(v, "trailers") {
				continue
			}
		case 6:
			if asciiEqualFold(name, "expect") {
				continue
			}
		case 7:
			if asciiEqualFold(name, "upgrade") && !ws {
				continue
			}
		case 9:
			if asciiEqualFold(name, "forwarded") {
				if r.trusted {
					cc.fwd = appendList(cc.fwd, v)
				}
				continue
			}
		case 10:
			if asciiEqualFold(name, "connection") || asciiEqualFold(name, "keep-alive") {
				continue
			}
		case 14:
			if asciiEqualFold(name, "content-length") {
				continue
			}
		case 15:
			if asciiEqualFold(name, "x-forwarded-for") {
				if r.trusted {
					cc.xff = appendList(cc.xff, v)
				}
				continue
			}
		case 16:
			if asciiEqualFold(name, "proxy-connection") {
				continue
			}
			if asciiEqualFold(name, "x-forwarded-host") {
				if r.trusted && xfh == nil {
					xfh = v
				}
				continue
			}
		case 17:
			if asciiEqualFold(name, "transfer-encoding") {
				continue
			}
			if asciiEqualFold(name, "x-forwarded-proto") {
				if r.trusted && xfp == nil {
					xfp = v
				}
				continue
			}
		case 19:
			if asciiEqualFold(name, "proxy-authorization") {
				continue
			}
		}
		if r.nConnTok > 0 && listedIn(name, b, r.connTokens[:r.nConnTok]) {
			continue
		}
		o = append(o, name...)
		o = append(o, ": "...)
		o = append(o, v...)
		o = append(o, "\r\n"...)
	}
	scheme := "http"
	if r.isTLS {
		scheme = "https"
	}
	o = append(o, "X-Forwarded-For: "...)
	if len(cc.xff) > 0 {
		o = append(o, cc.xff...)
		o = append(o, ", "...)
	}
	o = append(o, cc.peerText...)
	o = append(o, "\r\nX-Forwarded-Proto: "...)
	if xfp != nil {
		o = append(o, xfp...)
	} else {
		o = append(o, scheme...)
	}
	o = append(o, "\r\n"...)
	var host []byte
	if r.host >= 0 {
		host = r.fields[r.host].value.of(b)
		o = append(o, "X-Forwarded-Host: "...)
		if xfh != nil {
			o = append(o, xfh...)
		} else {
			o = append(o, host...)
		}
		o = append(o, "\r\n"...)
	}
	o = append(o, "Forwarded: "...)
	if len(cc.fwd) > 0 {
		o = append(o, cc.fwd...)
		o = append(o, ", "...)
	}
	o = append(o, "for="...)
	o = append(o, cc.fwdFor...)
	if host != nil {
		o = append(o, ";host=\""...)
		o = append(o, host...)
		o = append(o, '"')
	}
	o = append(o, ";proto="...)
	o = append(o, scheme...)
	o = append(o, "\r\n"...)
	switch {
	case r.chunked:
		o = append(o, "Transfer-Encoding: chunked\r\n"...)
	case r.cl >= 0:
		o = append(o, "Content-Length: "...)
		o = strconv.AppendInt(o, r.cl, 10)
		o = append(o, "\r\n"...)
	}
	if ws {
		o = append(o, "Connection: Upgrade\r\n"...)
	}
	cc.needHost = r.host < 0
	cc.out = o
}

func appendList(dst, v []byte) []byte {
	if len(dst) > 0 {
		dst = append(dst, ", "...)
	}
	return append(dst, v...)
}

var statusText = map[int]string{
	400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
	431: "Request Header Fields Too Large", 501: "Not Implemented", 502: "Bad Gateway",
	503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}

// fail writes a short error response generated by the engine.
func (cc *clientConn) fail(status int, keep bool) {
	text := statusText[status]
	if text == "" {
		text = "Error"
	}
	bw := cc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(cc.tmp[:0], int64(status), 10))
	bw.WriteByte(' ')
	bw.WriteString(text)
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	bw.Write(strconv.AppendInt(cc.tmp[:0], int64(len(text)+5), 10))
	bw.WriteString("\r\n")
	if status == 503 {
		bw.WriteString("Retry-After: 1\r\n")
	}
	if !keep {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(strconv.AppendInt(cc.tmp[:0], int64(status), 10))
	bw.WriteByte(' ')
	bw.WriteString(text)
	bw.WriteByte('\n')
	bw.Flush()
}
