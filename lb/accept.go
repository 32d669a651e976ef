package lb

import (
	"crypto/tls"
	"net"
	"net/netip"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxyproto"
)

// accept readies a connection Serve accepted for the engine: the PROXY
// protocol header first when proxy_protocol is on (on a goroutine of its
// own, so a slow or silent sender never holds up the accept loop), then
// TLS when Options.TLS is set. The engine does the TLS handshake on the
// connection's goroutine.
func (bl *Balancer) accept(c net.Conn) {
	pp := bl.view.Load().cfg.ProxyProtocol
	if !pp.Enabled {
		bl.hand(bl.withTLS(c), netip.AddrPort{})
		return
	}
	if !bl.track(c) {
		c.Close()
		return
	}
	go func() {
		client, ok := bl.readProxyHeader(c, pp)
		if !bl.untrack(c) || !ok {
			c.Close()
			return
		}
		bl.hand(bl.withTLS(c), client)
	}()
}

func (bl *Balancer) withTLS(c net.Conn) net.Conn {
	if bl.opts.TLS == nil {
		return c
	}
	return tls.Server(c, bl.opts.TLS)
}

// readProxyHeader reads c's PROXY header and returns the client it names
// (the peer itself for the sender's own connections: health checks). A
// peer outside proxy_protocol.trusted, or a missing, malformed or late
// header, is refused: ok false, counted and logged.
func (bl *Balancer) readProxyHeader(c net.Conn, pp ProxyProtocolConfig) (client netip.AddrPort, ok bool) {
	count := bl.m.deploy.proxyProto
	peer := connPeer(c)
	trusted := false
	for _, s := range pp.Trusted {
		if p, err := parsePrefix(s); err == nil && p.Contains(peer) { // validated
			trusted = true
			break
		}
	}
	if !trusted {
		count.WithLabelValues("untrusted").Inc()
		bl.log.Warn("connection refused: PROXY protocol accepted only from proxy_protocol.trusted", "peer", peer)
		return netip.AddrPort{}, false
	}
	c.SetReadDeadline(time.Now().Add(pp.Timeout))
	h, err := proxyproto.Read(c)
	if err != nil {
		result := "invalid"
		if ne, isNet := err.(net.Error); isNet && ne.Timeout() {
			result = "timeout"
		}
		count.WithLabelValues(result).Inc()
		bl.log.Warn("connection closed: bad PROXY protocol header", "peer", peer, "result", result, "err", err)
		return netip.AddrPort{}, false
	}
	c.SetReadDeadline(time.Time{})
	if h.Local {
		count.WithLabelValues("local").Inc()
		return netip.AddrPort{}, true // the socket's own
	}
	if h.Version == 1 {
		count.WithLabelValues("v1").Inc()
	} else {
		count.WithLabelValues("v2").Inc()
	}
	return netip.AddrPortFrom(h.Source.Addr().Unmap(), h.Source.Port()), true
}

func connPeer(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap.Addr().Unmap()
}

// track records a connection whose PROXY header is being read, so that
// Close can end the wait; false once the balancer is closing.
func (bl *Balancer) track(c net.Conn) bool {
	bl.srvMu.Lock()
	defer bl.srvMu.Unlock()
	if bl.closing.Load() {
		return false
	}
	bl.pending[c] = struct{}{}
	return true
}

// untrack forgets c; false when Close already closed it.
func (bl *Balancer) untrack(c net.Conn) bool {
	bl.srvMu.Lock()
	defer bl.srvMu.Unlock()
	_, ok := bl.pending[c]
	delete(bl.pending, c)
	return ok
}
