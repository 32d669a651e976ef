package proxy

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// Deadlines are reset from a coarse clock: a Server goroutine stores the
// time about once a second, and a connection moves its deadline only when
// the wanted one has drifted by a second or more (or must come earlier).
// Setting a deadline on every read is measurable (timer heap updates), and
// a timeout that fires up to a second early or late is still a timeout.

const deadlineSlack = int64(time.Second)

// clock is the coarse time source, in Unix nanoseconds.
type clock struct{ now atomic.Int64 }

func (c *clock) get() int64 {
	if n := c.now.Load(); n != 0 {
		return n
	}
	return time.Now().UnixNano()
}

// run ticks until stop is closed.
func (c *clock) run(stop <-chan struct{}) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			c.now.Store(0) // get falls back to time.Now for what still runs
			return
		case now := <-t.C:
			c.now.Store(now.UnixNano())
		}
	}
}

// shortTimeout is where coarseness would matter: shorter timeouts are
// armed from the precise clock, every time.
const shortTimeout = 5 * time.Second

// wantDeadline reports whether a deadline currently at cur must move for a
// timeout d, and to when.
func wantDeadline(cur int64, clk *clock, d time.Duration) (int64, bool) {
	if d < shortTimeout {
		return time.Now().Add(d).UnixNano(), true
	}
	want := clk.get() + int64(d)
	if cur == 0 || want < cur || want-cur >= deadlineSlack {
		return want, true
	}
	return cur, false
}

// connReader is a connection's read side: a reused buffer with read and
// write cursors, so parsers can look at buffered bytes without copying.
type connReader struct {
	c   net.Conn
	buf []byte
	r   int
	w   int
	dl  int64
	clk *clock
}

func (rd *connReader) avail() []byte { return rd.buf[rd.r:rd.w] }

func (rd *connReader) consume(n int) {
	rd.r += n
	if rd.r == rd.w {
		rd.r, rd.w = 0, 0
	}
}

// setTimeout arms the read deadline, coarsely.
func (rd *connReader) setTimeout(d time.Duration) {
	if d <= 0 {
		return
	}
	if at, ok := wantDeadline(rd.dl, rd.clk, d); ok {
		rd.dl = at
		rd.c.SetReadDeadline(time.Unix(0, at))
	}
}

// forceDeadline sets the read deadline exactly (rare paths).
func (rd *connReader) forceDeadline(at time.Time) {
	rd.dl = at.UnixNano()
	rd.c.SetReadDeadline(at)
}

var errBufferFull = errors.New("proxy: buffer full")

// fill reads more bytes, compacting or growing the buffer up to max. It
// returns errBufferFull when max bytes are already buffered.
func (rd *connReader) fill(d time.Duration, max int) (int, error) {
	if rd.w == len(rd.buf) {
		if rd.r > 0 {
			n := copy(rd.buf, rd.buf[rd.r:rd.w])
			rd.r, rd.w = 0, n
		} else if len(rd.buf) < max {
			nb := make([]byte, min(2*len(rd.buf), max))
			copy(nb, rd.buf[:rd.w])
			rd.buf = nb
		} else {
			return 0, errBufferFull
		}
	}
	rd.setTimeout(d)
	n, err := rd.c.Read(rd.buf[rd.w:])
	rd.w += n
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = errors.New("proxy: empty read")
	}
	return 0, err
}

// connWriter is the io.Writer under a connection's bufio.Writer; it arms
// the write deadline coarsely before each write.
type connWriter struct {
	c   net.Conn
	d   time.Duration
	dl  int64
	clk *clock
}

func (w *connWriter) Write(p []byte) (int, error) {
	if w.d > 0 {
		if at, ok := wantDeadline(w.dl, w.clk, w.d); ok {
			w.dl = at
			w.c.SetWriteDeadline(time.Unix(0, at))
		}
	}
	return w.c.Write(p)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// closeWrite half-closes c when it can, so a peer reads what was sent
// before the end instead of a reset.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
