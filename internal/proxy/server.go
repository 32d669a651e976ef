package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// serverImpl is a Server's running state.
type serverImpl struct {
	once sync.Once
	lim  Limits
	to   Timeouts
	log  *slog.Logger
	idem [][]byte
	clk  clock

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*clientConn]struct{}
	nconns    atomic.Int64
	shutting  atomic.Bool
	closed    atomic.Bool
	stop      chan struct{}
	stopOnce  sync.Once

	pool sync.Pool // *clientConn with its buffers
}

// Connection states, for Shutdown.
const (
	stActive int32 = iota
	stIdle         // waiting for a request with nothing buffered
	stTunnel       // a WebSocket tunnel: left to the router
	stClosed
)

func (s *Server) setup() {
	si := &s.impl
	si.once.Do(func() {
		si.lim = s.Limits
		if si.lim.MaxHeaderBytes <= 0 {
			si.lim.MaxHeaderBytes = 64 << 10
		}
		if si.lim.MaxConns <= 0 {
			si.lim.MaxConns = 10000
		}
		if si.lim.RetryBodyBytes <= 0 {
			si.lim.RetryBodyBytes = 64 << 10
		}
		if len(si.lim.IdempotentMethods) == 0 {
			si.lim.IdempotentMethods = []string{"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}
		}
		for _, m := range si.lim.IdempotentMethods {
			si.idem = append(si.idem, []byte(m))
		}
		si.to = s.Timeouts
		def := func(d *time.Duration, v time.Duration) {
			if *d <= 0 {
				*d = v
			}
		}
		def(&si.to.ClientHeader, 10*time.Second)
		def(&si.to.ClientIdle, 60*time.Second)
		def(&si.to.ClientWrite, 30*time.Second)
		def(&si.to.Dial, 3*time.Second)
		def(&si.to.Upstream, 30*time.Second)
		def(&si.to.UpstreamIdle, 90*time.Second)
		def(&si.to.TunnelIdle, 10*time.Minute)
		si.log = s.Logger
		if si.log == nil {
			si.log = slog.Default()
		}
		si.listeners = map[net.Listener]struct{}{}
		si.conns = map[*clientConn]struct{}{}
		si.stop = make(chan struct{})
		si.clk.now.Store(time.Now().UnixNano())
		go si.clk.run(si.stop)
	})
}

func (s *Server) serve(l net.Listener) error {
	if s.Route == nil {
		return errors.New("proxy: Server.Route is nil")
	}
	s.setup()
	si := &s.impl
	si.mu.Lock()
	if si.shutting.Load() || si.closed.Load() {
		si.mu.Unlock()
		l.Close()
		return net.ErrClosed
	}
	si.listeners[l] = struct{}{}
	si.mu.Unlock()
	defer func() {
		si.mu.Lock()
		delete(si.listeners, l)
		si.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if si.shutting.Load() || si.closed.Load() {
				return net.ErrClosed
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
				case <-si.stop:
				}
				continue
			}
			return err
		}
		backoff = 0
		if si.nconns.Add(1) > int64(si.lim.MaxConns) {
			si.nconns.Add(-1)
			c.Close()
			continue
		}
		cc := s.newConn(c)
		si.mu.Lock()
		if si.closed.Load() {
			si.mu.Unlock()
			si.nconns.Add(-1)
			c.Close()
			continue
		}
		si.conns[cc] = struct{}{}
		si.mu.Unlock()
		go cc.serve()
	}
}

// isTemporary reports accept errors worth retrying (EMFILE and the like).
func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

func (s *Server) newConn(c net.Conn) *clientConn {
	si := &s.impl
	cc, _ := si.pool.Get().(*clientConn)
	if cc == nil {
		cc = newClientConn()
	}
	cc.s = s
	cc.c = c
	cc.rd.c, cc.rd.clk, cc.rd.r, cc.rd.w, cc.rd.dl = c, &si.clk, 0, 0, 0
	cc.cw.c, cc.cw.clk, cc.cw.d, cc.cw.dl = c, &si.clk, si.to.ClientWrite, 0
	cc.bw.Reset(&cc.cw)
	cc.state.Store(stActive)
	cc.req.impl.peer = peerAddr(c)
	cc.req.impl.trust = s.TrustedProxies
	cc.req.impl.trusted = cc.req.impl.peer.IsValid() && inPrefixes(s.TrustedProxies, cc.req.impl.peer)
	_, cc.req.impl.isTLS = c.(*tls.Conn)
	cc.peerText = cc.req.impl.peer.AppendTo(cc.peerText[:0])
	cc.fwdFor = cc.fwdFor[:0]
	if cc.req.impl.peer.Is6() {
		cc.fwdFor = append(cc.fwdFor, `"[`...)
		cc.fwdFor = append(cc.fwdFor, cc.peerText...)
		cc.fwdFor = append(cc.fwdFor, `]"`...)
	} else {
		cc.fwdFor = append(cc.fwdFor, cc.peerText...)
	}
	return cc
}

// peerAddr is the client's IP address (invalid for non-IP transports).
func peerAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Server) release(cc *clientConn) {
	si := &s.impl
	si.mu.Lock()
	delete(si.conns, cc)
	si.mu.Unlock()
	si.nconns.Add(-1)
	cc.c.Close()
	cc.c, cc.rd.c, cc.cw.c = nil, nil, nil
	cc.bw.Reset(nil)
	cc.tunnel = nil
	cc.tried = [2]*Upstream{}
	cc.req.Tried, cc.req.LastErr = nil, nil
	if len(cc.rd.buf) > clientReadBuf {
		cc.rd.buf = make([]byte, clientReadBuf)
	}
	if cap(cc.body) > 64<<10 {
		cc.body = nil
	}
	si.pool.Put(cc)
}

func (s *Server) shutdown(ctx context.Context) error {
	s.setup()
	si := &s.impl
	si.shutting.Store(true)
	si.mu.Lock()
	for l := range si.listeners {
		l.Close()
	}
	si.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		busy := 0
		si.mu.Lock()
		for cc := range si.conns {
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
		si.mu.Unlock()
		if busy == 0 {
			si.stopOnce.Do(func() { close(si.stop) })
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Server) close() error {
	s.setup()
	si := &s.impl
	si.shutting.Store(true)
	si.closed.Store(true)
	si.mu.Lock()
	for l := range si.listeners {
		l.Close()
	}
	for cc := range si.conns {
		cc.state.Store(stClosed)
		cc.c.Close()
		if t := cc.tunnel; t != nil {
			t.impl.uc.c.Close()
		}
	}
	si.mu.Unlock()
	si.stopOnce.Do(func() { close(si.stop) })
	return nil
}
