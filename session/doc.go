// Package session keeps HTTP sessions in a shared store, so that any
// instance of an application can serve any request, with nothing lost when
// requests of one user run at the same time on different instances.
//
// A Manager wraps handlers; handlers read and write the session through
// the request's context:
//
//	store, err := redisstore.New(ctx, redisstore.Options{URL: "redis://127.0.0.1:6379", NearCache: true})
//	...
//	sessions, err := session.New(session.Config{Store: store, IdleTimeout: 30 * time.Minute})
//	...
//	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
//		// Atomic read-modify-write: two tabs adding at once both count.
//		n, err := session.Update(r.Context(), "cart", func(n int, _ bool) (int, error) { return n + 1, nil })
//		...
//	})
//	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
//		// ... check the password, then:
//		session.RenewToken(r.Context())       // new token; the old one is dead at once
//		session.SetUser(r.Context(), userID)  // for SessionsOfUser, DestroyAllForUser
//	})
//	http.ListenAndServe(addr, sessions.Handler(mux))
//
// # What it guarantees
//
//   - Per-key writes. A request writes only the keys it changed, so two
//     requests that change different keys both keep their change; Set is
//     last-writer-wins for its key only, and Update is a compare-and-swap
//     that retries.
//   - Logout sticks. Destroy and RenewToken leave a tombstone in the store;
//     a request still running on the old token cannot write the session
//     back, and its late write is dropped rather than starting a new
//     session in place of the old one.
//   - Lazy and cheap. A request that never touches its session costs no
//     store call; a read costs one load (none with a near cache); a write
//     of a session not read is one blind write; the idle deadline is moved
//     without a write only once Config.TouchAfter of it has passed.
//   - Saved before the first byte. The session is written just before the
//     response header goes out (WriteHeader, Write, Flush, Hijack), so the
//     cookie can still be set; Flush, Hijack and Unwrap keep working for SSE
//     and WebSockets.
//   - Outages fail clearly. Every store call is bounded by
//     Config.StoreTimeout; when the store cannot answer, the client gets
//     503 with Retry-After (Config.ErrorHandler) instead of a page rendered
//     with an empty session, and writes are never dropped silently.
//     An Update queued on its instance behind the same session's earlier
//     Updates for longer than StoreTimeout gets the same 503.
//     Nothing needs restarting when the store is back.
//   - Tokens are 256 bits from crypto/rand; the store key is their
//     SHA-256, so a dump of the store holds no usable token. Garbage,
//     oversized or unknown tokens get a fresh session; a client-chosen
//     token is never adopted (no fixation). The cookie is HttpOnly,
//     SameSite=Lax, and Secure under TLS; API clients may send the token in
//     a header instead (Config.Header).
//
// # Where sessions live
//
// Config.Store takes a Backend of one of two kinds. A Store keeps each
// session on the server and gives the client a random token; stores
// implement the small Store interface and sessiontest.Run is the
// conformance suite they all pass. memstore keeps sessions in the
// process; redisstore uses Redis or Redis Cluster (one hash per session,
// one Lua script per write, optional near cache through client-side
// caching); natsstore uses a JetStream key-value bucket (revisions for
// compare-and-swap, per-message TTL, optional near cache kept fresh by a
// watch); dynamostore uses an Amazon DynamoDB table (one item per session
// written per key by UpdateExpression, conditions for compare-and-swap,
// TTL, an index item per user). All but memstore are built alike:
// New(ctx, Options) with either Options.URL or a ready Options.Client.
//
// A ClientStore keeps the session in the client instead: cookiestore seals
// it into the cookie and keeps on the server only the revocations that
// make logout stick, pushed to every instance so that reading a cookie
// needs no store call. The Manager's API is the same; the guarantees above
// differ where they must (concurrent writes from one client are lost, a
// logout reaches other instances within a stated bound), and the
// cookiestore package documentation compares every backend in one table.
// sessiontest.RunManagersWith runs the end-to-end checks on either kind.
//
// With a near cache, a client always sees its own writes on every instance
// (the cookie carries the session version, see FreshLoader); changes made
// by others, such as DestroyAllForUser, reach other instances' caches
// through the store's invalidation within milliseconds, and at most after
// the cache TTL.
package session
