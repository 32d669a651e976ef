package proxy

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

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
	s := cc.s
	u := t.Upstream
	uc := u.get(s.clk.get(), s.to.UpstreamIdle)
	if uc != nil && !cc.reqBody.done && !uc.alive() {
		// A body that streams cannot be sent twice, so it takes a pooled
		// connection only when a peek finds it open (Node closes idle
		// ones after 5 s); otherwise a fresh one.
		uc.c.Close()
		uc = nil
	}
	reused := uc != nil
	for {
		if uc == nil {
			var err error
			uc, err = u.dial(context.Background(), s.to.Dial, &s.to, &s.clk, cc.proxyHeader(u))
			if err != nil {
				res.err, res.dialFailed = err, true
				return res
			}
		}
		if !cc.reqBody.done {
			return cc.exchangeStreaming(t, uc, ws, keep, res)
		}
		err := cc.sendHead(uc, u)
		got := false
		var n int
		if err == nil {
			n, got, err = cc.readRespHead(uc)
		}
		if err == nil {
			res, reusable := cc.relay(t, uc, n, ws, keep, res)
			cc.finish(t, uc, res, reusable)
			return res
		}
		uc.c.Close()
		// A pooled connection the upstream closed while it idled fails
		// at once with nothing read: dial afresh, once. The request is
		// whole in memory, so it can be sent again.
		if reused && !got && !isTimeout(err) {
			uc, reused = nil, false
			continue
		}
		res.err = upstreamErr(err)
		return res
	}
}

// finish pools or closes the upstream connection after an exchange.
func (cc *clientConn) finish(t *Target, uc *upConn, res result, reusable bool) {
	switch {
	case res.tunnel != nil:
	case reusable:
		s := cc.s
		t.Upstream.put(uc, s.clk.get(), s.to.UpstreamIdle)
	default:
		uc.c.Close()
	}
}

func upstreamErr(err error) error {
	if isTimeout(err) {
		return fmt.Errorf("%w: %w", ErrUpstreamTimeout, err)
	}
	return err
}

// pumped is how streaming a request body ended.
// stopped says the pump saw stop's deadline (or may have): a timeout then
// is not the client's.
type pumped struct {
	src, dst error
	stopped  bool
}

// exchangeStreaming is exchange for a body too large to buffer: the body
// streams upstream from a second goroutine while this one waits for and
// relays the response, so an upstream that answers while it still reads
// (or instead of reading) is served as it would be directly.
func (cc *clientConn) exchangeStreaming(t *Target, uc *upConn, ws, keep bool, res result) result {
	s := cc.s
	res.streamed = true
	cc.send100()
	if err := cc.sendHead(uc, t.Upstream); err != nil {
		uc.c.Close()
		res.err = err
		return res
	}
	done := make(chan pumped, 1)
	var stopping atomic.Bool
	go func() {
		var src, dst error
		b := &cc.reqBody
		if b.kind == bodyCL && cc.idle.rc != nil && uc.rc != nil && b.left-int64(len(cc.rd.avail())) >= spliceMin {
			src, dst = s.spliceBody(b, &cc.rd, cc.idle.rc, s.to.ClientIdle, uc.bw, &uc.cw, uc.rc)
		} else {
			src, dst = b.pump(&cc.rd, s.to.ClientIdle, uc.bw, uc.bw, 0)
		}
		if src == nil && dst == nil {
			dst = uc.bw.Flush()
		}
		stopped := stopping.Load()
		if src != nil {
			uc.c.Close() // a broken request gets no answer to wait for
		}
		done <- pumped{src, dst, stopped}
	}()
	// stop ends the pump early when the exchange is over without it.
	stop := func() pumped {
		select {
		case p := <-done:
			return p
		default:
		}
		stopping.Store(true)
		cc.c.SetReadDeadline(time.Now())
		p := <-done
		cc.rd.dl = 0 // re-arm on the next read
		if p.src != nil && isTimeout(p.src) && p.stopped {
			// Our own doing. A timeout the pump saw before stop began
			// is the client's (ClientIdle): it gets its 408.
			p.src = nil
		}
		return p
	}
	n, _, err := cc.readRespHead(uc)
	if err != nil {
		uc.c.Close()
		if p := stop(); p.src != nil {
			res.clientErr = p.src
			return res
		}
		res.err = upstreamErr(err)
		return res
	}
	res, reusable := cc.relay(t, uc, n, ws, keep, res)
	var p pumped
	if reusable {
		p = <-done
	} else {
		uc.c.Close()
		p = stop()
	}
	if p.src != nil || p.dst != nil || !cc.reqBody.done {
		res.keep, reusable = false, false
	}
	cc.finish(t, uc, res, reusable)
	return res
}

// sendHead writes the head and the buffered body upstream, in one write
// when the body is whole.
func (cc *clientConn) sendHead(uc *upConn, u *Upstream) error {
	bw := uc.bw
	bw.Write(cc.out)
	if cc.needHost {
		bw.WriteString("Host: ")
		bw.WriteString(u.addr)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(cc.body)
	return bw.Flush()
}

// readRespHead reads a response head; got reports whether any byte came.
func (cc *clientConn) readRespHead(uc *upConn) (n int, got bool, err error) {
	s := cc.s
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
		if _, err := uc.rd.fill(s.to.Upstream, maxRespHead); err != nil {
			if err == errBufferFull {
				err = errRespHead
			}
			return 0, got, err
		}
	}
}

// relay writes the response whose head is the first n bytes buffered on
// uc to the client, and its body after it.
func (cc *clientConn) relay(t *Target, uc *upConn, n int, ws, keep bool, res result) (result, bool) {
	s := cc.s
	r := &cc.req
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
			return res, false
		}
	}
	res.status = rh.status
	hb := uc.rd.avail()[:n]
	if rh.status == 101 {
		if !ws || !rh.upgradeWS || !rh.connUpg {
			uc.c.Close()
			res.err = errBadUpgrade
			return res, false
		}
		cc.writeRespHead(hb, rh, t.SetCookie, bodyNone, false, true)
		uc.rd.consume(n)
		res.wrote = true
		if err := cc.bw.Flush(); err != nil {
			uc.c.Close()
			res.clientErr = errClientGone
			return res, false
		}
		res.tunnel = uc
		return res, false
	}
	kind := bodyNone
	noBody := string(r.Method()) == "HEAD" || rh.status == 204 || rh.status == 304
	switch {
	case noBody:
	case rh.hasTE:
		if !rh.chunked || rh.cl >= 0 {
			uc.c.Close()
			res.err = errRespFraming
			return res, false
		}
		kind = bodyChunked
	case rh.cl >= 0:
		kind = bodyCL
	default:
		kind = bodyClose
	}
	outChunked := r.minor == 1 && (kind == bodyChunked || kind == bodyClose)
	keepUp := rh.minor == 1 && !rh.connClose && kind != bodyClose
	res.keep = keep && (kind != bodyClose || outChunked) && !s.shutting.Load()
	cc.writeRespHead(hb, rh, t.SetCookie, kind, outChunked, res.keep)
	uc.rd.consume(n)
	res.wrote = true
	cc.respBody.init(kind, rh.cl, outChunked, 0)
	var srcErr, dstErr error
	if kind == bodyCL && !outChunked && uc.rc != nil && cc.idle.rc != nil &&
		rh.cl-int64(len(uc.rd.avail())) >= spliceMin {
		srcErr, dstErr = s.spliceBody(&cc.respBody, &uc.rd, uc.rc, s.to.Upstream, cc.bw, &cc.cw, cc.idle.rc)
	} else {
		srcErr, dstErr = cc.respBody.pump(&uc.rd, s.to.Upstream, cc.bw, cc.bw, 0)
	}
	switch {
	case srcErr != nil:
		uc.c.Close()
		res.err, res.keep = srcErr, false
		return res, false
	case dstErr != nil:
		uc.c.Close()
		res.clientErr, res.keep = errClientGone, false
		return res, false
	}
	return res, keepUp && len(uc.rd.avail()) == 0
}
