package session

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Manager loads and saves sessions for HTTP handlers. It is safe for
// concurrent use; create one per application and share it.
type Manager struct {
	cfg Config
	// Exactly one of store and client is set: where the sessions live.
	store   Store
	client  ClientStore
	fresh   FreshLoader // store, when it has a cache that may lag
	updates keyedLocks  // serializes Updates of one session on this instance
}

// keyedLocks is a set of per-key locks that exist only while used.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	ch   chan struct{} // a token: held by whoever holds the lock
	refs int
}

// lock waits for key's lock or ctx's end, and returns the unlock.
func (k *keyedLocks) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// New returns a Manager for cfg, or an error naming the invalid field.
func New(cfg Config) (*Manager, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: c}
	switch b := c.Store.(type) {
	case ClientStore:
		m.client = b
	case Store:
		m.store = b
	default:
		return nil, fmt.Errorf("session: Config.Store is a %T, want a session.Store or a session.ClientStore", c.Store)
	}
	if f, ok := m.store.(FreshLoader); ok && f.Cached() {
		m.fresh = f
	}
	if n, ok := m.store.(ExpiryNotifier); ok && c.OnExpire != nil {
		n.NotifyExpired(func(id string, r *Record) { m.hook(c.OnExpire, context.Background(), id, r) })
	}
	return m, nil
}

// ErrUnavailable wraps every error caused by the store failing to answer
// (as opposed to a conflict or a bad value), so handlers and error hooks
// can tell an outage apart.
var ErrUnavailable = errors.New("session: store unavailable")

// ErrNoSession is returned by the session functions when the context does
// not come from a request served by Manager.Handler.
var ErrNoSession = errors.New("session: no session in context (is the handler wrapped by Manager.Handler?)")

type ctxKey struct{}

// Handler wraps next so that it can use the session functions with the
// request's context. The session is loaded on first use, never for a
// request that does not use it, and saved just before the first byte of the
// response (WriteHeader, Write, Flush or Hijack) or when next returns,
// whichever comes first. If loading or saving fails, the client gets the
// ErrorHandler's answer instead of next's.
func (m *Manager) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := &state{m: m, r: r}
		if m.client != nil {
			s.readClient(r)
		} else {
			s.readToken(r)
		}
		ctx := context.WithValue(r.Context(), ctxKey{}, s)
		r = r.WithContext(ctx)
		s.r = r
		rw := &responseWriter{ResponseWriter: w, s: s}
		next.ServeHTTP(rw, r)
		if !rw.wroteHeader {
			// Nothing was written: save now and send the implicit 200
			// (or the error answer).
			rw.WriteHeader(http.StatusOK)
		}
	})
}

func (s *state) readToken(r *http.Request) {
	cfg := &s.m.cfg
	if cfg.Header != "" {
		if v := r.Header.Get(cfg.Header); v != "" {
			s.viaHeader = true
			if id, tok, ver, ok := parseCookie(v); ok {
				s.token, s.id, s.minVersion = tok, id, ver
			}
			return
		}
	}
	for _, c := range r.CookiesNamed(cfg.Cookie.Name) {
		if id, tok, ver, ok := parseCookie(c.Value); ok {
			s.token, s.id, s.minVersion = tok, id, ver
			return
		}
	}
}

// responseWriter saves the session before the first byte goes out. It
// implements Flush, FlushError and Hijack itself (each saves first) and
// exposes the wrapped writer through Unwrap, so http.ResponseController
// and WebSocket upgraders reach the connection's other capabilities.
type responseWriter struct {
	http.ResponseWriter
	s           *state
	wroteHeader bool
	failed      error // the save failed and the error answer went out instead
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational responses (103 Early Hints) precede the real
		// header; the session is saved before the final one.
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wroteHeader = true
	if err := w.s.save(w.ResponseWriter.Header()); err != nil {
		w.fail(err)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

// fail sends the ErrorHandler's answer in place of the handler's response,
// dropping the headers the handler had set for it (a Content-Type for an
// event stream, cookies of its own) so they do not leak into the error.
func (w *responseWriter) fail(err error) {
	w.failed = err
	clear(w.ResponseWriter.Header())
	w.s.m.cfg.ErrorHandler(w.ResponseWriter, w.s.r, err)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed != nil {
		return 0, w.failed
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is what http.ResponseController.Flush calls.
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed != nil {
		return w.failed
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack saves the session, then hands over the connection, so a WebSocket
// upgrade keeps the session's changes.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.wroteHeader {
		if err := w.s.save(w.ResponseWriter.Header()); err != nil {
			w.wroteHeader = true
			w.fail(err)
			return nil, nil, err
		}
	}
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.wroteHeader = true // the connection is the handler's now
	}
	return c, brw, err
}

// storeCtx bounds one store call by Config.StoreTimeout.
func (m *Manager) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.cfg.StoreTimeout)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// load reads a record from the Store, through the cache only when the cache
// is at least as new as minVersion.
func (m *Manager) load(ctx context.Context, id string, minVersion uint64) (*Record, error) {
	ctx, cancel := m.storeCtx(ctx)
	defer cancel()
	if m.fresh != nil && minVersion > 0 {
		return m.fresh.LoadAtLeast(ctx, id, minVersion)
	}
	return m.store.Load(ctx, id)
}

// commit writes c to session id, whose current record (when loaded) is
// cur. With a ClientStore the request's copy is the session, so the change
// is only applied to it; the cookie carries it out at save.
func (m *Manager) commit(ctx context.Context, id string, cur *Record, c Change) (uint64, error) {
	if m.client != nil {
		next, err := c.Apply(cur)
		if err != nil {
			return 0, err
		}
		return next.Version, nil
	}
	ctx, cancel := m.storeCtx(ctx)
	defer cancel()
	return m.store.Commit(ctx, id, c)
}

// end ends session id for good (logout, rotation) and returns the record it
// held: the Store's tombstone, or a ClientStore's revocation of every copy
// of the cookie, cur being what this request's copy held.
func (m *Manager) end(ctx context.Context, id string, cur *Record) (*Record, error) {
	ctx, cancel := m.storeCtx(ctx)
	defer cancel()
	if m.client != nil {
		return cur, m.client.Revoke(ctx, id, m.revokeUntil(cur))
	}
	return m.store.Delete(ctx, id)
}

// newToken mints a new session: a token and the Store id derived from it,
// or a ClientStore's id (the cookie then carries the session, not a token).
func (m *Manager) newToken() (token, id string) {
	if m.client != nil {
		return "", m.client.NewID()
	}
	return newToken()
}

func (m *Manager) hook(f func(context.Context, Event), ctx context.Context, id string, r *Record) {
	if f == nil {
		return
	}
	e := Event{ID: id}
	if r != nil {
		e.UserID, e.Created = r.UserID, r.Created
	}
	f(ctx, e)
}

// Info describes one of a user's sessions.
type Info struct {
	// ID identifies the session to DestroySession; it is the store id, a
	// hash of the token, and cannot be used as a token.
	ID           string
	UserID       string
	Created      time.Time
	IdleDeadline time.Time
	Deadline     time.Time
}

// SessionsOfUser lists the live sessions bound to userID with SetUser (one
// per device or browser), from the store's per-user index: it never scans
// the keyspace. A ClientStore cannot list the cookies its clients hold:
// ErrNotSupported.
func (m *Manager) SessionsOfUser(ctx context.Context, userID string) ([]Info, error) {
	if userID == "" {
		return nil, nil
	}
	sctx, cancel := m.storeCtx(ctx)
	ids, err := m.cfg.Store.UserSessions(sctx, userID)
	cancel()
	if errors.Is(err, ErrNotSupported) {
		return nil, err
	}
	if err != nil {
		return nil, unavailable("user sessions", err)
	}
	var out []Info
	now := time.Now()
	for _, id := range ids {
		sctx, cancel := m.storeCtx(ctx)
		rec, err := m.store.Load(sctx, id)
		cancel()
		if err != nil {
			return nil, unavailable("load", err)
		}
		if rec == nil || rec.UserID != userID || !now.Before(rec.ExpiresAt()) {
			continue
		}
		out = append(out, Info{ID: id, UserID: rec.UserID, Created: rec.Created, IdleDeadline: rec.IdleDeadline, Deadline: rec.Deadline})
	}
	return out, nil
}

// DestroySession ends the session with the given id (Info.ID or Event.ID),
// such as one device a user chose to log out. Ending a session that no
// longer exists is not an error.
func (m *Manager) DestroySession(ctx context.Context, id string) error {
	rec, err := m.end(ctx, id, nil)
	if err != nil {
		return unavailable("delete", err)
	}
	if rec != nil || m.client != nil {
		m.hook(m.cfg.OnDestroy, ctx, id, rec)
	}
	return nil
}

// DestroyAllForUser ends every session bound to userID ("log out
// everywhere") and returns how many it ended. Requests already in flight
// on those sessions cannot write them back. With a ClientStore it ends
// every session of the user issued before now, without knowing how many
// there were (it returns -1) and without OnDestroy for each.
func (m *Manager) DestroyAllForUser(ctx context.Context, userID string) (int, error) {
	if m.client != nil {
		if userID == "" {
			return 0, nil
		}
		sctx, cancel := m.storeCtx(ctx)
		defer cancel()
		now := time.Now()
		if err := m.client.RevokeUser(sctx, userID, now, now.Add(m.cfg.Lifetime)); err != nil {
			return 0, unavailable("revoke user", err)
		}
		return -1, nil
	}
	infos, err := m.SessionsOfUser(ctx, userID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, in := range infos {
		if err := m.DestroySession(ctx, in.ID); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func itoa(n int) string { return strconv.Itoa(n) }
