package lb

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

// Options are what a Balancer needs besides its Config.
type Options struct {
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Reload returns the config that POST /api/reload applies, typically
	// by re-reading the config file. Nil makes the endpoint answer 501.
	Reload func() (*Config, error)
	// Tick is how often drain, ejection and slow start are re-evaluated
	// [250ms]. Tests lower it.
	Tick time.Duration
	// Policy, when set, picks the backend for users no sticky cookie pins,
	// in place of the built-in policy the config names (policy.name is
	// then not used). Pick's key is what policy.key names, the client IP
	// by default; policy.factor still bounds sticky spill. The same Policy
	// serves across reloads; it must be safe for concurrent use.
	Policy Policy
	// TLS, when set, makes Serve terminate TLS on the connections it
	// accepts (after the PROXY protocol header, when that is on). Its
	// NextProtos decides HTTP/2: Config.ServerTLS offers h2 and http/1.1.
	TLS *tls.Config
}

// Balancer is an HTTP and WebSocket load balancer: it decides which backend
// serves each request (policy, sticky cookie, health, drain) and leaves
// the HTTP/1.1 work to the internal proxy engine. Create with New, serve
// with Serve, stop with Shutdown.
type Balancer struct {
	log  *slog.Logger
	opts Options
	m    *metrics
	// ctx ends with Close; it stops health checks, the maintenance loop
	// and tunnel closers, all counted in wg.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Routing (route.go) reads the view (view.go) through one atomic
	// pointer and takes no lock; a reload (reload.go) or an admin
	// operation (operations.go) builds a new view and swaps it in under mu.
	view atomic.Pointer[view]
	mu   sync.Mutex
	// cands recycles candidate lists: the slice goes through the Policy
	// interface, so a stack array would escape and allocate per request.
	cands sync.Pool

	// The proxy engine reads its settings once, so a reload that changes
	// them starts a new engine (a generation) on the same listeners and
	// shuts the old one down gracefully (serve.go).
	cur     atomic.Pointer[proxy.Server]
	srvMu   sync.Mutex // guards gens, lns and pending
	gens    []*proxy.Server
	lns     map[net.Listener]struct{}
	pending map[net.Conn]struct{} // reading a PROXY header (accept.go)
	closing atomic.Bool           // Shutdown or Close began (shutdown.go)

	reloadMu sync.Mutex // one Apply at a time

	lastPrune time.Time // maintain's last sweep of pinned-user maps

	disc discovery // DNS discovery sources (discovery.go)
}

// New builds a Balancer from cfg: it validates cfg, fills in its defaults
// (ApplyDefaults) and keeps it, so cfg must not change afterwards. When
// sticky cookies are on and no secret is configured, a random one is
// generated and a warning logged: it neither survives a restart nor is
// shared by a fleet.
func New(cfg *Config, opts Options) (*Balancer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.ApplyDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Tick <= 0 {
		opts.Tick = 250 * time.Millisecond
	}
	bl := &Balancer{log: opts.Logger, opts: opts}
	bl.cands.New = func() any { s := make([]*Backend, 0, 16); return &s }
	bl.ctx, bl.cancel = context.WithCancel(context.Background())
	bl.m = newMetrics(bl)
	fresh := bl.syncSources(cfg)
	v, err := bl.buildView(bl.expand(cfg), nil)
	if err != nil {
		bl.cancel()
		return nil, err
	}
	bl.install(v, nil)
	bl.startSources(fresh)
	for _, b := range v.backends {
		bl.startHealth(b, cfg.Health.Active)
	}
	bl.lns = map[net.Listener]struct{}{}
	bl.pending = map[net.Conn]struct{}{}
	g := bl.newGen(cfg)
	bl.gens = []*proxy.Server{g}
	bl.cur.Store(g)
	bl.wg.Add(1)
	go bl.maintainLoop()
	return bl, nil
}

// newBackend makes bc's backend, whose outcomes and tunnels come back to
// bl; install gives it its metrics when it goes live.
func (bl *Balancer) newBackend(bc BackendConfig, u *url.URL) *Backend {
	b := newBackend(bc.Name, u, bc.Weight, bc.SendProxy)
	b.source = bc.source
	if bc.tlsName != "" {
		b.tlsName = bc.tlsName
		b.up = proxy.NewUpstream(bc.Name, u.Host, proxy.UpstreamOptions{TLSServerName: bc.tlsName, SendProxy: bc.SendProxy})
	}
	b.done = func(o proxy.Outcome) { bl.done(b, o) }
	b.onTunnel = func(t *proxy.Tunnel) { bl.trackTunnel(b, t) }
	return b
}
