package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"syscall"
	"time"
)

const (
	upReadBuf  = 16 << 10
	upWriteBuf = 8 << 10
	// maxRespHead bounds an upstream's response head.
	maxRespHead = 64 << 10
)

// Upstream is one backend address with its LIFO stack of idle keep-alive
// connections (LIFO keeps the hottest connections in use and lets the cold
// ones age out at the bottom). It is safe for concurrent use; create with
// NewUpstream.
type Upstream struct {
	name, addr string
	tlsConf    *tls.Config // nil: plain TCP
	maxIdle    int
	sendProxy  bool // a PROXY v2 header opens each connection (proxyhdr.go)

	mu   sync.Mutex
	idle []*upConn
	gen  uint64 // bumped by Close: older connections are not pooled again
}

// upConn is one upstream connection with its own buffers, which stay with
// it while it idles in the pool, so reuse allocates nothing.
type upConn struct {
	c      net.Conn
	rc     syscall.RawConn // plain TCP only: for splice (splice_linux.go)
	rd     connReader
	cw     connWriter
	bw     *bufio.Writer
	gen    uint64
	idleAt int64
	resp   respHead
}

// UpstreamOptions configure an upstream's connection pool. Zero values take
// defaults.
type UpstreamOptions struct {
	MaxIdleConns int // idle keep-alive connections kept [256]
	// TLS, when set, makes the engine dial the upstream over TLS with this
	// server name; empty means plain TCP.
	TLSServerName string
	// TLSConfig, when set, is used (cloned) for TLS to the upstream: custom
	// roots, client certificates. It implies TLS even without
	// TLSServerName; ServerName defaults to TLSServerName, NextProtos to
	// http/1.1.
	TLSConfig *tls.Config
	// SendProxy opens every connection with a PROXY protocol v2 header
	// naming the client, for upstreams that want the client's address at
	// the TCP level. Such a connection carries one client's requests, so
	// it is never pooled: one connection per request.
	SendProxy bool
}

// NewUpstream returns an upstream named name (the name appears in logs,
// never in responses) that dials addr ("host:port").
func NewUpstream(name, addr string, opts UpstreamOptions) *Upstream {
	u := &Upstream{name: name, addr: addr}
	if opts.TLSConfig != nil || opts.TLSServerName != "" {
		c := &tls.Config{}
		if opts.TLSConfig != nil {
			c = opts.TLSConfig.Clone()
		}
		if c.ServerName == "" {
			c.ServerName = opts.TLSServerName
		}
		if len(c.NextProtos) == 0 {
			c.NextProtos = []string{"http/1.1"}
		}
		u.tlsConf = c
	}
	u.sendProxy = opts.SendProxy
	u.maxIdle = opts.MaxIdleConns
	if u.maxIdle <= 0 {
		u.maxIdle = 256
	}
	return u
}

// Name is the upstream's name.
func (u *Upstream) Name() string { return u.name }

// Addr is the upstream's dial address.
func (u *Upstream) Addr() string { return u.addr }

// get pops the most recently used idle connection, closing any that idled
// longer than idleFor.
func (u *Upstream) get(now int64, idleFor time.Duration) *upConn {
	if u.sendProxy {
		return nil
	}
	u.mu.Lock()
	for n := len(u.idle); n > 0; n = len(u.idle) {
		uc := u.idle[n-1]
		u.idle[n-1] = nil
		u.idle = u.idle[:n-1]
		if now-uc.idleAt < int64(idleFor) {
			u.mu.Unlock()
			return uc
		}
		uc.c.Close()
	}
	u.mu.Unlock()
	return nil
}

// put returns a connection after a clean exchange, and reaps connections
// at the bottom of the stack that idled too long.
func (u *Upstream) put(uc *upConn, now int64, idleFor time.Duration) {
	uc.idleAt = now
	u.mu.Lock()
	if uc.gen != u.gen || u.sendProxy {
		u.mu.Unlock()
		uc.c.Close()
		return
	}
	drop := 0
	for drop < len(u.idle) && now-u.idle[drop].idleAt >= int64(idleFor) {
		drop++
	}
	if len(u.idle)-drop >= u.maxIdle {
		drop++
	}
	var old [8]*upConn
	if drop > 0 {
		k := min(drop, len(old))
		copy(old[:], u.idle[:k])
		for _, c := range u.idle[k:drop] {
			c.c.Close()
		}
		n := copy(u.idle, u.idle[drop:])
		clear(u.idle[n:])
		u.idle = u.idle[:n]
	}
	u.idle = append(u.idle, uc)
	u.mu.Unlock()
	for _, c := range old {
		if c != nil {
			c.c.Close()
		}
	}
}

// Close closes the idle pooled connections and makes later exchanges dial
// afresh; exchanges in flight and tunnels are not touched, so an upstream
// removed by a reload finishes what it started.
func (u *Upstream) Close() {
	u.mu.Lock()
	idle := u.idle
	u.idle = nil
	u.gen++
	u.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

// dial opens a new connection (TLS when configured), first sending hdr
// (a PROXY header, or nil).
func (u *Upstream) dial(ctx context.Context, timeout time.Duration, to *Timeouts, clk *clock, hdr []byte) (*upConn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if len(hdr) > 0 {
		c.SetWriteDeadline(time.Now().Add(timeout))
		_, err := c.Write(hdr)
		c.SetWriteDeadline(time.Time{})
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	if u.tlsConf != nil {
		tc := tls.Client(c, u.tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	u.mu.Lock()
	gen := u.gen
	u.mu.Unlock()
	uc := &upConn{c: c, gen: gen, rc: rawConnOf(c)}
	uc.rd = connReader{c: c, buf: make([]byte, upReadBuf), clk: clk}
	uc.cw = connWriter{c: c, d: to.Upstream, clk: clk}
	uc.bw = bufio.NewWriterSize(&uc.cw, upWriteBuf)
	return uc, nil
}
