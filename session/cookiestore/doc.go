// Package cookiestore keeps sessions in the client: a session.ClientStore
// that seals each session (its values, user, id, idle and absolute
// deadlines) into the cookie with XChaCha20-Poly1305, and that can still
// end a session before its cookie expires, on every instance, without a
// store call on the request path.
//
//	store, err := cookiestore.New(ctx, cookiestore.Options{
//		Keys: keys,                      // [][]byte, 32+ random bytes each; the first seals, all open
//		URL:  "redis://127.0.0.1:6379", // or nats://..., or Redis: client / NATS: conn (yours to close)
//	})
//	sessions, err := session.New(session.Config{Store: store}) // the same Manager API as with redisstore
//
// # What it does
//
//   - Sealed, not signed: the cookie is encrypted and authenticated, so a
//     client can neither read nor change it. An expired, forged, truncated,
//     garbled or revoked cookie, or one sealed by a key no longer listed, is
//     a new, empty session, never an error.
//   - Key rotation: Options.Keys lists the keys; the first seals and every
//     one opens. Roll a key out by adding it second everywhere, then first;
//     drop the old one after the session Lifetime.
//   - Size: a browser keeps about 4 KB per cookie. Set, SetUser and Update
//     return session.ErrTooLarge (which matches ErrValueTooLarge) when the
//     sealed session would outgrow Options.MaxSize; a session that outgrows
//     it at save anyway fails the request with 500 and a log line naming
//     the size. Above Options.MaxCookieSize the value is split over several
//     cookies (name, name.1, ...); parts the client no longer needs are
//     expired in the same response.
//   - Revocation without a round trip: Destroy (logout), RenewToken (login)
//     and DestroySession record the session's id, and DestroyAllForUser a
//     per-user "not before" time, in a shared store (Redis or NATS) until
//     the cookies they name would have expired anyway. Every instance holds
//     all of them in memory, loaded at start and kept current by Pub/Sub
//     (Redis) or a bucket watch (NATS), so opening a cookie costs no store
//     call. A logout costs one.
//
// # How late a logout can take effect elsewhere
//
// Every Options.PollInterval (default 0.5 s) an instance confirms, with one
// small store call off the request path, that it holds every revocation
// the shared store had at that moment, reading any it missed straight from
// the store's log. The bound: a revocation committed at time t is refused
// by every instance for every request from t + MaxLag on (default 5 s),
// because a request that finds the last confirmation older than MaxLag
// either gets one on demand (one round trip, only while the feed is up and
// merely late, as when the poller is starved of CPU) or, with the feed
// down, meets Options.FeedDown: FailClosed (the default: the Manager's
// ErrorHandler, 503 with Retry-After) or Accept (served against the
// revocations known so far, with a warning logged at most every 10 s).
// The instance that handled the logout refuses the cookie at once. In
// practice Pub/Sub and the watch deliver in well under a millisecond on a
// LAN (BENCHMARKS.md, "Cookie sessions"). A subscription lost to a
// reconnect is re-established and the gap read from the log before the
// instance counts itself in sync again.
//
// # Compared with the server-side stores
//
// | property | memstore | redisstore | natsstore | dynamostore | cookiestore |
// |---|---|---|---|---|---|
// | store round trips: read / write / login | 0 / 0 / 0 | 1 (0 near cache) / 1 / 2 | 1 (0 near cache) / 2 (1 cached) / 4 | 1 / 1 (2 for Update) / 3 | 0 / 0 / 1 (logout 1) |
// | size limit | memory (LRU bound) | 64 KiB per value (MaxValueSize), 512 MB per hash | 1 MiB per session (max message) | 400 KB per session (item) | MaxSize, 3800 B by default; up to 32 cookies, but every request carries it all |
// | bytes added to each request | token cookie, ~60 B | same | same | same | the whole session: ~150 B with a name and a small cart, +4/3 per byte of values; ~220 B back on each write |
// | a logout elsewhere takes effect | at once (one process) | at once (near cache: invalidation, ms) | at once (near cache: watch, ms) | at once | within MaxLag (5 s), or fail closed; measured p50 0.1 ms, p99 < 10 ms |
// | concurrent updates of one session | no loss (per-key writes, CAS Update) | no loss | no loss | no loss | lost: each request answers with its own cookie and the browser keeps the last |
// | survives the loss of an instance | no (sticky only) | yes | yes | yes | yes: the state is in the browser |
// | SessionsOfUser / DestroyAllForUser | yes / count | yes / count | yes / count | yes / count | ErrNotSupported / ends all, count unknown (-1) |
// | a write after the response started | written through | written through | written through | written through | ErrResponseStarted (the cookie has gone) |
// | what the server keeps | every session | every session | every session | every session | live revocations only |
//
// The loss under concurrency is structural, not a bug: two tabs that add
// to a cart at the same moment each send the cookie they have, each get
// back a cookie with one more item, and the browser keeps whichever
// arrives last. sessiontest records it as the LosesConcurrentWrites
// limitation and measures it on every run: 200 concurrent Updates from one
// cookie keep 1; two tabs each adding 25 items one after another, at the
// same time, lose 25 of the 50 (BENCHMARKS.md). Use a server-side store
// where that matters.
//
// # The shared store
//
// Redis: a sorted set of live revocations (the state a starting instance
// loads), a stream capped at about 10,000 entries (the log an instance
// catches up from), a Pub/Sub channel carrying each revocation with the log
// id of the one before it (so a receiver notices a lost message and reads
// the log at once), and an epoch key that changes only if Redis lost its
// data (then instances log an error and keep what they hold). One Lua script
// per revocation; keys share a hash tag for Redis Cluster; no KEYS or SCAN.
// NATS: a JetStream key-value bucket, one entry per revocation with a
// per-message TTL at its end, watched by every instance; a reconnect gets a
// fresh watch at once. Either way the server holds only revocations that
// can still matter, and each instance about as many in memory (roughly 100
// bytes each). Redis 7 or later (SET NX GET, XINFO first-entry); NATS
// 2.11 or later (per-message TTL).
//
// Reconnects: publishing a revocation, and reading the set, the log or the
// bucket's state, is repeated on a fresh connection when the connection
// died under it (a restarted server), within the call's deadline: a
// revocation applied twice is the same revocation, so every call is safe
// to repeat, and the first logout after a restart succeeds.
//
// Clocks: expiry and DestroyAllForUser compare times written by different
// instances (a session's issue time is in its id, the "not before" is the
// revoking instance's clock), so instances need synchronised clocks (NTP):
// a clock behind by d lets a session issued in the d before a "log out
// everywhere" survive it; one ahead logs out a login made within d after.
// Revocations are kept a minute past their end to absorb such skew.
package cookiestore
