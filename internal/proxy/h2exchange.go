package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"time"
)

// One HTTP/2 stream, served on its own goroutine: the request is turned
// into an HTTP/1.1 head that the engine's strict parser reads (so Route
// sees the same Request whatever the client spoke), rewritten by the same
// buildHead, and exchanged with an upstream from the same keep-alive pool;
// the response head is relayed as HTTP/2 headers and its body streamed.

// getLike are methods whose empty body gets no Content-Length upstream.
func getLike(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "DELETE", "TRACE":
		return true
	}
	return false
}

// serveStream serves one HTTP/2 request.
func (cc *clientConn) serveStream(w http.ResponseWriter, r *http.Request) {
	s := cc.s
	in := &h2body{body: r.Body, empty: r.ContentLength == 0, max: s.lim.MaxBodyBytes, dl: streamDeadline{d: s.to.ClientIdle}}
	if x, ok := w.(interface{ SetReadDeadline(time.Time) error }); ok {
		in.dl.set = x.SetReadDeadline
	}
	out := &h2out{w: w, dl: writeGuard{d: s.to.ClientWrite, slack: s.to.Upstream}}
	if x, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		out.dl.set = x.SetWriteDeadline
	}
	if r.Method == "CONNECT" {
		cc.h2fail(w, errMethod.status, errMethod)
		return
	}
	if max := s.lim.MaxBodyBytes; max > 0 && r.ContentLength > max {
		cc.h2fail(w, errBodyTooLarge.status, errBodyTooLarge)
		return
	}
	// Buffer a small body whole, so the request can be retried.
	cc.body = cc.body[:0]
	whole, err := in.buffer(&cc.body, s.lim.RetryBodyBytes)
	if err != nil {
		cc.h2bodyError(w, err)
		return
	}
	if err := cc.h2head(r, whole); err != nil {
		var he *httpError
		if errors.As(err, &he) {
			cc.h2fail(w, he.status, err)
		}
		return
	}
	cc.req.Attempt, cc.req.Tried, cc.req.LastErr = 0, nil, nil
	cc.bodyComplete = whole
	cc.buildHead(false)
	if !whole && cc.req.chunked {
		cc.body = frameChunk(nil, cc.body)
	}
	req := &cc.req
	for attempt := 0; ; attempt++ {
		req.Attempt = attempt
		req.Tried = cc.tried[:attempt]
		t, err := s.Route(req)
		if err == nil && t.Upstream == nil {
			err = errors.New("proxy: Route returned no upstream")
		}
		if err != nil {
			status := 502
			if errors.Is(err, ErrNoUpstream) && attempt == 0 {
				status = 503
			}
			s.log.Warn("proxy: no route", "client", req.peer, "method", r.Method, "path", r.RequestURI,
				"status", status, "err", err, "attempt", attempt, "first_err", req.LastErr, "proto", "h2")
			cc.access(status, nil, 0, 0)
			cc.h2fail(w, status, nil)
			return
		}
		start := time.Now()
		res := cc.h2exchange(r.Context(), &t, out, in, whole)
		retry := attempt == 0 && res.err != nil && !res.wrote && !res.streamed && res.clientErr == nil &&
			!errors.Is(res.err, ErrUpstreamTimeout) &&
			(res.dialFailed || (cc.retryable() && whole))
		if t.Done != nil {
			t.Done(Outcome{Status: res.status, Err: res.err, Duration: time.Since(start), Retrying: retry})
		}
		if retry {
			s.log.Info("proxy: retrying on another upstream", "upstream", t.Upstream.Name(), "err", res.err)
			cc.tried[0] = t.Upstream
			req.LastErr = res.err
			continue
		}
		switch {
		case res.clientErr != nil:
			if !res.wrote {
				cc.h2bodyError(w, res.clientErr)
			}
			return
		case res.err != nil && !res.wrote:
			status := 502
			if errors.Is(res.err, ErrUpstreamTimeout) {
				status = 504
			}
			s.log.Warn("proxy: upstream failed", "upstream", t.Upstream.Name(), "client", req.peer,
				"method", r.Method, "path", r.RequestURI, "status", status, "err", res.err, "proto", "h2")
			cc.access(status, nil, 0, time.Since(start))
			cc.h2fail(w, status, nil)
			return
		case res.err != nil:
			s.log.Warn("proxy: upstream failed mid-response", "upstream", t.Upstream.Name(), "client", req.peer,
				"method", r.Method, "path", r.RequestURI, "status", res.status, "err", res.err, "proto", "h2")
			cc.access(res.status, t.Upstream, cc.respBody.total, time.Since(start))
			// The client must not take a cut body for a whole one: reset
			// the stream.
			panic(http.ErrAbortHandler)
		}
		cc.access(res.status, t.Upstream, cc.respBody.total, time.Since(start))
		return
	}
}

// h2head writes the HTTP/1.1 form of r's head into cc.hb and parses it
// into cc.req, with the framing the upstream will get: Content-Length for
// a body buffered whole (or of a declared length), chunked otherwise.
func (cc *clientConn) h2head(r *http.Request, whole bool) error {
	b := cc.hb[:0]
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.RequestURI...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	for k, vs := range r.Header {
		if k == "Host" || k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	switch {
	case whole && (len(cc.body) > 0 || !getLike(r.Method)):
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(cc.body)), 10)
		b = append(b, "\r\n"...)
	case !whole && r.ContentLength > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.ContentLength, 10)
		b = append(b, "\r\n"...)
	case !whole:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = append(b, "\r\n"...)
	cc.hb = b
	if len(b) > cc.s.lim.MaxHeaderBytes {
		return errHeadTooLarge
	}
	n, err := parseRequestHead(b, &cc.req.reqHead)
	if err != nil {
		return err
	}
	cc.req.b = b[:n]
	return nil
}

// h2exchange is exchange for an HTTP/2 stream: the request to t's
// upstream, its response relayed to out. A stream the client resets (or
// whose connection dies) ends the exchange at once: the upstream
// connection is closed, and the outcome is the client's doing, never the
// upstream's.
func (cc *clientConn) h2exchange(ctx context.Context, t *Target, out *h2out, in *h2body, whole bool) (res result) {
	s := cc.s
	u := t.Upstream
	var uc *upConn
	if whole {
		uc = u.get(s.clk.get(), s.to.UpstreamIdle)
	}
	reused := uc != nil
	gone := func() bool {
		if ctx.Err() != nil {
			res.err, res.clientErr = nil, errClientGone
			return true
		}
		return false
	}
	for {
		if uc == nil {
			var err error
			uc, err = u.dial(ctx, s.to.Dial, &s.to, &s.clk, cc.proxyHeader(u))
			if err != nil {
				if gone() {
					return res
				}
				res.err, res.dialFailed = err, true
				return res
			}
		}
		// A reset stream closes its upstream connection: closing is
		// final, where a deadline would be re-armed by the next read.
		c := uc.c
		stop := context.AfterFunc(ctx, func() { c.Close() })
		if !whole {
			var reusable bool
			res, reusable = cc.h2streaming(t, uc, out, in, res)
			if !stop() {
				reusable = false
			}
			cc.finish(t, uc, res, reusable)
			if res.err != nil || res.clientErr != nil {
				gone()
			}
			return res
		}
		err := cc.sendHead(uc, u)
		got := false
		var n int
		if err == nil {
			n, got, err = cc.readRespHead(uc)
		}
		if err == nil {
			var reusable bool
			res, reusable = cc.h2relay(t, uc, n, out, res)
			if !stop() {
				reusable = false // closed by the reset
			}
			cc.finish(t, uc, res, reusable)
			if res.err != nil || res.clientErr != nil {
				gone()
			}
			return res
		}
		stop()
		uc.c.Close()
		if gone() {
			return res
		}
		if reused && !got && !isTimeout(err) {
			uc, reused = nil, false
			continue
		}
		res.err = upstreamErr(err)
		return res
	}
}

// h2streaming sends a body too large to buffer from a second goroutine
// while this one relays the response, as exchangeStreaming does; the
// caller pools uc when reusable.
func (cc *clientConn) h2streaming(t *Target, uc *upConn, out *h2out, in *h2body, res result) (result, bool) {
	res.streamed = true
	if err := cc.sendHead(uc, t.Upstream); err != nil {
		uc.c.Close()
		res.err = err
		return res, false
	}
	chunked := cc.req.chunked
	done := make(chan pumped, 1)
	go func() {
		src, dst := in.copyTo(uc, chunked)
		if src != nil {
			uc.c.Close() // a broken request gets no answer to wait for
		}
		done <- pumped{src: src, dst: dst}
	}()
	stop := func() pumped {
		select {
		case p := <-done:
			return p
		default:
		}
		in.body.Close() // wakes the pump's read
		p := <-done
		if p.src != nil && !errors.Is(p.src, errBodyTooLarge) {
			p.src = nil // our own doing
		}
		return p
	}
	n, _, err := cc.readRespHead(uc)
	if err != nil {
		uc.c.Close()
		if p := stop(); p.src != nil {
			res.clientErr = p.src
			return res, false
		}
		res.err = upstreamErr(err)
		return res, false
	}
	res, reusable := cc.h2relay(t, uc, n, out, res)
	var p pumped
	if reusable {
		p = <-done
	} else {
		uc.c.Close()
		p = stop()
	}
	if p.src != nil || p.dst != nil {
		reusable = false
	}
	return res, reusable
}

// h2relay relays the response whose head is the first n bytes buffered on
// uc as HTTP/2 headers and DATA.
func (cc *clientConn) h2relay(t *Target, uc *upConn, n int, out *h2out, res result) (result, bool) {
	s := cc.s
	rh := &uc.resp
	for rh.status < 200 {
		// Interim responses (100, 103) are not relayed over HTTP/2, and
		// a 101 was not asked for.
		if rh.status == 101 {
			uc.c.Close()
			res.err = errBadUpgrade
			return res, false
		}
		uc.rd.consume(n)
		var err error
		if n, _, err = cc.readRespHead(uc); err != nil {
			uc.c.Close()
			res.err = upstreamErr(err)
			return res, false
		}
	}
	res.status = rh.status
	hb := uc.rd.avail()[:n]
	kind := bodyNone
	noBody := string(cc.req.Method()) == "HEAD" || rh.status == 204 || rh.status == 304
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
	h := out.w.Header()
	for _, f := range rh.fields {
		name := f.name.of(hb)
		if hopByHop(name) || (rh.nConnTok > 0 && listedIn(name, hb, rh.connTokens[:rh.nConnTok])) {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(string(name))
		h[k] = append(h[k], string(f.value.of(hb)))
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // relay, never sniff
	}
	if t.SetCookie != "" && validHeaderValue(t.SetCookie) {
		h["Set-Cookie"] = append(h["Set-Cookie"], t.SetCookie)
	}
	if rh.cl >= 0 && (kind == bodyCL || string(cc.req.Method()) == "HEAD") {
		h["Content-Length"] = []string{strconv.FormatInt(rh.cl, 10)}
	}
	out.w.WriteHeader(rh.status)
	uc.rd.consume(n)
	res.wrote = true
	keepUp := rh.minor == 1 && !rh.connClose && kind != bodyClose
	cc.respBody.init(kind, rh.cl, false, 0)
	cc.bw.Reset(out)
	srcErr, dstErr := cc.respBody.pump(&uc.rd, s.to.Upstream, cc.bw, cc.bw, 0)
	if srcErr == nil && dstErr == nil {
		// The last bytes go unflushed: x/net sends them with the
		// headers and END_STREAM when the handler returns, in one write.
		out.last = true
		dstErr = cc.bw.Flush()
		out.last = false
	}
	switch {
	case srcErr != nil:
		uc.c.Close()
		res.err = upstreamErr(srcErr)
		return res, false
	case dstErr != nil:
		uc.c.Close()
		res.clientErr = errClientGone
		return res, false
	}
	return res, keepUp && len(uc.rd.avail()) == 0
}

// hopByHop reports the response fields HTTP/2 must not carry, and the
// framing the engine sets itself.
func hopByHop(name []byte) bool {
	for _, h := range [...]string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "content-length"} {
		if equalFold(name, h) {
			return true
		}
	}
	return false
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// h2fail answers a stream with a short error generated by the engine.
func (cc *clientConn) h2fail(w http.ResponseWriter, status int, why error) {
	if why != nil {
		cc.s.log.Info("proxy: bad request", "client", cc.req.peer, "status", status, "err", why, "proto", "h2")
	}
	text := statusText[status]
	if text == "" {
		text = "Error"
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	if status == 503 {
		h["Retry-After"] = []string{"1"}
	}
	w.WriteHeader(status)
	io.WriteString(w, strconv.Itoa(status)+" "+text+"\n")
}

// h2bodyError answers a request whose body could not be read: too large,
// too slow; a client that reset the stream gets nothing.
func (cc *clientConn) h2bodyError(w http.ResponseWriter, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		cc.h2fail(w, he.status, err)
	case isTimeout(err):
		cc.h2fail(w, 408, err)
	}
}

// frameChunk appends p as one chunk of chunked framing (nothing if empty).
func frameChunk(dst, p []byte) []byte {
	if len(p) == 0 {
		return dst
	}
	dst = strconv.AppendInt(dst, int64(len(p)), 16)
	dst = append(dst, "\r\n"...)
	dst = append(dst, p...)
	return append(dst, "\r\n"...)
}

// h2body reads a stream's request body with a limit and a deadline per
// wait (ClientIdle, as for HTTP/1.1 bodies).
type h2body struct {
	body  io.ReadCloser
	empty bool  // declared empty: x/net refuses DATA beyond Content-Length
	max   int64 // 0: no limit
	total int64
	dl    streamDeadline
}

func (b *h2body) Read(p []byte) (int, error) {
	if b.body == http.NoBody || b.empty {
		return 0, io.EOF
	}
	b.dl.begin()
	n, err := b.body.Read(p)
	b.dl.end()
	b.total += int64(n)
	if b.max > 0 && b.total > b.max {
		return n, errBodyTooLarge
	}
	return n, err
}

// buffer reads the body into *dst while it fits in limit bytes; whole
// reports that it all did.
func (b *h2body) buffer(dst *[]byte, limit int) (whole bool, err error) {
	buf := *dst
	for len(buf) <= limit {
		if cap(buf) == len(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := b.Read(buf[len(buf):min(cap(buf), limit+1)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			*dst = buf
			return len(buf) <= limit, nil
		}
		if err != nil {
			*dst = buf
			return false, err
		}
	}
	*dst = buf
	return false, nil
}

// copyTo streams the rest of the body to uc, chunked or as is.
func (b *h2body) copyTo(uc *upConn, chunked bool) (srcErr, dstErr error) {
	var buf [16 << 10]byte
	var frame []byte
	for {
		n, err := b.Read(buf[:])
		if n > 0 {
			p := buf[:n]
			if chunked {
				frame = frameChunk(frame[:0], p)
				p = frame
			}
			if _, werr := uc.bw.Write(p); werr != nil {
				return nil, werr
			}
			if werr := uc.bw.Flush(); werr != nil {
				return nil, werr
			}
		}
		if err == io.EOF {
			if chunked {
				uc.bw.Write(lastChunkEnd)
			}
			return nil, uc.bw.Flush()
		}
		if err != nil {
			return err, nil
		}
	}
}

// h2out writes to a stream, flushing each write (the engine's bufio
// already batched it), under a writeGuard: a client that stops granting
// flow-control window gets its stream reset.
type h2out struct {
	w    http.ResponseWriter
	dl   writeGuard
	last bool // the response's last bytes: buffered, not flushed
}

func (o *h2out) Write(p []byte) (int, error) {
	if o.last {
		return o.w.Write(p)
	}
	o.dl.arm()
	n, err := o.w.Write(p)
	if err != nil {
		return n, err
	}
	if f, ok := o.w.(interface{ FlushError() error }); ok {
		return n, f.FlushError()
	}
	return n, nil
}
