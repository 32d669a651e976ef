package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
)

// requestImpl is the parsed request head behind Request.
type requestImpl struct {
	m, p  []byte
	peer  netip.Addr
	isTLS bool
	upg   bool
}

func (r *requestImpl) method() []byte            { return r.m }
func (r *requestImpl) path() []byte              { return r.p }
func (r *requestImpl) header(name string) []byte { return nil }
func (r *requestImpl) cookie(name string) []byte { return nil }
func (r *requestImpl) clientIP() netip.Addr      { return r.peer }
func (r *requestImpl) secure() bool              { return r.isTLS }
func (r *requestImpl) isWebSocket() bool         { return r.upg }

type upstreamImpl struct {
	name, addr string
	mu         sync.Mutex
}

func (u *upstreamImpl) init(name, addr string, opts UpstreamOptions) { u.name, u.addr = name, addr }
func (u *upstreamImpl) close()                                       {}

type tunnelImpl struct {
	upstream *Upstream
	done     chan struct{}
}

func (t *tunnelImpl) closeWith(code uint16, reason string) {}

func (s *Server) serve(l net.Listener) error         { return errors.New("proxy: not implemented yet") }
func (s *Server) shutdown(ctx context.Context) error { return nil }
func (s *Server) close() error                       { return nil }
