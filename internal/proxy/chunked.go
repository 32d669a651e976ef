package proxy

import "bytes"

// chunkDecoder is a streaming decoder of the chunked transfer coding (RFC
// 9112 section 7.1). It never copies: each step reports how many input
// bytes it consumed and what they were, so the relay can forward chunk data
// straight from the read buffer and re-frame it itself. Re-framing (rather
// than passing the sender's chunk lines through) means a peer downstream
// never sees chunk extensions or odd sizes that it might parse differently.
type chunkDecoder struct {
	state    int
	left     int64 // bytes left in the current chunk
	trailers int   // trailer bytes seen, bounded by maxTrailer
}

const (
	csSize    = iota // expecting a chunk-size line
	csData           // inside chunk data
	csDataEnd        // expecting the CRLF after chunk data
	csTrailer        // expecting a trailer line or the final blank line
	csDone
)

// Kinds of step a chunkDecoder reports.
const (
	ckMore    = iota // need more input; nothing consumed
	ckFrame          // consumed framing bytes (size line, CRLF)
	ckData           // consumed chunk data: in[:n]
	ckTrailer        // consumed one trailer field line: in[:n] incl. CRLF
	ckEnd            // consumed the final blank line: the body is complete
)

// maxChunkLine bounds a chunk-size line with its extensions; maxTrailer the
// trailer section.
const (
	maxChunkLine = 4096
	maxTrailer   = 64 << 10
)

var (
	errChunkSize  = &httpError{400, "invalid chunk size line"}
	errChunkCRLF  = &httpError{400, "missing CRLF after chunk data"}
	errChunkTrail = &httpError{400, "invalid trailer section"}
)

func (d *chunkDecoder) reset() { *d = chunkDecoder{} }

func (d *chunkDecoder) done() bool { return d.state == csDone }

// step consumes a prefix of in. It returns the kind of step and the number
// of bytes consumed; ckMore consumes nothing and asks for more input (the
// caller must offer more than it did, or fail if its buffer is full).
func (d *chunkDecoder) step(in []byte) (kind, n int, err error) {
	switch d.state {
	case csData:
		if len(in) == 0 {
			return ckMore, 0, nil
		}
		n := int64(len(in))
		if n > d.left {
			n = d.left
		}
		d.left -= n
		if d.left == 0 {
			d.state = csDataEnd
		}
		return ckData, int(n), nil
	case csDataEnd:
		if len(in) < 2 {
			if len(in) == 1 && in[0] != '\r' {
				return 0, 0, errChunkCRLF
			}
			return ckMore, 0, nil
		}
		if in[0] != '\r' || in[1] != '\n' {
			return 0, 0, errChunkCRLF
		}
		d.state = csSize
		return ckFrame, 2, nil
	case csSize:
		i := bytes.IndexByte(in, '\n')
		if i < 0 {
			if len(in) >= maxChunkLine {
				return 0, 0, errChunkSize
			}
			return ckMore, 0, nil
		}
		if i == 0 || in[i-1] != '\r' || i > maxChunkLine {
			return 0, 0, errChunkSize
		}
		size, ok := parseChunkLine(in[:i-1])
		if !ok {
			return 0, 0, errChunkSize
		}
		if size == 0 {
			d.state = csTrailer
		} else {
			d.left, d.state = size, csData
		}
		return ckFrame, i + 1, nil
	case csTrailer:
		i := bytes.IndexByte(in, '\n')
		if i < 0 {
			if len(in) >= maxChunkLine {
				return 0, 0, errChunkTrail
			}
			return ckMore, 0, nil
		}
		if i == 0 || in[i-1] != '\r' {
			return 0, 0, errChunkTrail
		}
		d.trailers += i + 1
		if d.trailers > maxTrailer {
			return 0, 0, errChunkTrail
		}
		if i == 1 {
			d.state = csDone
			return ckEnd, 2, nil
		}
		if !validFieldLine(in[:i-1]) {
			return 0, 0, errChunkTrail
		}
		return ckTrailer, i + 1, nil
	}
	return 0, 0, errChunkSize
}

// parseChunkLine parses chunk-size [ BWS ; ext ]* from a line without its
// CRLF. Extensions are checked for forbidden bytes and then dropped.
func parseChunkLine(l []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(l); i++ {
		c := l[i]
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 { // 15 hex digits: under 2^60, no overflow
			return 0, false
		}
		n = n<<4 | int64(v)
	}
ext:
	if i == 0 {
		return 0, false
	}
	rest := l[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return n, len(l) == i // no trailing whitespace without an extension
	}
	if rest[0] != ';' {
		return 0, false
	}
	for _, c := range rest {
		if !vchar[c] {
			return 0, false
		}
	}
	return n, true
}

// validFieldLine checks "name: value" for a trailer line without CRLF.
func validFieldLine(l []byte) bool {
	colon := bytes.IndexByte(l, ':')
	if colon <= 0 {
		return false
	}
	for _, c := range l[:colon] {
		if !tchar[c] {
			return false
		}
	}
	for _, c := range l[colon+1:] {
		if !vchar[c] {
			return false
		}
	}
	return true
}

// forbiddenTrailer reports trailer fields that must not be forwarded: those
// that frame or route a message.
func forbiddenTrailer(l []byte) bool {
	colon := bytes.IndexByte(l, ':')
	name := l[:colon]
	return equalFold(name, "content-length") || equalFold(name, "transfer-encoding") ||
		equalFold(name, "host") || equalFold(name, "connection") ||
		equalFold(name, "trailer") || equalFold(name, "te") ||
		equalFold(name, "content-type") || equalFold(name, "content-encoding") ||
		equalFold(name, "content-range") || equalFold(name, "set-cookie") ||
		equalFold(name, "cookie") || equalFold(name, "authorization")
}
