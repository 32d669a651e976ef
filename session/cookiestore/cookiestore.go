package cookiestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/session"
)

// Policy says what Open does with a cookie while the revocation feed is
// behind by more than Options.MaxLag (the shared store is unreachable, or
// this instance lost its subscription and has not caught up yet).
type Policy int

const (
	// FailClosed refuses to decide: the request fails with the Manager's
	// ErrorHandler (503 and Retry-After by default). A revoked cookie is
	// never accepted late. The default.
	FailClosed Policy = iota
	// Accept checks the cookie against the revocations known so far and
	// logs a warning (at most one every 10 seconds): the site stays up,
	// and a cookie revoked during the outage may be accepted until the
	// feed is back.
	Accept
)

func (p Policy) String() string {
	if p == Accept {
		return "accept"
	}
	return "fail-closed"
}

// Options configures a Store. Keys are required; give the revocation
// feed as exactly one of URL, Redis or NATS.
type Options struct {
	// Keys seal and open the cookies: the first seals, every one opens, so
	// a new key is rolled out by putting it second on every instance, then
	// first, then dropping the old one once no cookie it sealed can still
	// be live (the session Lifetime). Each must be at least 32 bytes of
	// random (ParseKeys reads hex or base64 from configuration).
	Keys [][]byte

	// URL names the shared store that carries revocations between
	// instances: redis://, rediss:// (the Store opens and closes the
	// connection), nats:// (likewise), or "memory" for a single process
	// (tests; revocations then reach no other instance).
	URL string
	// Redis is a ready rueidis client (Redis or Cluster) the caller owns.
	Redis rueidis.Client
	// NATS is a ready connection with JetStream the caller owns.
	NATS *nats.Conn

	// Name names the shared data: the Redis key prefix (keys
	// "{Name}:z", "{Name}:log", channel "Name:feed") or the NATS key-value
	// bucket. Default "unstuck_revocations".
	Name string
	// Replicas for a new NATS bucket on a cluster. Default 1.
	Replicas int

	// MaxCookieSize is the longest value one cookie carries. Browsers
	// keep about 4096 bytes per cookie, name and attributes included.
	// Default 3800.
	MaxCookieSize int
	// MaxSize bounds the whole sealed session; above MaxCookieSize it is
	// split over several cookies ("name", "name.1", ...). Seal returns
	// session.ErrTooLarge beyond it. Mind that every request carries all
	// of it, and that many proxies refuse request headers over 8 KiB.
	// Default MaxCookieSize (no splitting).
	MaxSize int

	// MaxLag bounds how late a revocation may take effect on this
	// instance: if it cannot confirm, within MaxLag, that it holds every
	// revocation committed so far, it applies FeedDown. Default 3s.
	MaxLag time.Duration
	// PollInterval is how often the instance confirms it is in sync (one
	// small store call, off the request path), catching up from the
	// shared log when the live feed missed something. Default MaxLag/3.
	PollInterval time.Duration
	// FeedDown is what Open does while the feed is behind. Default
	// FailClosed.
	FeedDown Policy

	// Logger receives feed outages and recoveries. Default slog.Default().
	Logger *slog.Logger
}

// ErrFeedDown is what Open returns (wrapped, with the lag) when the
// revocation feed is behind by more than MaxLag and the policy is
// FailClosed. The Manager answers with its ErrorHandler (503).
var ErrFeedDown = errors.New("cookiestore: revocation feed is behind")

// Store is a session.ClientStore: sessions sealed with
// XChaCha20-Poly1305 into the cookie, revocations shared between instances
// through Redis or NATS and held in memory by each.
type Store struct {
	o        Options
	sealer   *sealer
	set      *set
	feed     feed
	local    bool // "memory": no other instance to hear from
	maxParts int
	log      *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}

	warnMu   sync.Mutex
	lastWarn time.Time
	down     bool // the follow loop's view, for logging transitions
}

var _ session.ClientStore = (*Store)(nil)

// New checks o, connects the revocation feed and waits (bounded by ctx)
// until this instance holds every live revocation, so it never accepts a
// revoked cookie for want of having started. Close stops it.
func New(ctx context.Context, o Options) (*Store, error) {
	if err := o.withDefaults(); err != nil {
		return nil, err
	}
	sl, err := newSealer(o.Keys)
	if err != nil {
		return nil, err
	}
	st := &Store{o: o, sealer: sl, set: newSet(), log: o.Logger, done: make(chan struct{})}
	st.maxParts = len(split(strings.Repeat("a", o.MaxSize), o.MaxCookieSize))
	if st.maxParts > 32 {
		return nil, fmt.Errorf("cookiestore: Options.MaxSize %d needs %d cookies of MaxCookieSize %d; at most 32", o.MaxSize, st.maxParts, o.MaxCookieSize)
	}
	switch {
	case o.Redis != nil:
		st.feed = newRedisFeed(o.Redis, false, o)
	case o.NATS != nil:
		st.feed, err = newNATSFeed(o.NATS, false, o)
	case o.URL == "memory":
		st.feed, st.local = memFeed{}, true
	default:
		st.feed, err = openFeed(o)
	}
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	go st.run(runCtx)
	if err := st.Sync(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("cookiestore: revocation feed not in sync: %w", err)
	}
	return st, nil
}

func (o *Options) withDefaults() error {
	feeds := 0
	for _, set := range []bool{o.URL != "", o.Redis != nil, o.NATS != nil} {
		if set {
			feeds++
		}
	}
	if feeds != 1 {
		return errors.New("cookiestore: give the revocation feed as exactly one of Options.URL (redis://, nats:// or memory), Options.Redis or Options.NATS")
	}
	if o.Name == "" {
		o.Name = "unstuck_revocations"
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxCookieSize == 0 {
		o.MaxCookieSize = 3800
	}
	if o.MaxCookieSize < 64 || o.MaxCookieSize > 4096 {
		return fmt.Errorf("cookiestore: Options.MaxCookieSize %d: want 64 to 4096 bytes", o.MaxCookieSize)
	}
	if o.MaxSize == 0 {
		o.MaxSize = o.MaxCookieSize
	}
	if o.MaxSize < o.MaxCookieSize {
		return fmt.Errorf("cookiestore: Options.MaxSize %d is below MaxCookieSize %d", o.MaxSize, o.MaxCookieSize)
	}
	if o.MaxLag == 0 {
		o.MaxLag = 3 * time.Second
	}
	if o.PollInterval == 0 {
		o.PollInterval = o.MaxLag / 3
	}
	if o.MaxLag < 0 || o.PollInterval <= 0 {
		return errors.New("cookiestore: Options.MaxLag and PollInterval must be positive")
	}
	if o.FeedDown != FailClosed && o.FeedDown != Accept {
		return fmt.Errorf("cookiestore: Options.FeedDown %d: want FailClosed or Accept", o.FeedDown)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Close stops following the feed and closes the connection if the Store
// opened it. Open fails closed afterwards (FailClosed).
func (st *Store) Close() error {
	st.cancel()
	<-st.done
	st.feed.close()
	return nil
}

// NewID implements session.ClientStore: 128 bits, the first 48 of them the
// issue time in milliseconds.
func (st *Store) NewID() string { return newID(time.Now()) }

// Open implements session.ClientStore.
func (st *Store) Open(ctx context.Context, parts []string) (string, *session.Record, error) {
	v, ok := join(parts, st.maxParts)
	if !ok || len(v) > st.o.MaxSize {
		return "", nil, nil
	}
	raw, r, ok := st.sealer.open(v)
	if !ok {
		return "", nil, nil
	}
	now := time.Now()
	if err := st.current(now); err != nil {
		return "", nil, err
	}
	if st.set.revoked(raw, r.UserID, now) {
		return "", nil, nil
	}
	return idString(raw), r, nil
}

// current applies FeedDown when the set may be missing revocations
// committed more than MaxLag ago.
func (st *Store) current(now time.Time) error {
	if st.local {
		return nil
	}
	synced, _ := st.set.lastSync()
	lag := now.Sub(synced)
	if lag <= st.o.MaxLag {
		return nil
	}
	if st.o.FeedDown == FailClosed {
		return fmt.Errorf("%w: last confirmed complete %v ago (MaxLag %v)", ErrFeedDown, lag.Round(time.Millisecond), st.o.MaxLag)
	}
	st.warnMu.Lock()
	defer st.warnMu.Unlock()
	if now.Sub(st.lastWarn) >= 10*time.Second {
		st.lastWarn = now
		st.log.Warn("cookiestore: revocation feed is behind; accepting cookies against the revocations known so far (FeedDown: Accept)", "lag", lag.Round(time.Millisecond), "max_lag", st.o.MaxLag)
	}
	return nil
}

// Seal implements session.ClientStore.
func (st *Store) Seal(id string, r *session.Record) ([]string, error) {
	raw, _, ok := parseID(id)
	if !ok {
		return nil, fmt.Errorf("cookiestore: session id %q was not made by NewID", id)
	}
	if st.set.revoked(raw, r.UserID, time.Now()) {
		return nil, session.ErrGone
	}
	v := st.sealer.seal(raw, r)
	if len(v) > st.o.MaxSize {
		return nil, fmt.Errorf("%w: sealed session is %d bytes, limit %d (cookiestore Options.MaxSize)", session.ErrTooLarge, len(v), st.o.MaxSize)
	}
	return split(v, st.o.MaxCookieSize), nil
}

// retain is how long past a revoked session's own end its revocation is
// kept: copies sealed by an instance that had not heard of it yet (at most
// MaxLag later), and a minute of clock skew between instances.
func (st *Store) retain(until time.Time) int64 {
	return until.Add(st.o.MaxLag + time.Minute).UnixMilli()
}

// Revoke implements session.ClientStore. This instance refuses the session
// as soon as the shared store has the revocation. If the store cannot be
// reached, nothing changes anywhere and the error says so: the logout
// fails (503) and the client's retry publishes it, whereas a revocation
// kept only here would make that retry find nothing left to revoke.
func (st *Store) Revoke(ctx context.Context, id string, until time.Time) error {
	raw, _, ok := parseID(id)
	if !ok {
		return nil // not a session this store issued: nothing can present it
	}
	return st.revoke(ctx, entry{key: raw, until: st.retain(until)})
}

// RevokeUser implements session.ClientStore, like Revoke.
func (st *Store) RevokeUser(ctx context.Context, userID string, before, until time.Time) error {
	return st.revoke(ctx, entry{user: true, key: userKey(userID), notBefore: before.UnixMilli(), until: st.retain(until)})
}

func (st *Store) revoke(ctx context.Context, e entry) error {
	if err := st.feed.publish(ctx, e); err != nil {
		return fmt.Errorf("cookiestore: publish revocation: %w", err)
	}
	st.set.apply(e) // here at once, whatever the feed's delay
	return nil
}

// UserSessions implements session.Backend: the sessions live in the
// clients, so nobody can list them.
func (st *Store) UserSessions(context.Context, string) ([]string, error) {
	return nil, session.ErrNotSupported
}

// Sync waits until this instance holds every revocation committed before
// the call (at most about one store round trip when the feed is up), or
// ctx ends. Nothing needs it on the request path; it serves tests and
// operations that must know a logout took effect everywhere it can.
func (st *Store) Sync(ctx context.Context) error {
	if st.local {
		return nil
	}
	t0 := time.Now()
	for {
		synced, next := st.set.lastSync()
		if !synced.Before(t0) {
			return nil
		}
		st.set.wakeUp()
		select {
		case <-next:
		case <-ctx.Done():
			return ctx.Err()
		case <-st.done:
			return errors.New("cookiestore: store closed")
		}
	}
}

// Revocations is how many revocations this instance holds in memory.
func (st *Store) Revocations() int { return st.set.size() }

func idString(raw [idLen]byte) string {
	return fmt.Sprintf("%x", raw[:])
}
