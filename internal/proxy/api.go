// Package proxy is the HTTP/1.1 reverse-proxy engine under unstuck lb.
//
// It keeps net/http off the per-request path: a goroutine per client
// connection with pooled buffers, a strict parser over byte slices, and a
// LIFO pool of keep-alive upstream connections (one exchange at a time, one
// retry when a reused idle connection turns out dead). Which upstream serves
// a request is not its business: the Route hook decides, so package lb
// owns policies, stickiness, health and drain, and this package owns
// framing, timeouts, limits, retries and WebSocket tunnels.
//
// CONTRACT (shared by the lb and proxy developers; change only together):
// the exported names in this file.
//
// Behaviour worth knowing:
//   - Server fields are read once, at the first Serve; change them by
//     starting a new Server.
//   - The parser refuses, with a 4xx and a closed connection: both
//     Content-Length and Transfer-Encoding, differing Content-Lengths, any
//     Transfer-Encoding but a single "chunked" (501 for other codings),
//     bad chunk framing, obs-fold, bare LF or CR, invalid field names or
//     values, a missing, duplicate or invalid Host in HTTP/1.1, CONNECT;
//     heads over MaxHeaderBytes (or 200 fields) answer 431.
//   - Bodies are re-framed, never passed through: chunk extensions are
//     dropped, trailers forwarded (minus framing and routing fields).
//   - Expect: 100-continue is answered by the engine when it starts reading
//     the body (as nginx does) and is not forwarded.
//   - Retries: a failed dial is retried on another upstream for any
//     request; a failure before any response byte is retried for
//     idempotent methods whose body (if any) was buffered whole (at most
//     RetryBodyBytes); a timeout waiting for the head is never retried
//     (504). Separately, a pooled connection found dead at once (nothing
//     read) is replaced by a fresh dial to the same upstream, invisibly to
//     Route, when the body is buffered.
//   - HTTP/1.0 clients get Connection: close; a response without framing
//     is sent chunked to HTTP/1.1 clients so their connection survives.
//   - A request body that is not buffered is streamed before the response
//     is read (half duplex); if the upstream stops reading and answered
//     early, that answer is relayed and both connections closed.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// Server accepts client connections and forwards each request to the
// upstream that Route picks. The zero value is not usable: Route is required.
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

	// impl is the running state; the fields above must not change after
	// the first Serve.
	impl serverImpl
}

// Limits bound client input. Zero means the default in brackets.
type Limits struct {
	MaxHeaderBytes int   // request line plus headers [64 KiB]; more answers 431
	MaxBodyBytes   int64 // request body; 0 means no limit; more answers 413
	MaxConns       int   // concurrent client connections [10000]; more are closed at accept
	// RetryBodyBytes is the largest request body buffered so that a
	// non-idempotent or body-carrying request may be retried [64 KiB].
	RetryBodyBytes int
	// IdempotentMethods are retried once on another upstream when they
	// failed before any response byte [GET, HEAD, OPTIONS, TRACE, PUT, DELETE].
	IdempotentMethods []string
}

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

// Request is a read-only view of a request head, valid only during the
// Route call (its byte slices point into a reused buffer: copy to keep).
type Request struct {
	// Attempt is 0 for the first try and 1 for the retry.
	Attempt int
	// Tried lists the upstreams of earlier attempts of this request.
	Tried []*Upstream
	// LastErr is the previous attempt's error, for a retry.
	LastErr error
	// unexported fields: the parsed head, client address, TLS state.
	impl requestImpl
}

// Method returns the request method, e.g. "GET".
func (r *Request) Method() []byte { return r.impl.method() }

// Path returns the request target as sent (origin form), e.g. "/a?b=c".
func (r *Request) Path() []byte { return r.impl.path() }

// Header returns the first value of the named header (case-insensitive),
// or nil.
func (r *Request) Header(name string) []byte { return r.impl.header(name) }

// Cookie returns the value of the named cookie from the Cookie header(s),
// or nil. It does not allocate.
func (r *Request) Cookie(name string) []byte { return r.impl.cookie(name) }

// ClientIP is the client's address: the peer's, or the one a trusted proxy
// reported in X-Forwarded-For / Forwarded.
func (r *Request) ClientIP() netip.Addr { return r.impl.clientIP() }

// Secure reports whether the client connection is TLS, or a trusted proxy
// said the original scheme was https.
func (r *Request) Secure() bool { return r.impl.secure() }

// IsWebSocket reports whether this is a WebSocket upgrade request.
func (r *Request) IsWebSocket() bool { return r.impl.isWebSocket() }

// Upstream is one backend address with its pool of keep-alive connections.
// It is safe for concurrent use; create with NewUpstream.
type Upstream struct {
	impl upstreamImpl
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
}

// NewUpstream returns an upstream named name (the name appears in logs,
// never in responses) that dials addr ("host:port").
func NewUpstream(name, addr string, opts UpstreamOptions) *Upstream {
	u := &Upstream{}
	u.impl.init(name, addr, opts)
	return u
}

// Name is the upstream's name.
func (u *Upstream) Name() string { return u.impl.name }

// Addr is the upstream's dial address.
func (u *Upstream) Addr() string { return u.impl.addr }

// Close closes the idle pooled connections and makes later exchanges dial
// afresh; exchanges in flight and tunnels are not touched, so an upstream
// removed by a reload finishes what it started.
func (u *Upstream) Close() { u.impl.close() }

// Tunnel is an open WebSocket connection relayed to an upstream.
type Tunnel struct {
	impl tunnelImpl
}

// Upstream is the upstream the tunnel is connected to.
func (t *Tunnel) Upstream() *Upstream { return t.impl.upstream }

// Close sends the client a WebSocket close frame with code and reason (at a
// frame boundary of the upstream-to-client stream, so the frame is never
// spliced into another), then closes both sides. Codes: 1001 going away
// (shutdown), 1012 service restart (drain). Safe to call more than once and
// concurrently.
func (t *Tunnel) Close(code uint16, reason string) { t.impl.closeWith(code, reason) }

// Closed is closed when the tunnel has ended, for whatever reason.
func (t *Tunnel) Closed() <-chan struct{} { return t.impl.done }

// Errors the engine reports in Outcome.Err or expects from Route.
var (
	// ErrNoUpstream from Route answers 503 with Retry-After.
	ErrNoUpstream = errors.New("proxy: no upstream available")
	// ErrUpstreamTimeout marks an upstream that did not answer in time (504).
	ErrUpstreamTimeout = errors.New("proxy: upstream timed out")
)

// Serve accepts connections on l until Shutdown or Close; it returns
// net.ErrClosed after either. l may be a TLS listener (ALPN http/1.1).
func (s *Server) Serve(l net.Listener) error { return s.serve(l) }

// Shutdown stops accepting, closes idle client connections, and waits for
// in-flight exchanges to finish or ctx to end. Tunnels are left to the
// router, which closes them with 1001 spread over its grace period.
func (s *Server) Shutdown(ctx context.Context) error { return s.shutdown(ctx) }

// Close closes every listener and connection at once, tunnels included.
func (s *Server) Close() error { return s.close() }
