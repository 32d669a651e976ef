// Package proxy is the HTTP/1.1 reverse-proxy engine under unstuck lb.
//
// It keeps net/http off the per-request path: a goroutine per busy client
// connection with buffers borrowed from pools while bytes are in flight
// (idle.go; after 5 s idle, no goroutine either: park_linux.go), a strict
// parser over byte slices, and a LIFO pool of keep-alive upstream
// connections (one exchange at a time, one retry when a reused idle
// connection turns out dead). Which upstream serves
// a request is not its business: the Route hook decides, so package lb
// owns policies, stickiness, health and drain, and this package owns
// framing, timeouts, limits, retries and WebSocket tunnels.
//
// The entry points are in api.go: a caller accepts connections itself and
// gives each to Server.ServeConn; the engine calls Server.Route once per
// attempt of every request, and reports each attempt's end as an Outcome to
// Target.Done. Request (request.go), Upstream (upstream.go) and Tunnel
// (tunnel.go) are what Route reads, returns and keeps.
//
// Behaviour worth knowing:
//   - Server fields are read once, at the first ServeConn; change them by
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
//     request; a failure before any response byte is retried for the
//     RetryMethods (GET, HEAD and OPTIONS unless configured) when the body
//     (if any) was buffered whole (at most RetryBodyBytes); a timeout
//     waiting for the head is never retried (504). Separately, a pooled connection found dead at once (nothing
//     read) is replaced by a fresh dial to the same upstream, invisibly to
//     Route, when the body is buffered.
//   - HTTP/1.0 clients get Connection: close; a response without framing
//     is sent chunked to HTTP/1.1 clients so their connection survives.
//   - A request body too large to buffer streams upstream while the
//     response is relayed (full duplex), over a pooled connection only
//     when a non-blocking peek finds it open, else a fresh one (a streamed
//     body cannot be replayed if the connection turns out dead); an
//     upstream that answers early (413, 401) has its answer relayed.
//   - Idle keep-alive client connections (plain TCP) hold no buffers
//     (idle.go), and after 5 s idle no goroutine: they are parked in an
//     epoll set and resumed on a new goroutine when bytes come; ClientIdle
//     still ends them (checked about once a second). TLS connections keep
//     their goroutine and buffers.
//   - Content-Length bodies past 32 KiB between plain TCP sockets move by
//     splice(2) (splice_linux.go), both ways, with the same timeouts.
//   - Timeouts between reads: ClientIdle bounds each wait for request body
//     bytes, Upstream each wait for response body bytes (so a silent
//     server-sent-events stream needs heartbeats more often than that).
//     Timeouts of 5 s and more are armed from a coarse clock and may fire
//     up to about 1.5 s early; shorter ones are exact.
//   - Idle pooled upstream connections older than UpstreamIdle are closed
//     when the pool is next used, not by a timer.
//   - HTTP/2 (h2.go): a TLS connection that negotiated h2, or a plain one
//     opening with the preface when HTTP2.Cleartext, is served by
//     x/net/http2; each stream's head is written out in HTTP/1.1 form and
//     parsed by the same parser, so Route, rewriting, retries and the access
//     log are the HTTP/1.1 path's, and the upstream exchange uses the same
//     pools, blocking on the stream's goroutine. 1xx responses and trailers
//     are not relayed; a reset stream closes its upstream connection.
//   - ServeConnFrom takes the client's address from the caller (a PROXY
//     protocol header) instead of the socket's peer.
package proxy
