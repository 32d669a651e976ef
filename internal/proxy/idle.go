package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// An idle keep-alive connection holds no buffers. Between requests a
// plain TCP client connection gives its read buffer and its response
// writer back to the Server's pools and waits on the netpoller through
// syscall.RawConn; the read callback borrows a buffer only for the read(2)
// itself and keeps it only when bytes came. That costs no extra system
// call over a plain Read (whose first read(2) finds nothing too, before
// the goroutine parks), and an idle connection is left with its goroutine
// and the clientConn. TLS connections keep their buffers: crypto/tls holds
// its own anyway.

// idleBufs lends client read buffers and response writers.
type idleBufs struct {
	rd sync.Pool // *[clientReadBuf]byte
	bw sync.Pool // *bufio.Writer
	// lent counts the read buffers and writers connections hold, when
	// count is set (tests set it before the first connection): a shared
	// counter bumped four times a request costs the hot path a cache line
	// bouncing between cores.
	count bool
	lent  atomic.Int64
}

func (p *idleBufs) getRead() []byte {
	if p.count {
		p.lent.Add(1)
	}
	if b, _ := p.rd.Get().(*[clientReadBuf]byte); b != nil {
		return b[:]
	}
	return make([]byte, clientReadBuf)
}

// putRead takes back b if it is a standard buffer (grown ones are dropped).
func (p *idleBufs) putRead(b []byte) {
	if p.count {
		p.lent.Add(-1)
	}
	if len(b) == clientReadBuf {
		p.rd.Put((*[clientReadBuf]byte)(b))
	}
}

func (p *idleBufs) getWriter(w io.Writer) *bufio.Writer {
	if p.count {
		p.lent.Add(1)
	}
	if bw, _ := p.bw.Get().(*bufio.Writer); bw != nil {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, clientWriteBuf)
}

func (p *idleBufs) putWriter(bw *bufio.Writer) {
	if p.count {
		p.lent.Add(-1)
	}
	bw.Reset(nil)
	p.bw.Put(bw)
}

// idleRaw is what the idle wait needs of a plain TCP connection.
type idleRaw struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool // rd.rawRead, bound once
	n   int
	err error
}

// setupIdle prepares c for buffer-free idle waits; other connections
// (TLS, PROXY-wrapped, pipes in tests) keep the plain path.
func (cc *clientConn) setupIdle(c net.Conn) {
	cc.idle.rc = rawConnOf(c) // nil but on Linux
	if cc.idle.rc != nil && cc.idle.fn == nil {
		cc.idle.fn = cc.rawRead
	}
}

// releaseBufs gives the empty read buffer and the flushed writer back
// while the connection idles; acquireBufs takes them again. Only plain
// TCP connections release (see setupIdle).
//
// The read buffer is left to the read callback when it is about to be
// used (read is false): the callback keeps it if bytes are already there
// and gives it back before the goroutine parks, which saves a Put and a
// Get per request.
func (cc *clientConn) releaseBufs(read bool) {
	if cc.idle.rc == nil || cc.rd.r != cc.rd.w || (cc.bw != nil && cc.bw.Buffered() > 0) {
		return
	}
	cc.rd.r, cc.rd.w = 0, 0
	if read && cc.rd.buf != nil {
		cc.s.bufs.putRead(cc.rd.buf)
		cc.rd.buf = nil
	}
	if cc.bw != nil {
		cc.s.bufs.putWriter(cc.bw)
		cc.bw = nil
	}
	if cap(cc.body) > 4<<10 {
		cc.body = nil // a large retry buffer is not kept for the next request
	}
}

func (cc *clientConn) acquireBufs() {
	if cc.rd.buf == nil {
		cc.rd.buf = cc.s.bufs.getRead()
	}
	if cc.bw == nil {
		cc.bw = cc.s.bufs.getWriter(&cc.cw)
	}
}

// errParked: the connection went to the idler (park_linux.go) and its
// goroutine must end without touching it.
var errParked = errors.New("proxy: connection parked")

// fillIdle is connReader.fill for a connection waiting, with nothing
// buffered, for its next request (ClientIdle d): it holds no buffer until
// bytes come, and after parkAfter it parks (errParked). Otherwise it
// leaves the buffers acquired whatever the outcome.
func (cc *clientConn) fillIdle(d time.Duration) (int, error) {
	rd := &cc.rd
	s := cc.s
	cc.releaseBufs(false)
	start := s.clk.get() // coarse: parking needs no precision, and this is per request
	var err error
	for {
		wait := d
		if s.parkAfter > 0 && s.parkAfter < d {
			wait = s.parkAfter
		}
		rd.setTimeout(wait)
		cc.idle.n, cc.idle.err = 0, nil
		err = cc.idle.rc.Read(cc.idle.fn)
		if err == nil || wait == d || !isTimeout(err) {
			break
		}
		// The park deadline (or an earlier one) fired: park for the
		// rest of ClientIdle, or keep waiting here if parking fails.
		left := d - time.Duration(s.clk.get()-start)
		if left <= 0 {
			break
		}
		if cc.park(left) {
			return 0, errParked
		}
		d = left
		start = s.clk.get()
		rd.dl = 0
	}
	cc.acquireBufs()
	if err != nil {
		return 0, err
	}
	n, err := cc.idle.n, cc.idle.err
	if n > 0 {
		rd.w += n
		return n, nil
	}
	if err == nil {
		return 0, io.EOF
	}
	return 0, err
}
