package proxy

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Large Content-Length bodies between two plain TCP sockets move by
// splice(2), through a pipe, without being copied into this process: for a
// 64 KiB body that is two system calls instead of four 16 KiB reads and
// writes, and no copying through user space. The head and any body bytes
// already buffered go first, through the buffers. Chunked bodies, TLS on
// either side and HTTP/2 stay on the buffered path: they need re-framing
// or decryption.
//
// Timeouts keep their meaning: each wait for the sender's bytes is bounded
// by its timeout and each wait to write by the receiver's, armed as
// coarsely as for buffered reads (io.go); the waits go through
// syscall.RawConn, so the netpoller parks the goroutine meanwhile.

// spliceMin is the body remainder from which splicing pays: below it a
// pipe's two extra calls cost more than the copy they save.
const spliceMin = 32 << 10

// spliceChunk bounds one splice call: the default pipe capacity.
const spliceChunk = 64 << 10

// pipe is a kernel pipe used as the splice buffer; n bytes sit in it.
type pipe struct {
	r, w int
	n    int
}

// pipePool keeps a few empty pipes for reuse; a pipe left holding bytes
// after an error is closed instead, as is one the pool has no room for,
// and every one once the Server is closed.
type pipePool struct {
	once   sync.Once
	free   chan *pipe
	closed atomic.Bool
}

func (p *pipePool) get() (*pipe, error) {
	p.once.Do(func() { p.free = make(chan *pipe, 32) })
	select {
	case pp := <-p.free:
		return pp, nil
	default:
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	return &pipe{r: fds[0], w: fds[1]}, nil
}

func (p *pipePool) put(pp *pipe) {
	if pp.n == 0 && !p.closed.Load() {
		select {
		case p.free <- pp:
			return
		default:
		}
	}
	unix.Close(pp.r)
	unix.Close(pp.w)
}

// close closes the pooled pipes and those put back later.
func (p *pipePool) close() {
	p.closed.Store(true)
	p.once.Do(func() { p.free = make(chan *pipe, 32) })
	for {
		select {
		case pp := <-p.free:
			unix.Close(pp.r)
			unix.Close(pp.w)
		default:
			return
		}
	}
}

// spliceEnd is one socket's side of a splice: its RawConn and deadline
// bookkeeping.
type spliceEnd struct {
	rc  syscall.RawConn
	c   net.Conn
	d   time.Duration
	dl  *int64
	clk *clock
}

func (e *spliceEnd) arm(read bool) {
	if e.d <= 0 {
		return
	}
	if at, ok := wantDeadline(*e.dl, e.clk, e.d); ok {
		*e.dl = at
		if read {
			e.c.SetReadDeadline(time.Unix(0, at))
		} else {
			e.c.SetWriteDeadline(time.Unix(0, at))
		}
	}
}

// rawConnOf returns c's RawConn when c is a plain TCP connection.
func rawConnOf(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// spliceBody sends what is left of b, a Content-Length body, from rd's
// connection (src) to dst: first the bytes rd holds, through bw, then the
// rest by splice. It reports failures as pump does: srcErr the sender's,
// dstErr the receiver's.
func (s *Server) spliceBody(b *bodyState, rd *connReader, src syscall.RawConn, srcTimeout time.Duration,
	bw *bufio.Writer, dw *connWriter, dst syscall.RawConn) (srcErr, dstErr error) {
	if a := rd.avail(); len(a) > 0 {
		n := min(int64(len(a)), b.left)
		bw.Write(a[:n])
		rd.consume(int(n))
		b.left -= n
		b.total += n
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	pp, err := s.pipes.get()
	if err != nil {
		return nil, err
	}
	defer s.pipes.put(pp)
	in := spliceEnd{rc: src, c: rd.c, d: srcTimeout, dl: &rd.dl, clk: rd.clk}
	out := spliceEnd{rc: dst, c: dw.c, d: dw.d, dl: &dw.dl, clk: dw.clk}
	var opErr error
	for b.left > 0 {
		// Drain the sender into the pipe: whatever is there, up to the
		// pipe's capacity and the body's end.
		want := int(min(b.left, spliceChunk))
		eof := false
		in.arm(true)
		err := in.rc.Read(func(fd uintptr) bool {
			for {
				k, err := unix.Splice(int(fd), nil, pp.w, nil, want, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				switch {
				case err == unix.EINTR:
					continue
				case err == unix.EAGAIN:
					return false
				case err != nil:
					opErr = err
				case k == 0:
					eof = true
				default:
					pp.n += int(k)
				}
				return true
			}
		})
		if err == nil {
			err = opErr
		}
		if err != nil {
			return err, nil
		}
		if eof {
			return errTruncated, nil
		}
		moved := int64(pp.n)
		// Pump the pipe into the receiver.
		for pp.n > 0 {
			out.arm(false)
			err := out.rc.Write(func(fd uintptr) bool {
				for pp.n > 0 {
					k, err := unix.Splice(pp.r, nil, int(fd), nil, pp.n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
					switch {
					case err == unix.EINTR:
						continue
					case err == unix.EAGAIN:
						return false
					case err != nil:
						opErr = err
						return true
					}
					pp.n -= int(k)
				}
				return true
			})
			if err == nil {
				err = opErr
			}
			if err != nil {
				return nil, err
			}
		}
		b.left -= moved
		b.total += moved
		s.spliced.Add(moved)
	}
	b.done = true
	return nil, nil
}

// alive reports whether a pooled plain TCP upstream connection is still
// open and quiet: a non-blocking peek finds nothing to read (no FIN, no
// stray bytes). A streamed body cannot be replayed, so it takes a pooled
// connection only after this check; what it cannot see is an upstream
// closing in the microseconds between the peek and the request.
func (uc *upConn) alive() bool {
	if uc.rc == nil {
		return false
	}
	ok := false
	uc.rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ok = err == unix.EAGAIN
		return true
	})
	return ok
}
