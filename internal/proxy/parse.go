package proxy

import (
	"bytes"
	"errors"
)

// The parsers work over byte slices that point into a connection's reused
// read buffer and record offsets, never copies, so a request costs no
// allocation. They are strict on purpose: anything a lenient parser
// elsewhere in the chain could read differently (obs-fold, bare LF, space
// before a colon, ambiguous framing) is refused, which closes the request
// smuggling doors that lenient proxies leave open.

// span is a [s, e) range of offsets into a head buffer.
type span struct{ s, e int32 }

func (sp span) of(b []byte) []byte { return b[sp.s:sp.e] }

// field is one header line: name and value (value trimmed of OWS).
type field struct{ name, value span }

// httpError carries the status a parse failure answers with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

var (
	errIncomplete = errors.New("proxy: incomplete head")

	errBareLF       = &httpError{400, "bare LF or CR in head"}
	errRequestLine  = &httpError{400, "malformed request line"}
	errVersion      = &httpError{505, "HTTP version not supported"}
	errHeaderName   = &httpError{400, "invalid header name"}
	errHeaderValue  = &httpError{400, "invalid header value"}
	errObsFold      = &httpError{400, "obsolete line folding"}
	errTooMany      = &httpError{431, "too many header fields"}
	errCLTE         = &httpError{400, "both Content-Length and Transfer-Encoding"}
	errCL           = &httpError{400, "invalid Content-Length"}
	errTE           = &httpError{501, "unsupported Transfer-Encoding"}
	errTEChunked    = &httpError{400, "invalid Transfer-Encoding"}
	errHost         = &httpError{400, "missing, duplicate or invalid Host"}
	errTE10         = &httpError{400, "Transfer-Encoding in an HTTP/1.0 request"}
	errConnTokens   = &httpError{400, "too many Connection tokens"}
	errStatusLine   = &httpError{502, "malformed status line"}
	errMethod       = &httpError{405, "method not allowed"}
	errHeadTooLarge = &httpError{431, "request header fields too large"}
)

// maxFields bounds the header lines of one head; more answer 431.
const maxFields = 200

// maxConnTokens bounds the names a Connection header may list.
const maxConnTokens = 16

// head is the parse of the header block shared by requests and responses.
type head struct {
	fields     []field
	cl         int64 // Content-Length, -1 when absent
	chunked    bool  // Transfer-Encoding: chunked
	hasTE      bool
	connClose  bool
	connKeep   bool
	connUpg    bool
	upgradeWS  bool
	expect100  bool
	host       int // index into fields, -1 when absent
	connTokens [maxConnTokens]span
	nConnTok   int
}

func (h *head) reset() {
	h.fields = h.fields[:0]
	h.cl = -1
	h.chunked, h.hasTE = false, false
	h.connClose, h.connKeep, h.connUpg, h.upgradeWS, h.expect100 = false, false, false, false, false
	h.host = -1
	h.nConnTok = 0
}

// tchar reports the token characters of RFC 9110 section 5.6.2.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-32] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()

// vchar reports bytes allowed in a field value: VCHAR, SP, HTAB, obs-text.
var vchar = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != 0x7f
	}
	t['\t'] = true
	return
}()

// hostChar reports bytes allowed in a Host value: reg-name, IP literal, port.
var hostChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-32] = true
	}
	for _, c := range "-._~!$&'()*+,;=:%[]" {
		t[c] = true
	}
	return
}()

// findHeadEnd looks for the blank line ending a head in b, starting the
// search near from (the length already searched). It returns the length of
// the head including the blank line, or -1. A bare "\n\n" also counts as an
// end so that the parser can refuse it at once instead of waiting.
func findHeadEnd(b []byte, from int) int {
	if from > 3 {
		from -= 3
	} else {
		from = 0
	}
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return -1
		}
		i += from
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
		from = i + 1
	}
}

// nextLine returns the line starting at p (without its CRLF) and the
// offset after the CRLF. A bare LF, a CR not followed by LF, or a missing
// end is an error.
func nextLine(b []byte, p int) (line span, next int, err error) {
	i := bytes.IndexByte(b[p:], '\n')
	if i < 0 {
		return span{}, 0, errIncomplete
	}
	e := p + i
	if e == p || b[e-1] != '\r' {
		return span{}, 0, errBareLF
	}
	return span{int32(p), int32(e - 1)}, e + 1, nil
}

// parseFields parses header lines from b[p:] up to and including the blank
// line, filling h. It returns the offset after the blank line.
func parseFields(b []byte, p int, h *head) (int, error) {
	for {
		ln, next, err := nextLine(b, p)
		if err != nil {
			return 0, err
		}
		if ln.s == ln.e {
			return next, nil
		}
		line := ln.of(b)
		if line[0] == ' ' || line[0] == '\t' {
			return 0, errObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, errHeaderName
		}
		for _, c := range line[:colon] {
			if !tchar[c] {
				return 0, errHeaderName
			}
		}
		vs, ve := colon+1, len(line)
		for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
			vs++
		}
		for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
			ve--
		}
		for _, c := range line[vs:ve] {
			if !vchar[c] {
				return 0, errHeaderValue
			}
		}
		if len(h.fields) >= maxFields {
			return 0, errTooMany
		}
		f := field{
			name:  span{ln.s, ln.s + int32(colon)},
			value: span{ln.s + int32(vs), ln.s + int32(ve)},
		}
		h.fields = append(h.fields, f)
		if err := h.note(b, f, len(h.fields)-1); err != nil {
			return 0, err
		}
		p = next
	}
}

// note records what a field means for framing and connection handling.
func (h *head) note(b []byte, f field, idx int) error {
	name, v := f.name.of(b), f.value.of(b)
	switch len(name) {
	case 4:
		if equalFold(name, "host") {
			if h.host >= 0 {
				return errHost
			}
			for _, c := range v {
				if !hostChar[c] {
					return errHost
				}
			}
			h.host = idx
		}
	case 6:
		if equalFold(name, "expect") {
			if equalFold(v, "100-continue") {
				h.expect100 = true
			}
		}
	case 7:
		if equalFold(name, "upgrade") {
			forTokens(v, func(t []byte) {
				if equalFold(t, "websocket") {
					h.upgradeWS = true
				}
			})
		}
	case 10:
		if equalFold(name, "connection") {
			var err error
			forTokensSpan(v, int(f.value.s), func(s span) {
				t := s.of(b)
				switch {
				case equalFold(t, "close"):
					h.connClose = true
				case equalFold(t, "keep-alive"):
					h.connKeep = true
				case equalFold(t, "upgrade"):
					h.connUpg = true
				default:
					if h.nConnTok == maxConnTokens {
						err = errConnTokens
						return
					}
					h.connTokens[h.nConnTok] = s
					h.nConnTok++
				}
			})
			return err
		}
	case 14:
		if equalFold(name, "content-length") {
			n := int64(-1)
			ok := true
			forTokensAll(v, func(t []byte) {
				x, good := parseDecimal(t)
				if !good || (n >= 0 && x != n) {
					ok = false
				}
				n = x
			})
			if !ok || n < 0 || (h.cl >= 0 && h.cl != n) {
				return errCL
			}
			h.cl = n
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			if h.hasTE {
				return errTEChunked // "chunked" twice, or chunked then more
			}
			h.hasTE = true
			if !equalFold(v, "chunked") {
				if bytes.IndexByte(v, ',') >= 0 || len(v) == 0 {
					return errTEChunked
				}
				return errTE
			}
			h.chunked = true
		}
	}
	return nil
}

// parseDecimal parses a non-negative decimal of at most 18 digits.
func parseDecimal(t []byte) (int64, bool) {
	if len(t) == 0 || len(t) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range t {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// forTokens calls fn for each non-empty comma-separated, OWS-trimmed token.
func forTokens(v []byte, fn func([]byte)) {
	forTokensSpan(v, 0, func(s span) { fn(v[s.s:s.e]) })
}

// forTokensAll is forTokens but also reports empty list elements (as empty
// slices), for values where "1,,1" must not pass.
func forTokensAll(v []byte, fn func([]byte)) {
	for {
		i := bytes.IndexByte(v, ',')
		t := v
		if i >= 0 {
			t = v[:i]
		}
		fn(bytes.Trim(t, " \t"))
		if i < 0 {
			return
		}
		v = v[i+1:]
	}
}

// forTokensSpan is forTokens reporting spans offset by base.
func forTokensSpan(v []byte, base int, fn func(span)) {
	p := 0
	for p < len(v) {
		for p < len(v) && (v[p] == ',' || v[p] == ' ' || v[p] == '\t') {
			p++
		}
		s := p
		for p < len(v) && v[p] != ',' {
			p++
		}
		e := p
		for e > s && (v[e-1] == ' ' || v[e-1] == '\t') {
			e--
		}
		if e > s {
			fn(span{int32(base + s), int32(base + e)})
		}
	}
}

// equalFold reports whether a and b are the same ASCII text but for case:
// the one case-insensitive comparison of header names and tokens, for a
// string constant or another slice alike, without allocating.
func equalFold[T string | []byte](a []byte, b T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		// Bytes that differ match only as the two cases of a letter:
		// equal with bit 0x20 set, and a letter then.
		if l := x | 0x20; l != y|0x20 || l-'a' > 'z'-'a' {
			return false
		}
	}
	return true
}

// reqHead is a parsed request head.
type reqHead struct {
	head
	method, target span
	minor          byte // HTTP/1.minor
}

// parseRequestHead parses one complete request head at the start of b
// (b must hold the whole head, ending with the blank line; see
// findHeadEnd). It returns the head's length. Leading blank lines are
// skipped, as RFC 9112 section 2.2 asks.
func parseRequestHead(b []byte, r *reqHead) (int, error) {
	r.reset()
	p := 0
	for p+1 < len(b) && b[p] == '\r' && b[p+1] == '\n' {
		p += 2
	}
	ln, next, err := nextLine(b, p)
	if err != nil {
		return 0, err
	}
	line := ln.of(b)
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return 0, errRequestLine
	}
	for _, c := range line[:sp1] {
		if !tchar[c] {
			return 0, errRequestLine
		}
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return 0, errRequestLine
	}
	for _, c := range rest[:sp2] {
		if c <= 0x20 || c >= 0x7f {
			return 0, errRequestLine
		}
	}
	ver := rest[sp2+1:]
	if len(ver) != 8 || string(ver[:5]) != "HTTP/" || ver[6] != '.' || ver[5] < '0' || ver[5] > '9' || ver[7] < '0' || ver[7] > '9' {
		return 0, errRequestLine
	}
	if ver[5] != '1' || ver[7] > '1' {
		return 0, errVersion
	}
	r.minor = ver[7] - '0'
	r.method = span{ln.s, ln.s + int32(sp1)}
	r.target = span{ln.s + int32(sp1) + 1, ln.s + int32(sp1+1+sp2)}
	n, err := parseFields(b, next, &r.head)
	if err != nil {
		return 0, err
	}
	if r.hasTE && r.cl >= 0 {
		return 0, errCLTE
	}
	if r.hasTE && r.minor == 0 {
		return 0, errTE10
	}
	if r.host < 0 && r.minor == 1 {
		return 0, errHost
	}
	if string(r.method.of(b)) == "CONNECT" {
		return 0, errMethod
	}
	if err := r.originForm(b); err != nil {
		return 0, err
	}
	return n, nil
}

var errTarget = &httpError{400, "invalid request target"}

// originForm checks the request target and narrows an absolute-form
// target ("http://host/path") to its origin form, so that the upstream and
// the router see one request: the authority must equal Host, or the two
// could be routed and served by different names.
func (r *reqHead) originForm(b []byte) error {
	t := r.target.of(b)
	switch {
	case t[0] == '/':
		return nil
	case len(t) == 1 && t[0] == '*':
		if string(r.method.of(b)) != "OPTIONS" {
			return errTarget
		}
		return nil
	}
	var rest []byte
	switch {
	case len(t) > 7 && equalFold(t[:7], "http://"):
		rest = t[7:]
	case len(t) > 8 && equalFold(t[:8], "https://"):
		rest = t[8:]
	default:
		return errTarget
	}
	end := bytes.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	auth := rest[:end]
	if r.host < 0 || !equalFold(auth, r.fields[r.host].value.of(b)) || bytes.IndexByte(auth, '@') >= 0 {
		return errHost
	}
	start := r.target.e - int32(len(rest)-end)
	if start == r.target.e || b[start] != '/' {
		// "http://a" or "http://a?q": the path is empty; only "/" is
		// representable without copying, so refuse the odd query form.
		if start != r.target.e {
			return errTarget
		}
		// Point at a "/" we know is there: the one in "http://".
		r.target = span{r.target.s + 5, r.target.s + 6}
		return nil
	}
	r.target.s = start
	return nil
}

// respHead is a parsed response head.
type respHead struct {
	head
	status int
	minor  byte
	reason span
}

// parseResponseHead parses one complete response head at the start of b.
func parseResponseHead(b []byte, r *respHead) (int, error) {
	r.reset()
	ln, next, err := nextLine(b, 0)
	if err != nil {
		if err == errIncomplete {
			return 0, err
		}
		return 0, errStatusLine
	}
	line := ln.of(b)
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[5] != '1' || line[6] != '.' ||
		(line[7] != '0' && line[7] != '1') || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, errStatusLine
	}
	st := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, errStatusLine
		}
		st = st*10 + int(c-'0')
	}
	if st < 100 || st > 599 {
		return 0, errStatusLine
	}
	rs := int32(12)
	if len(line) > 12 {
		rs = 13
		for _, c := range line[13:] {
			if !vchar[c] {
				return 0, errStatusLine
			}
		}
	}
	r.status, r.minor = st, line[7]-'0'
	r.reason = span{ln.s + rs, ln.e}
	n, err := parseFields(b, next, &r.head)
	if err != nil {
		if err == errIncomplete {
			return 0, err
		}
		return 0, &httpError{502, "upstream: " + err.Error()}
	}
	return n, nil
}
