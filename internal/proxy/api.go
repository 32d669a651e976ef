package proxy

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves the client connections given to ServeConn, forwarding each
// request to the upstream that Route picks. The zero value is not usable:
// Route is required.
type Server struct {
	// Route picks the upstream for one attempt of a request. It is called
	// once per attempt: for a retry, req.Attempt > 0 and req.Tried lists the
	// upstreams already tried, so the router can avoid them. An error
	// answers the client 503 with Retry-After (ErrNoUpstream) or, for any
	// other error, 502.
	Route func(req *Request) (Target, error)

	// Limits bound what a client may send; zero fields take the defaults
	// documented on Limits.
	Limits Limits
	// Timeouts bound every wait on either side; zero fields take defaults.
	Timeouts Timeouts

	// TrustedProxies lists the peers whose X-Forwarded-For/-Proto/-Host and
	// Forwarded headers are believed. From any other peer those headers are
	// replaced, not appended to.
	TrustedProxies []netip.Prefix

	// Logger receives one line per failed exchange (502/503/504, protocol
	// errors). Nil means slog.Default().
	Logger *slog.Logger

	// AccessLog, when set, is called once per finished exchange.
	AccessLog func(AccessEntry)

	// HTTP2 configures HTTP/2 to clients (h2.go): TLS connections that
	// negotiated h2, and cleartext h2c when enabled.
	HTTP2 HTTP2Options

	// The running state (server.go), set up by the first call to any
	// method; the fields above must not change after it.
	once     sync.Once
	lim      Limits   // Limits with defaults
	to       Timeouts // Timeouts with defaults
	log      *slog.Logger
	retry    [][]byte // lim.RetryMethods
	clk      clock
	mu       sync.Mutex
	conns    map[*clientConn]struct{}
	nconns   atomic.Int64
	shutting atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
	pool     sync.Pool    // *clientConn
	bufs     idleBufs     // client read buffers and writers (idle.go)
	pipes    pipePool     // for splice(2) (splice_linux.go)
	spliced  atomic.Int64 // body bytes moved by splice, for tests
	idler    idler        // parked idle connections (park_linux.go)
	// parkAfter is how long a connection idles before it is parked
	// [defaultParkAfter]; tests shorten it.
	parkAfter time.Duration
	h2        h2state
}

// ServeConn serves c, a new client connection (plain TCP, or a *tls.Conn
// whose handshake has not run yet), on a goroutine of its own, and returns
// at once. The Server owns c from then on, and closes it at once when
// MaxConns connections are open already. After Shutdown or Close it
// returns ErrServerClosed and leaves c to the caller, which may give it
// to another Server.
func (s *Server) ServeConn(c net.Conn) error { return s.ServeConnFrom(c, netip.AddrPort{}) }

// ServeConnFrom is ServeConn for a connection whose client is not its
// socket peer: a PROXY protocol header named client, which the engine
// then uses wherever it would use the peer (X-Forwarded-For, Forwarded,
// Request.ClientIP, TrustedProxies, logs, a PROXY header to upstreams).
// An invalid client means the peer.
func (s *Server) ServeConnFrom(c net.Conn, client netip.AddrPort) error {
	if s.Route == nil {
		return errors.New("proxy: Server.Route is nil")
	}
	s.setup()
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.nconns.Add(1) > int64(s.lim.MaxConns) {
		s.nconns.Add(-1)
		s.mu.Unlock()
		c.Close()
		return nil
	}
	cc := s.newConn(c, client)
	s.conns[cc] = struct{}{}
	s.mu.Unlock()
	go cc.serve()
	return nil
}

// Limits bound client input. Zero means the default in brackets.
type Limits struct {
	MaxHeaderBytes int   // request line plus headers [64 KiB]; more answers 431
	MaxBodyBytes   int64 // request body; 0 means no limit; more answers 413
	MaxConns       int   // concurrent client connections [10000]; more are closed at once
	// RetryBodyBytes is the largest request body buffered so that a
	// request carrying one may be retried [64 KiB].
	RetryBodyBytes int
	// RetryMethods are retried once on another upstream when they failed
	// before any response byte [DefaultRetryMethods].
	RetryMethods []string
}

// DefaultRetryMethods returns the methods retried after a failure past the
// dial when no others are configured: GET, HEAD and OPTIONS, the safe
// ones. PUT and DELETE are idempotent by RFC 9110 but left out: the
// upstream may have acted on the first attempt, and an app that handles a
// repeat badly loses data. Peers are as careful: Caddy retries only GET,
// nginx never POST, LOCK or PATCH. Configure RetryMethods to add more.
func DefaultRetryMethods() []string { return []string{"GET", "HEAD", "OPTIONS"} }

// Timeouts bound waits. Zero means the default in brackets.
type Timeouts struct {
	ClientHeader time.Duration // to read a request's head [10s]; 408 after
	ClientIdle   time.Duration // keep-alive wait for the next request [60s]
	ClientWrite  time.Duration // to write a response chunk to the client [30s]
	Dial         time.Duration // to connect to an upstream [3s]
	Upstream     time.Duration // from request sent to response head [30s]; 504 after
	UpstreamIdle time.Duration // an idle pooled upstream connection is closed after [90s]
	TunnelIdle   time.Duration // a WebSocket tunnel with no traffic either way is closed [10m]
	TunnelMax    time.Duration // a WebSocket tunnel's maximum lifetime; 0 = none
}

// Target is Route's answer for one attempt.
type Target struct {
	// Upstream is where the attempt goes. Required.
	Upstream *Upstream
	// SetCookie, when non-empty, is added to the response as one
	// Set-Cookie header (the full header value).
	SetCookie string
	// Done, when set, is called exactly once when the attempt ends, whatever
	// the outcome, so the router can count in-flight requests and feed
	// passive health checks. For a WebSocket it is called when the upgrade
	// response (101 or an error) has been relayed, not when the tunnel closes.
	Done func(Outcome)
	// OnTunnel, when set, is called after a WebSocket upgrade succeeded
	// (101 relayed), with a handle the router keeps to close the tunnel on
	// drain, reload or shutdown. The tunnel's Closed channel tells when it ends.
	OnTunnel func(*Tunnel)
}

// Outcome is how one attempt ended.
type Outcome struct {
	// Status is the upstream's response status, or 0 if none was received.
	Status int
	// Err is the transport error (dial, write, read, timeout), if any.
	// ErrUpstreamTimeout marks a timeout waiting for the response head.
	Err error
	// Duration is from Route's return to the end of the response body.
	Duration time.Duration
	// Retrying is true when the engine will call Route again for this request.
	Retrying bool
}

// AccessEntry describes one finished exchange for the access log.
type AccessEntry struct {
	Time     time.Time
	Client   netip.Addr
	Method   string
	Target   string
	Status   int
	Upstream string // Upstream.Name(), or "" if none answered
	Bytes    int64  // response body bytes sent to the client
	Duration time.Duration
}

// Errors the engine reports in Outcome.Err or expects from Route.
var (
	// ErrNoUpstream from Route answers 503 with Retry-After.
	ErrNoUpstream = errors.New("proxy: no upstream available")
	// ErrUpstreamTimeout marks an upstream that did not answer in time (504).
	ErrUpstreamTimeout = errors.New("proxy: upstream timed out")
	// ErrServerClosed is ServeConn's answer after Shutdown or Close.
	ErrServerClosed = errors.New("proxy: server closed")
)
