package proxy

import (
	"bufio"
	"io"
	"strconv"
	"time"
)

// Body framings.
const (
	bodyNone = iota
	bodyCL
	bodyChunked
	bodyClose // response delimited by the upstream closing the connection
)

var (
	errBodyTooLarge = &httpError{413, "request body too large"}
	errTruncated    = &httpError{502, "body ended early"}
)

// bodyState streams one message body, re-framing it for the receiver. It
// holds no buffer of its own: bytes go from the sender's read buffer to the
// receiver's bufio.Writer.
type bodyState struct {
	kind       int
	left       int64 // bodyCL: bytes still to come
	dec        chunkDecoder
	total      int64 // body bytes so far (decoded)
	max        int64 // 0: no limit; more is errBodyTooLarge
	outChunked bool  // the receiver gets chunked framing
	lastSent   bool  // the last chunk ("0\r\n") went out
	done       bool
	tmp        [24]byte
}

func (b *bodyState) init(kind int, cl int64, outChunked bool, max int64) {
	b.kind, b.left, b.outChunked, b.max = kind, cl, outChunked, max
	b.total, b.lastSent, b.done = 0, false, kind == bodyNone || (kind == bodyCL && cl == 0)
	b.dec.reset()
}

// byteSink appends to a slice: the retry buffer.
type byteSink []byte

func (s *byteSink) Write(p []byte) (int, error) { *s = append(*s, p...); return len(p), nil }

// pump moves body bytes from rd to dst until the body is complete or, with
// budget > 0, until about budget bytes went to dst. Before it blocks on rd
// it flushes flush (if non-nil), so a slow sender's bytes reach the
// receiver as they come. srcErr is a failure of the sender (including
// framing and size violations), dstErr one of the receiver.
func (b *bodyState) pump(rd *connReader, timeout time.Duration, dst io.Writer, flush *bufio.Writer, budget int) (srcErr, dstErr error) {
	written := 0
	write := func(p []byte) error {
		written += len(p)
		_, err := dst.Write(p)
		return err
	}
	data := func(p []byte) error {
		b.total += int64(len(p))
		if b.max > 0 && b.total > b.max {
			return errBodyTooLarge
		}
		if !b.outChunked {
			return write(p)
		}
		hx := strconv.AppendInt(b.tmp[:0], int64(len(p)), 16)
		hx = append(hx, '\r', '\n')
		if err := write(hx); err != nil {
			return err
		}
		if err := write(p); err != nil {
			return err
		}
		return write(crlf)
	}
	for !b.done {
		if budget > 0 && written >= budget {
			return nil, nil
		}
		a := rd.avail()
		need := len(a) == 0
		switch b.kind {
		case bodyCL:
			if len(a) > 0 {
				n := min(int64(len(a)), b.left)
				if budget > 0 {
					n = min(n, int64(budget-written))
				}
				rd.consume(int(n))
				b.left -= n
				b.done = b.left == 0
				if err := data(a[:n]); err != nil {
					return errAs(err)
				}
			}
		case bodyClose:
			if len(a) > 0 {
				rd.consume(len(a))
				if err := data(a); err != nil {
					return errAs(err)
				}
			}
		case bodyChunked:
			in := a
			if b.dec.state == csData && budget > 0 && len(in) > budget-written {
				in = in[:budget-written]
			}
			kind, n, err := b.dec.step(in)
			if err != nil {
				return err, nil
			}
			switch kind {
			case ckMore:
				need = true
			case ckFrame:
				rd.consume(n)
			case ckData:
				rd.consume(n)
				if err := data(a[:n]); err != nil {
					return errAs(err)
				}
			case ckTrailer, ckEnd:
				line := a[:n]
				rd.consume(n)
				if !b.outChunked {
					b.done = kind == ckEnd
					break
				}
				if !b.lastSent {
					b.lastSent = true
					if err := write(lastChunk); err != nil {
						return nil, err
					}
				}
				if kind == ckEnd {
					b.done = true
					if err := write(crlf); err != nil {
						return nil, err
					}
				} else if !forbiddenTrailer(line[:n-2]) {
					if err := write(line); err != nil {
						return nil, err
					}
				}
			}
		}
		if b.done || !need {
			continue
		}
		if flush != nil && flush.Buffered() > 0 {
			if err := flush.Flush(); err != nil {
				return nil, err
			}
		}
		if _, err := rd.fill(timeout, maxChunkLine*2); err != nil {
			if b.kind == bodyClose && err == io.EOF {
				b.done = true
				if b.outChunked {
					if err := write(lastChunkEnd); err != nil {
						return nil, err
					}
				}
				return nil, nil
			}
			if err == errBufferFull {
				return errChunkSize, nil
			}
			if err == io.EOF {
				err = errTruncated
			}
			return err, nil
		}
	}
	return nil, nil
}

// errAs sorts an error from data(): the size limit is the sender's fault,
// anything else is the receiver's.
func errAs(err error) (srcErr, dstErr error) {
	if err == errBodyTooLarge {
		return err, nil
	}
	return nil, err
}

var (
	crlf         = []byte("\r\n")
	lastChunk    = []byte("0\r\n")
	lastChunkEnd = []byte("0\r\n\r\n")
)
