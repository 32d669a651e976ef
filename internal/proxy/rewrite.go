package proxy

import (
	"strconv"
	"strings"
)

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
			if equalFold(name, "te") {
				continue
			}
		case 7:
			if equalFold(name, "upgrade") && rh.status != 101 {
				continue
			}
			if equalFold(name, "trailer") && !outChunked {
				continue
			}
		case 10:
			if equalFold(name, "connection") || equalFold(name, "keep-alive") {
				continue
			}
		case 14:
			if equalFold(name, "content-length") && !keepCL {
				continue
			}
		case 16:
			if equalFold(name, "proxy-connection") {
				continue
			}
		case 17:
			if equalFold(name, "transfer-encoding") {
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
	if setCookie != "" && !strings.ContainsAny(setCookie, "\r\n") {
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
		if equalFold(name, t.of(b)) {
			return true
		}
	}
	return false
}

// buildHead writes the request head for the upstream into cc.out, without
// the final CRLF (a Host may still be added per attempt).
func (cc *clientConn) buildHead(ws bool) {
	r := &cc.req
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
			if equalFold(name, "te") && !equalFold(v, "trailers") {
				continue
			}
		case 6:
			if equalFold(name, "expect") {
				continue
			}
		case 7:
			if equalFold(name, "upgrade") && !ws {
				continue
			}
		case 9:
			if equalFold(name, "forwarded") {
				if r.trusted {
					cc.fwd = appendList(cc.fwd, v)
				}
				continue
			}
		case 10:
			if equalFold(name, "connection") || equalFold(name, "keep-alive") {
				continue
			}
		case 14:
			if equalFold(name, "content-length") {
				continue
			}
		case 15:
			if equalFold(name, "x-forwarded-for") {
				if r.trusted {
					cc.xff = appendList(cc.xff, v)
				}
				continue
			}
		case 16:
			if equalFold(name, "proxy-connection") {
				continue
			}
			if equalFold(name, "x-forwarded-host") {
				if r.trusted && xfh == nil {
					xfh = v
				}
				continue
			}
		case 17:
			if equalFold(name, "transfer-encoding") {
				continue
			}
			if equalFold(name, "x-forwarded-proto") {
				if r.trusted && xfp == nil {
					xfp = v
				}
				continue
			}
		case 19:
			if equalFold(name, "proxy-authorization") {
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
