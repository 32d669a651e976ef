package lb

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

// newGen makes an engine generation for cfg. The proxy engine reads its
// settings once, so a reload that changes them starts a new generation:
// Serve's accept loop (one per listener) gives new connections to its
// ServeConn, and the old one is shut down gracefully (requests in flight
// finish, idle keep-alive connections close so their clients reconnect to
// the new one). WebSocket tunnels are the balancer's, not the engine's,
// and outlive their generation.
func (bl *Balancer) newGen(cfg *Config) *proxy.Server {
	trusted := make([]netip.Prefix, 0, len(cfg.TrustedProxies))
	for _, s := range cfg.TrustedProxies {
		p, _ := parsePrefix(s) // validated
		trusted = append(trusted, p)
	}
	srv := &proxy.Server{
		Route: bl.routeProxy,
		Limits: proxy.Limits{
			MaxHeaderBytes: cfg.Limits.MaxHeaderBytes,
			MaxBodyBytes:   cfg.Limits.MaxBodyBytes,
			MaxConns:       cfg.Limits.MaxConns,
			RetryBodyBytes: cfg.Retries.BodyBytes,
			RetryMethods:   slices.Clone(cfg.Retries.Methods),
		},
		Timeouts: proxy.Timeouts{
			ClientHeader: cfg.Timeouts.ClientHeader,
			ClientIdle:   cfg.Timeouts.ClientIdle,
			ClientWrite:  cfg.Timeouts.ClientWrite,
			Dial:         cfg.Timeouts.Dial,
			Upstream:     cfg.Timeouts.Upstream,
			UpstreamIdle: cfg.Timeouts.UpstreamIdle,
			TunnelIdle:   cfg.WebSocket.Idle,
			TunnelMax:    cfg.WebSocket.MaxLifetime,
		},
		TrustedProxies: trusted,
		Logger:         bl.log,
		HTTP2: proxy.HTTP2Options{
			Cleartext:            cfg.HTTP2.H2C,
			MaxConcurrentStreams: cfg.HTTP2.MaxConcurrentStreams,
			CountError:           bl.countH2Error,
		},
	}
	if cfg.Log.Access {
		acc := bl.log.With("log", "access")
		srv.AccessLog = func(e proxy.AccessEntry) {
			acc.LogAttrs(context.Background(), slog.LevelInfo, "request",
				slog.String("client", e.Client.String()), slog.String("method", e.Method),
				slog.String("target", e.Target), slog.Int("status", e.Status),
				slog.String("backend", e.Upstream), slog.Int64("bytes", e.Bytes),
				slog.Duration("duration", e.Duration))
		}
	}
	return srv
}

// sameEngine reports whether a and b configure the engine alike.
func sameEngine(a, b *Config) bool {
	return a.Timeouts == b.Timeouts && a.Limits == b.Limits &&
		slices.Equal(a.TrustedProxies, b.TrustedProxies) &&
		a.WebSocket.Idle == b.WebSocket.Idle && a.WebSocket.MaxLifetime == b.WebSocket.MaxLifetime &&
		slices.Equal(a.Retries.Methods, b.Retries.Methods) && a.Retries.BodyBytes == b.Retries.BodyBytes &&
		a.Log.Access == b.Log.Access &&
		a.HTTP2.H2C == b.HTTP2.H2C && a.HTTP2.MaxConcurrentStreams == b.HTTP2.MaxConcurrentStreams
}

// swapServer starts a generation for cfg and retires the current one.
func (bl *Balancer) swapServer(cfg *Config) {
	ng := bl.newGen(cfg)
	bl.srvMu.Lock()
	if bl.closing.Load() {
		bl.srvMu.Unlock()
		return
	}
	bl.gens = append(bl.gens, ng)
	old := bl.cur.Swap(ng)
	bl.srvMu.Unlock()
	bl.log.Info("engine settings changed: new connections go to a new engine; the old one finishes its requests")
	bl.wg.Add(1)
	go func() {
		defer bl.wg.Done()
		ctx, cancel := context.WithTimeout(bl.ctx, cfg.Shutdown.Grace)
		defer cancel()
		if err := old.Shutdown(ctx); err != nil {
			return // still busy at the deadline: Close at the end takes it
		}
		bl.srvMu.Lock()
		bl.gens = slices.DeleteFunc(bl.gens, func(g *proxy.Server) bool { return g == old })
		bl.srvMu.Unlock()
	}()
}

// Serve accepts connections on l and proxies them until Shutdown or Close;
// it then returns net.ErrClosed. Serve may be called for several
// listeners. For TLS, set Options.TLS (then a PROXY protocol header can
// precede the handshake) or pass a TLS listener; either way, HTTP/2 is
// served to clients that negotiate h2 (see Config.ALPN).
func (bl *Balancer) Serve(l net.Listener) error {
	bl.srvMu.Lock()
	if bl.closing.Load() {
		bl.srvMu.Unlock()
		l.Close()
		return net.ErrClosed
	}
	bl.lns[l] = struct{}{}
	bl.srvMu.Unlock()
	defer func() {
		bl.srvMu.Lock()
		delete(bl.lns, l)
		bl.srvMu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if bl.closing.Load() {
				return net.ErrClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() { // EMFILE and the like
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
				case <-bl.ctx.Done():
				}
				continue
			}
			return err
		}
		backoff = 0
		bl.accept(c)
	}
}

// hand gives a new connection to the current engine generation, or to its
// successor if it is being retired at that moment; client is the address
// a PROXY header named (invalid: the peer).
func (bl *Balancer) hand(c net.Conn, client netip.AddrPort) {
	for {
		g := bl.cur.Load()
		if g.ServeConnFrom(c, client) == nil {
			return
		}
		if bl.closing.Load() || bl.cur.Load() == g {
			c.Close()
			return
		}
	}
}

func (bl *Balancer) allGens() []*proxy.Server {
	bl.srvMu.Lock()
	defer bl.srvMu.Unlock()
	return slices.Clone(bl.gens)
}

func (bl *Balancer) closeListeners() {
	bl.srvMu.Lock()
	defer bl.srvMu.Unlock()
	for l := range bl.lns {
		l.Close()
	}
	for c := range bl.pending {
		c.Close()
	}
	clear(bl.pending)
}

// shutdownServers stops accepting and shuts every generation down.
func (bl *Balancer) shutdownServers(ctx context.Context) error {
	bl.closeListeners()
	gens := bl.allGens()
	errs := make([]error, len(gens))
	var wg sync.WaitGroup
	for i, g := range gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.Shutdown(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (bl *Balancer) closeServers() error {
	bl.closeListeners()
	var errs []error
	for _, g := range bl.allGens() {
		errs = append(errs, g.Close())
	}
	return errors.Join(errs...)
}
