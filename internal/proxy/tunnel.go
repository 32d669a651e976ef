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

// tunnelImpl relays a WebSocket connection. The upstream-to-client copy
// parses the server's frame headers (unmasked) only to know where frames
// end, so that a close frame is injected between frames, never inside one.
type tunnelImpl struct {
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

func (t *tunnelImpl) closeWith(code uint16, reason string) {
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
func (cc *clientConn) runTunnel(tun *Tunnel) {
	s := cc.s
	si := &s.impl
	t := &tun.impl
	uc := t.uc
	uc.bw = nil // a tunnel writes upstream unbuffered: let the 8 KiB go
	si.mu.Lock()
	cc.tunnel = tun
	si.mu.Unlock()
	cc.state.Store(stTunnel)
	t.last.Store(si.clk.get())
	if si.to.TunnelMax > 0 {
		tm := time.AfterFunc(si.to.TunnelMax, func() { t.closeWith(1001, "maximum lifetime") })
		defer tm.Stop()
	}
	idle := int64(si.to.TunnelIdle)

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
				cc.rd.setTimeout(si.to.TunnelIdle)
			}
			n, err := cc.c.Read(buf)
			if n > 0 {
				t.last.Store(si.clk.get())
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
					if si.clk.get()-t.last.Load() < idle {
						continue
					}
					t.closeWith(1001, "idle timeout")
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
			t.last.Store(si.clk.get())
		}
		if closing && ft.atBoundary() {
			t.mu.Lock()
			code, reason := t.code, t.reason
			t.mu.Unlock()
			cc.bw.Write(closeFrame(cc.tmp[:0], code, reason))
			break
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
			uc.rd.setTimeout(si.to.TunnelIdle)
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
			if si.clk.get()-t.last.Load() < idle {
				continue
			}
			t.closeWith(1001, "idle timeout")
			continue
		}
		break
	}
	// End: flush what the client should still get, half-close so that it
	// reads everything, and give it a moment to answer before closing.
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
