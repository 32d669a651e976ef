package proxy

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// tunnelGrace bounds how long a closing tunnel waits for the frame in
// flight to end, and then for the client to answer the close.
const tunnelGrace = 2 * time.Second

// Tunnel is an open WebSocket connection relayed to an upstream. The
// upstream-to-client copy parses the server's frame headers (unmasked) only
// to know where frames end, so that a close frame is injected between
// frames, never inside one.
type Tunnel struct {
	upstream *Upstream
	done     chan struct{}
	cc       *clientConn
	uc       *upConn

	mu      sync.Mutex
	code    uint16
	reason  string
	closing atomic.Bool
	last    atomic.Int64 // coarse time of the last byte either way
}

// Upstream is the upstream the tunnel is connected to.
func (t *Tunnel) Upstream() *Upstream { return t.upstream }

// Closed is closed when the tunnel has ended, for whatever reason.
func (t *Tunnel) Closed() <-chan struct{} { return t.done }

// Close sends the client a WebSocket close frame with code and reason (at a
// frame boundary of the upstream-to-client stream, so the frame is never
// spliced into another), then closes both sides. Codes: 1001 going away
// (shutdown), 1012 service restart (drain). Safe to call more than once and
// concurrently.
func (t *Tunnel) Close(code uint16, reason string) {
	t.mu.Lock()
	if t.closing.Load() {
		t.mu.Unlock()
		return
	}
	t.code, t.reason = code, reason
	t.closing.Store(true)
	t.mu.Unlock()
	select {
	case <-t.done:
	default:
		t.uc.c.SetReadDeadline(time.Now()) // wake the upstream reader
	}
}

// frameTracker follows WebSocket frame boundaries in a byte stream.
type frameTracker struct {
	hdr  [14]byte
	hn   int    // header bytes collected
	need int    // header length once known
	left uint64 // payload bytes left
}

func (f *frameTracker) atBoundary() bool { return f.hn == 0 && f.left == 0 }

// advance consumes a prefix of a; with stop, it stops at the first frame
// boundary.
func (f *frameTracker) advance(a []byte, stop bool) int {
	i := 0
	for i < len(a) {
		if f.left > 0 {
			n := min(uint64(len(a)-i), f.left)
			i += int(n)
			f.left -= n
			continue
		}
		if f.hn == 0 && stop {
			return i
		}
		f.hdr[f.hn] = a[i]
		f.hn++
		i++
		if f.hn == 2 {
			f.need = 2
			switch f.hdr[1] & 0x7f {
			case 126:
				f.need += 2
			case 127:
				f.need += 8
			}
			if f.hdr[1]&0x80 != 0 {
				f.need += 4
			}
		}
		if f.hn >= 2 && f.hn == f.need {
			switch l := f.hdr[1] & 0x7f; l {
			case 126:
				f.left = uint64(binary.BigEndian.Uint16(f.hdr[2:4]))
			case 127:
				f.left = binary.BigEndian.Uint64(f.hdr[2:10])
			default:
				f.left = uint64(l)
			}
			f.hn = 0
		}
	}
	return i
}

// closeFrame builds an unmasked close frame (server to client).
func closeFrame(dst []byte, code uint16, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	dst = append(dst, 0x88, byte(2+len(reason)), byte(code>>8), byte(code))
	return append(dst, reason...)
}

// runTunnel relays bytes both ways until either side ends, the tunnel
// idles, outlives TunnelMax, or Close is called.
func (cc *clientConn) runTunnel(t *Tunnel) {
	s := cc.s
	uc := t.uc
	uc.bw = nil // a tunnel writes upstream unbuffered: let the 8 KiB go
	s.mu.Lock()
	cc.tunnel = t
	s.mu.Unlock()
	cc.state.Store(stTunnel)
	// Activity is stamped from the coarse clock, or the precise one when
	// the idle timeout is short enough for coarseness to matter.
	now := func() int64 {
		if s.to.TunnelIdle < shortTimeout {
			return time.Now().UnixNano()
		}
		return s.clk.get()
	}
	t.last.Store(now())
	if s.to.TunnelMax > 0 {
		tm := time.AfterFunc(s.to.TunnelMax, func() { t.Close(1001, "maximum lifetime") })
		defer tm.Stop()
	}
	idle := int64(s.to.TunnelIdle)

	c2u := make(chan struct{})
	go func() {
		defer close(c2u)
		upDead := false
		if a := cc.rd.avail(); len(a) > 0 {
			_, err := uc.cw.Write(a)
			upDead = err != nil
			cc.rd.consume(len(a))
		}
		buf := cc.rd.buf
		for {
			if !t.closing.Load() {
				cc.rd.setTimeout(s.to.TunnelIdle)
			}
			n, err := cc.c.Read(buf)
			if n > 0 {
				t.last.Store(now())
				if !upDead {
					if _, werr := uc.cw.Write(buf[:n]); werr != nil {
						// Keep reading the client (discarding) so that it
						// gets our close frame rather than a reset.
						upDead = true
					}
				}
			}
			if err != nil {
				if isTimeout(err) && !t.closing.Load() {
					if now()-t.last.Load() < idle {
						continue
					}
					t.Close(1001, "idle timeout")
					// Stay for the client's answer to the close frame.
					cc.c.SetReadDeadline(time.Now().Add(2 * tunnelGrace))
					continue
				}
				break
			}
		}
		closeWrite(uc.c)
	}()

	var ft frameTracker
	graceSet := false
	for {
		closing := t.closing.Load()
		a := uc.rd.avail()
		if len(a) > 0 {
			k := ft.advance(a, closing)
			cc.bw.Write(a[:k])
			uc.rd.consume(k)
			t.last.Store(now())
		}
		if closing && ft.atBoundary() {
			break // the close frame goes out below
		}
		if len(uc.rd.avail()) > 0 {
			continue
		}
		if cc.bw.Buffered() > 0 {
			if err := cc.bw.Flush(); err != nil {
				break
			}
		}
		if !closing {
			uc.rd.setTimeout(s.to.TunnelIdle)
			if t.closing.Load() {
				continue
			}
		}
		_, err := uc.rd.fill(0, len(uc.rd.buf))
		if err == nil {
			continue
		}
		if !isTimeout(err) {
			break
		}
		if t.closing.Load() {
			if graceSet {
				break // the frame in flight never ended: close without a frame
			}
			graceSet = true
			uc.rd.forceDeadline(time.Now().Add(tunnelGrace))
			continue
		}
		select {
		case <-c2u:
		default:
			if now()-t.last.Load() < idle {
				continue
			}
			t.Close(1001, "idle timeout")
			continue
		}
		break
	}
	// End. A close that was asked for is sent whenever the stream stands
	// at a frame boundary, even if the upstream left meanwhile. Then
	// flush what the client should still get, half-close so that it reads
	// everything, and give it a moment to answer before closing.
	if t.closing.Load() && ft.atBoundary() {
		t.mu.Lock()
		code, reason := t.code, t.reason
		t.mu.Unlock()
		cc.bw.Write(closeFrame(cc.tmp[:0], code, reason))
	}
	cc.bw.Flush()
	closeWrite(cc.c)
	cc.c.SetReadDeadline(time.Now().Add(tunnelGrace))
	uc.c.Close()
	select {
	case <-c2u:
	case <-time.After(tunnelGrace):
		cc.c.Close()
		<-c2u
	}
	close(t.done)
	s.release(cc)
}
