package proxy

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// Connection states, for Shutdown.
const (
	stActive int32 = iota
	stIdle         // waiting for a request with nothing buffered
	stTunnel       // a WebSocket tunnel: left to the router
	stClosed
)

// setup reads the Server's fields, once, and starts the coarse clock.
func (s *Server) setup() {
	s.once.Do(func() {
		s.lim = s.Limits
		if s.lim.MaxHeaderBytes <= 0 {
			s.lim.MaxHeaderBytes = 64 << 10
		}
		if s.lim.MaxConns <= 0 {
			s.lim.MaxConns = 10000
		}
		if s.lim.RetryBodyBytes <= 0 {
			s.lim.RetryBodyBytes = 64 << 10
		}
		if len(s.lim.RetryMethods) == 0 {
			s.lim.RetryMethods = DefaultRetryMethods()
		}
		for _, m := range s.lim.RetryMethods {
			s.retry = append(s.retry, []byte(m))
		}
		s.to = s.Timeouts
		def := func(d *time.Duration, v time.Duration) {
			if *d <= 0 {
				*d = v
			}
		}
		def(&s.to.ClientHeader, 10*time.Second)
		def(&s.to.ClientIdle, 60*time.Second)
		def(&s.to.ClientWrite, 30*time.Second)
		def(&s.to.Dial, 3*time.Second)
		def(&s.to.Upstream, 30*time.Second)
		def(&s.to.UpstreamIdle, 90*time.Second)
		def(&s.to.TunnelIdle, 10*time.Minute)
		def(&s.parkAfter, defaultParkAfter)
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.Default()
		}
		s.conns = map[*clientConn]struct{}{}
		s.stop = make(chan struct{})
		s.clk.now.Store(time.Now().UnixNano())
		go s.clk.run(s.stop)
	})
}

func (s *Server) newConn(c net.Conn, client netip.AddrPort) *clientConn {
	cc, _ := s.pool.Get().(*clientConn)
	if cc == nil {
		cc = newClientConn()
	}
	cc.s = s
	cc.c = c
	cc.acquireBufs()
	cc.setupIdle(c)
	cc.rd.c, cc.rd.clk, cc.rd.r, cc.rd.w, cc.rd.dl = c, &s.clk, 0, 0, 0
	cc.cw.c, cc.cw.clk, cc.cw.d, cc.cw.dl = c, &s.clk, s.to.ClientWrite, 0
	cc.bw.Reset(&cc.cw)
	cc.state.Store(stActive)
	r := &cc.req
	r.peer, cc.peerPort = client.Addr().Unmap(), client.Port()
	if !r.peer.IsValid() {
		r.peer, cc.peerPort = peerAddr(c)
	}
	cc.local = localAddr(c)
	r.trust = s.TrustedProxies
	r.trusted = r.peer.IsValid() && inPrefixes(s.TrustedProxies, r.peer)
	_, r.isTLS = c.(*tls.Conn)
	cc.peerText = r.peer.AppendTo(cc.peerText[:0])
	cc.fwdFor = cc.fwdFor[:0]
	if r.peer.Is6() {
		cc.fwdFor = append(cc.fwdFor, `"[`...)
		cc.fwdFor = append(cc.fwdFor, cc.peerText...)
		cc.fwdFor = append(cc.fwdFor, `]"`...)
	} else {
		cc.fwdFor = append(cc.fwdFor, cc.peerText...)
	}
	return cc
}

// peerAddr is the client's IP address and port (invalid for non-IP
// transports).
func peerAddr(c net.Conn) (netip.Addr, uint16) {
	ap := addrPort(c.RemoteAddr())
	return ap.Addr().Unmap(), ap.Port()
}

// localAddr is the address the client connected to.
func localAddr(c net.Conn) netip.AddrPort { return addrPort(c.LocalAddr()) }

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (s *Server) release(cc *clientConn) {
	s.mu.Lock()
	delete(s.conns, cc)
	s.mu.Unlock()
	s.nconns.Add(-1)
	cc.c.Close()
	cc.c, cc.rd.c, cc.cw.c = nil, nil, nil
	cc.idle.rc = nil
	// A pooled clientConn keeps no buffers: they go back to the pools
	// idle connections borrow from.
	if cc.rd.buf != nil {
		s.bufs.putRead(cc.rd.buf)
		cc.rd.buf = nil
	}
	if cc.bw != nil {
		s.bufs.putWriter(cc.bw)
		cc.bw = nil
	}
	cc.tunnel = nil
	cc.tried = [2]*Upstream{}
	cc.req.Tried, cc.req.LastErr = nil, nil
	if cap(cc.body) > 64<<10 {
		cc.body = nil
	}
	s.pool.Put(cc)
}

// Shutdown refuses new connections (ServeConn returns ErrServerClosed),
// closes idle client connections, and waits for in-flight exchanges to
// finish or ctx to end. Tunnels are left to the router, which closes them
// with 1001 spread over its grace period.
func (s *Server) Shutdown(ctx context.Context) error {
	s.setup()
	s.mu.Lock()
	s.shutting.Store(true)
	s.mu.Unlock()
	s.idler.stop(s)
	s.shutdownH2()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		busy := 0
		s.mu.Lock()
		for cc := range s.conns {
			switch cc.state.Load() {
			case stIdle:
				if cc.state.CompareAndSwap(stIdle, stClosed) {
					cc.c.Close()
				} else {
					busy++
				}
			case stActive:
				busy++
			}
		}
		s.mu.Unlock()
		if busy == 0 {
			s.stopOnce.Do(func() { close(s.stop) })
			s.pipes.close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes every connection at once, tunnels included, and refuses
// new ones.
func (s *Server) Close() error {
	s.setup()
	s.mu.Lock()
	s.shutting.Store(true)
	for cc := range s.conns {
		cc.state.Store(stClosed)
		cc.c.Close()
		if t := cc.tunnel; t != nil {
			t.uc.c.Close()
		}
	}
	s.mu.Unlock()
	s.idler.stop(s)
	s.stopOnce.Do(func() { close(s.stop) })
	s.pipes.close()
	return nil
}
