// Package lb is unstuck's HTTP and WebSocket load balancer, embeddable in
// any Go program; `unstuck lb` is its command.
//
// A Balancer decides, for every request, which backend serves it; the
// internal proxy engine does the HTTP/1.1 work. The decision, in order:
//
//  1. A valid sticky cookie (HMAC-SHA256 over the backend's name, an expiry
//     and a user id; see Signer) pins the user, unless its backend is gone,
//     down, ejected, drained or, with sticky spill, draining or carrying more
//     than c x its share of the in-flight load. Then the user is re-pinned.
//  2. Otherwise the Policy (a built-in one the config names, or the
//     embedder's, see Options.Policy) picks among the backends that take
//     new users: healthy, not ejected, not draining (all non-draining ones
//     in panic mode, when too few are healthy).
//  3. A retry (the engine retries once when it may) avoids the backends
//     already tried and re-pins the cookie.
//
// The balancer keeps no per-user state, so any number of balancers with the
// same secrets and backends send a cookie to the same backend. Config
// changes (Apply) keep the state, in-flight requests and WebSockets of
// backends that stay.
package lb
