// Package natsstore is a session.Store on a NATS JetStream key-value
// bucket: embedded in the process for a demo or a single node, a real
// clustered engine (R3 buckets) at scale.
//
// Each session is one entry, "s.<id>", holding the whole record; a write
// reads it, applies only the changed keys and publishes the result
// conditioned on the entry's revision (compare-and-swap), retrying when
// another writer got there first, so concurrent writes to different keys
// all survive. Every entry carries a per-message TTL (nats-server 2.11+,
// bucket LimitMarkerTTL) at the session's expiry, so JetStream removes it by
// itself. Deletion writes a tombstone entry that lives until the session
// would have expired.
//
// The user index is one empty entry per binding, "u.<hash(user)>.<id>",
// listed in one request from the stream's subject index (not a scan of all
// sessions, and no consumer).
//
// On a cluster (Replicas > 1) every read goes to the bucket's leader
// (internal/jsread): JetStream's own fast reads are answered by whichever
// replica is nearest, which may not have applied the last acknowledged
// write yet, and a deleted session would come back. While a leader is
// being elected, calls fail after their deadline and the Manager answers
// 503 with Retry-After.
//
// With NearCache, loads are served from memory; a watch on the bucket
// evicts an entry as soon as any instance changes it. A cached entry keeps
// its revision, so a write or delete of a cached session is one conditioned
// publish (one round trip), falling back to a fresh read when the copy was
// stale.
//
// # Reconnects
//
// The NATS client holds requests while it reconnects, so most calls ride
// out a server restart by themselves. A call whose request or answer was
// lost all the same is sent again, within the caller's deadline, because
// each is safe to repeat: Load and UserSessions read; the user index
// entry is a put; each Commit and Delete stamps the entry it writes with
// an id chosen before the call, so a repeat that finds its own entry
// answers from it instead of applying the change again (a Delete's
// tombstone keeps the record it removed, for the repeat to return), unless
// another write to the same session landed in the milliseconds between,
// when the change is applied on top of it, as a commit sent then would be.
package natsstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unstuck-dev/unstuck/internal/jsread"
	"github.com/unstuck-dev/unstuck/internal/retry"
	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
	"github.com/unstuck-dev/unstuck/session"
)

// Options configures a Store: give URL or Client, not both. Every other
// field's zero value is a sensible default.
type Options struct {
	// URL names the NATS server, nats://[USER:PASSWORD@]HOST:PORT. The
	// Store opens its own connection, and Close closes it.
	URL string
	// Client is a connected NATS connection that the caller keeps
	// owning: Close leaves it open.
	Client *nats.Conn
	// Bucket names the KV bucket, created when missing. Default
	// "unstuck_sessions".
	Bucket string
	// Replicas for a new bucket on a cluster. Default 1.
	Replicas int
	// Memory keeps a new bucket in memory instead of files.
	Memory bool

	// NearCache serves loads from memory, invalidated by a watch.
	NearCache bool
	// NearCacheTTL bounds how long an entry may be served. Default 1m.
	NearCacheTTL time.Duration
	// NearCacheSize bounds the number of cached sessions. Default 10000.
	NearCacheSize int

	// UserIndexTTL is how long a user binding is kept when the binding
	// carries no deadline. Default 31 days.
	UserIndexTTL time.Duration
	// MaxRetries bounds compare-and-swap retries of one Commit. Default
	// 100.
	MaxRetries int
}

// Store is a session.Store on JetStream KV.
type Store struct {
	nc      *nats.Conn
	ownConn bool
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	read    *jsread.KV // reads that see every acknowledged write
	subject string     // "$KV.<bucket>."
	idxTTL  time.Duration
	retries int

	cache   *nearCache
	watcher jetstream.KeyWatcher
	done    chan struct{}
}

var (
	_ session.Store       = (*Store)(nil)
	_ session.FreshLoader = (*Store)(nil)
)

// New opens the bucket on o.Client, or on a connection of its own to
// o.URL, creating the bucket if needed, and with NearCache starts the
// watch that keeps the cache fresh. Close stops it.
func New(ctx context.Context, o Options) (*Store, error) {
	if err := connect.Either(o.URL, o.Client != nil); err != nil {
		return nil, fmt.Errorf("natsstore: %w", err)
	}
	if o.Bucket == "" {
		o.Bucket = "unstuck_sessions"
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.UserIndexTTL <= 0 {
		o.UserIndexTTL = 31 * 24 * time.Hour
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 100
	}
	s := &Store{nc: o.Client, idxTTL: o.UserIndexTTL, retries: o.MaxRetries}
	if o.URL != "" {
		nc, err := connect.NATS(ctx, o.URL, "unstuck session store")
		if err != nil {
			return nil, fmt.Errorf("natsstore: %w", err)
		}
		s.nc, s.ownConn = nc, true
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		s.closeConn()
		return nil, fmt.Errorf("natsstore: %w", err)
	}
	s.js = js
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "unstuck sessions",
		History:     1,
		Storage:     storage,
		Replicas:    o.Replicas,
		// Required for per-key TTL; markers let watchers see expiry.
		LimitMarkerTTL: time.Minute,
	}
	kv, err := retry.Create(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	})
	if err != nil {
		s.closeConn()
		return nil, fmt.Errorf("natsstore: bucket %q: %w", o.Bucket, err)
	}
	s.kv = kv
	if s.read, err = jsread.OpenKV(ctx, js, o.Bucket); err != nil {
		s.closeConn()
		return nil, fmt.Errorf("natsstore: bucket %q: %w", o.Bucket, err)
	}
	s.subject = "$KV." + o.Bucket + "."
	if o.NearCache {
		if o.NearCacheTTL <= 0 {
			o.NearCacheTTL = time.Minute
		}
		if o.NearCacheSize <= 0 {
			o.NearCacheSize = 10_000
		}
		s.cache = newNearCache(o.NearCacheSize, o.NearCacheTTL)
		w, err := kv.Watch(context.Background(), "s.>", jetstream.UpdatesOnly(), jetstream.MetaOnly())
		if err != nil {
			s.closeConn()
			return nil, fmt.Errorf("natsstore: watch: %w", err)
		}
		s.watcher, s.done = w, make(chan struct{})
		go s.invalidate()
	}
	return s, nil
}

// invalidate evicts every session the watch reports changed. The watcher
// is an ordered consumer: after a reconnect it resumes after the last
// change it delivered, and whatever it may still miss ages out with
// NearCacheTTL.
func (s *Store) invalidate() {
	defer close(s.done)
	for e := range s.watcher.Updates() {
		if e == nil {
			continue // end of the (empty) initial values
		}
		s.cache.evict(strings.TrimPrefix(e.Key(), "s."), e.Revision())
	}
}

// Close stops the watch and closes the connection the Store opened from
// Options.URL; a connection given as Options.Client stays open.
func (s *Store) Close() error {
	if s.watcher != nil {
		_ = s.watcher.Stop()
		<-s.done
	}
	s.closeConn()
	return nil
}

func (s *Store) closeConn() {
	if s.ownConn {
		s.nc.Close()
	}
}

func sessKey(id string) string { return "s." + id }

func userPrefix(user string) string {
	h := sha256.Sum256([]byte(user))
	return "u." + hex.EncodeToString(h[:16]) + "."
}

// get reads an entry: the record (nil for none), whether it is a
// tombstone, and its revision (0 when the key has no live entry).
func (s *Store) get(ctx context.Context, id string) (*session.Record, bool, uint64, error) {
	r, tomb, rev, _, err := s.getEntry(ctx, id)
	return r, tomb, rev, err
}

// getEntry is get that also returns the entry as stored (nil for none).
func (s *Store) getEntry(ctx context.Context, id string) (*session.Record, bool, uint64, []byte, error) {
	var raw []byte
	var rev uint64
	err := retry.Do(ctx, func(ctx context.Context) (err error) {
		raw, rev, err = s.read.Get(ctx, sessKey(id))
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, 0, nil, nil
	}
	if err != nil {
		return nil, false, 0, nil, err
	}
	r, tomb, err := decodeRecord(raw)
	if err != nil {
		return nil, false, 0, nil, fmt.Errorf("natsstore: entry %s: %w", sessKey(id), err)
	}
	return r, tomb, rev, raw, nil
}

// newOp is a call's id, chosen before it is sent, by which a repeat
// recognises the call's earlier write.
func newOp() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Cached implements session.FreshLoader.
func (s *Store) Cached() bool { return s.cache != nil }

// Load implements session.Store.
func (s *Store) Load(ctx context.Context, id string) (*session.Record, error) {
	return s.LoadAtLeast(ctx, id, 0)
}

// LoadAtLeast implements session.FreshLoader.
func (s *Store) LoadAtLeast(ctx context.Context, id string, minVersion uint64) (*session.Record, error) {
	if s.cache != nil {
		if r, _, ok := s.cache.get(id); ok && (r == nil || r.Version >= minVersion) && live(r) {
			return r.Clone(), nil
		}
		defer s.cache.track(id)()
	}
	r, _, rev, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r != nil && !live(r) {
		r = nil // expired; JetStream drops it at its TTL
	}
	if s.cache != nil && rev > 0 {
		s.cache.put(id, r.Clone(), rev)
	}
	return r, nil
}

func live(r *session.Record) bool { return r == nil || time.Now().Before(r.ExpiresAt()) }

// ttlUntil is a message TTL that ends at t: whole seconds (the server's
// unit), at least one.
func ttlUntil(t time.Time) time.Duration {
	d := time.Until(t)
	if d < time.Second {
		return time.Second
	}
	return d.Truncate(time.Second) + time.Second
}

// Commit implements session.Store.
func (s *Store) Commit(ctx context.Context, id string, c session.Change) (uint64, error) {
	op := newOp()
	var v uint64
	err := retry.Repeat(ctx, func(ctx context.Context, repeat bool) error {
		return retry.OnConn(ctx, s.nc, func(ctx context.Context) (err error) {
			v, err = s.commit(ctx, id, c, op, repeat)
			return err
		})
	})
	return v, err
}

// commit is one try of Commit; a repeat first looks for its own entry.
func (s *Store) commit(ctx context.Context, id string, c session.Change, op string, repeat bool) (uint64, error) {
	if c.SetUser && c.UserID != "" {
		// Index first: the index may name a session not (yet) bound to
		// the user, never miss one that is.
		deadline := c.Deadline
		if deadline.IsZero() {
			deadline = time.Now().Add(s.idxTTL)
		}
		if _, err := s.put(ctx, userPrefix(c.UserID)+id, nil, 0, ttlUntil(deadline), true); err != nil {
			return 0, err
		}
	}
	if c.Create {
		// A new id needs no read: create it if no entry (live or
		// tombstone) exists, in one round trip.
		if s.cache != nil {
			defer s.cache.track(id)()
		}
		next, err := c.Apply(nil)
		if err != nil {
			return 0, err
		}
		b, err := encodeRecord(next, op)
		if err != nil {
			return 0, err
		}
		rev, err := s.put(ctx, sessKey(id), b, 0, ttlUntil(next.ExpiresAt()), true)
		if errors.Is(err, jetstream.ErrKeyExists) {
			if repeat {
				if cur, _, _, raw, gerr := s.getEntry(ctx, id); gerr == nil && cur != nil && ownEntry(raw, op) {
					return cur.Version, nil
				}
			}
			return 0, session.ErrConflict
		}
		if err != nil {
			return 0, err
		}
		if s.cache != nil {
			s.cache.put(id, next, rev)
		}
		return next.Version, nil
	}
	if !repeat {
		if v, ok, err := s.commitCached(ctx, id, c, op); ok || err != nil {
			return v, err
		}
	}
	for range s.retries {
		if s.cache != nil {
			defer s.cache.track(id)()
		}
		cur, tomb, rev, raw, err := s.getEntry(ctx, id)
		if err != nil {
			return 0, err
		}
		if repeat && cur != nil && ownEntry(raw, op) {
			return cur.Version, nil // the lost try landed
		}
		if tomb {
			return 0, session.ErrGone
		}
		if cur != nil && !live(cur) {
			return 0, session.ErrNotFound // expired, not yet dropped
		}
		next, err := c.Apply(cur)
		if err != nil {
			return 0, err
		}
		b, err := encodeRecord(next, op)
		if err != nil {
			return 0, err
		}
		newRev, err := s.put(ctx, sessKey(id), b, rev, ttlUntil(next.ExpiresAt()), false)
		if isWrongSeq(err) {
			continue // another writer won: retry on its result
		}
		if err != nil {
			return 0, err
		}
		if s.cache != nil {
			s.cache.put(id, next, newRev)
		}
		return next.Version, nil
	}
	return 0, fmt.Errorf("natsstore: %d compare-and-swap retries exhausted on %s", s.retries, id)
}

// commitCached tries c on the near cache's copy of the session, published
// conditioned on that copy's revision: one round trip instead of a read and
// a write. ok is false when there is no usable copy or it turned out stale
// (the caller then takes the reading path, which decides conflicts on
// fresh data).
func (s *Store) commitCached(ctx context.Context, id string, c session.Change, op string) (uint64, bool, error) {
	if s.cache == nil {
		return 0, false, nil
	}
	cur, rev, ok := s.cache.get(id)
	if !ok || cur == nil || rev == 0 || !live(cur) {
		return 0, false, nil
	}
	defer s.cache.track(id)()
	next, err := c.Apply(cur)
	if err != nil {
		return 0, false, nil // maybe stale: let fresh data decide
	}
	b, err := encodeRecord(next, op)
	if err != nil {
		return 0, false, err
	}
	newRev, err := s.put(ctx, sessKey(id), b, rev, ttlUntil(next.ExpiresAt()), false)
	if isWrongSeq(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	s.cache.put(id, next, newRev)
	return next.Version, true, nil
}

// put publishes value under key with a TTL, expecting the key's last
// revision to be rev (create: no live entry), and returns the new revision.
func (s *Store) put(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration, create bool) (uint64, error) {
	if create {
		newRev, err := s.kv.Create(ctx, key, value, jetstream.KeyTTL(ttl))
		if errors.Is(err, jetstream.ErrKeyExists) && strings.HasPrefix(key, "u.") {
			// Rebinding: refresh the index entry's TTL.
			var ack *jetstream.PubAck
			ack, err = s.js.PublishMsg(ctx, &nats.Msg{Subject: s.subject + key, Data: value}, jetstream.WithMsgTTL(ttl))
			if err == nil {
				newRev = ack.Sequence
			}
		}
		return newRev, err
	}
	ack, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: s.subject + key, Data: value},
		jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// ownEntry reports whether the stored entry raw was written by the call op.
func ownEntry(raw []byte, op string) bool {
	got, _ := entryOp(raw)
	return got == op
}

func isWrongSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Delete implements session.Store.
func (s *Store) Delete(ctx context.Context, id string) (*session.Record, error) {
	op := newOp()
	var r *session.Record
	err := retry.Repeat(ctx, func(ctx context.Context, repeat bool) error {
		return retry.OnConn(ctx, s.nc, func(ctx context.Context) (err error) {
			r, err = s.delete(ctx, id, op, repeat)
			return err
		})
	})
	return r, err
}

// delete is one try of Delete; a repeat first looks for its own tombstone.
func (s *Store) delete(ctx context.Context, id, op string, repeat bool) (*session.Record, error) {
	if s.cache != nil && !repeat {
		// With a cached copy, tombstone it conditioned on its revision:
		// if that succeeds, the copy was exactly what was deleted.
		if cur, rev, ok := s.cache.get(id); ok && cur != nil && rev > 0 && live(cur) {
			done := s.cache.track(id)
			exp := cur.ExpiresAt()
			was, err := encodeRecord(cur)
			if err != nil {
				done()
				return nil, err
			}
			newRev, err := s.put(ctx, sessKey(id), encodeDeletion(exp, op, was), rev, ttlUntil(exp), false)
			if err == nil {
				s.cache.put(id, nil, newRev)
			}
			done()
			if err == nil {
				return cur.Clone(), nil
			}
			if !isWrongSeq(err) {
				return nil, err
			}
		}
	}
	for range s.retries {
		cur, tomb, rev, raw, err := s.getEntry(ctx, id)
		if err != nil {
			return nil, err
		}
		if tomb && repeat {
			if got, was := entryOp(raw); got == op && len(was) > 0 {
				// The lost try landed: answer with what it removed.
				r, _, err := decodeRecord(was)
				if err != nil || !live(r) {
					return nil, err
				}
				return r, nil
			}
		}
		if tomb || cur == nil {
			return nil, nil
		}
		exp := cur.ExpiresAt()
		if s.cache != nil {
			defer s.cache.track(id)()
		}
		was, err := encodeRecord(cur)
		if err != nil {
			return nil, err
		}
		newRev, err := s.put(ctx, sessKey(id), encodeDeletion(exp, op, was), rev, ttlUntil(exp), false)
		if isWrongSeq(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if s.cache != nil {
			s.cache.put(id, nil, newRev)
		}
		if !live(cur) {
			return nil, nil
		}
		return cur, nil
	}
	return nil, fmt.Errorf("natsstore: %d compare-and-swap retries exhausted deleting %s", s.retries, id)
}

// UserSessions implements session.Store.
func (s *Store) UserSessions(ctx context.Context, userID string) ([]string, error) {
	prefix := userPrefix(userID)
	var ids []string
	err := retry.Do(ctx, func(ctx context.Context) error {
		keys, err := s.read.Keys(ctx, prefix+"*")
		ids = ids[:0]
		for _, k := range keys {
			ids = append(ids, strings.TrimPrefix(k, prefix))
		}
		return err
	})
	return ids, err
}
