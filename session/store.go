package session

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backend is what Config.Store takes: where a Manager keeps its sessions.
// It is one of two kinds, and New refuses anything else:
//
//   - a Store keeps each session on the server and gives the client a
//     random token (memstore, redisstore, natsstore, dynamostore);
//   - a ClientStore seals each session into the client's cookie and keeps
//     on the server only what it must to end sessions (cookiestore).
//
// The one method they share answers Manager.SessionsOfUser; a ClientStore,
// which cannot list the cookies its clients hold, returns ErrNotSupported.
type Backend interface {
	UserSessions(ctx context.Context, userID string) ([]string, error)
}

// Store keeps session records on the server. Implementations live in
// sub-packages (memstore, redisstore, natsstore, dynamostore);
// sessiontest.Run checks that a Store
// keeps every guarantee documented here, so a third-party store can prove
// itself with one line.
//
// The model is per key: a Record is a set of independently written values,
// and a Change names only the keys a request changed, so two requests that
// change different keys of one session both keep their change. Every method
// is safe for concurrent use, from many processes at once, and each call is
// atomic with respect to every other call on the same id.
//
// ids are opaque strings that the Manager derives from tokens (a hex SHA-256
// digest, 64 characters of [0-9a-f]); a Store never sees a token.
//
// The shape suits stores with conditional writes: a DynamoDB store maps a
// session to one item, Values to a map attribute updated per key
// (SET/REMOVE of values.#k), Change.Expect and Create to a
// ConditionExpression, Version to an ADD on a number attribute, and the
// expiry to a TTL attribute.
type Store interface {
	// Load returns the live record stored under id, or (nil, nil) when
	// there is none: never created, deleted (tombstoned) or expired. Not
	// found is not an error; an error means the store could not answer,
	// and the caller must not treat the session as empty.
	//
	// The returned record belongs to the caller.
	Load(ctx context.Context, id string) (*Record, error)

	// Commit applies c to the record under id in one atomic step and
	// returns the record's version afterwards.
	//
	// With c.Create, the record must not exist (live or tombstoned);
	// otherwise Commit returns ErrConflict. Without it, the record must be
	// live; otherwise Commit changes nothing and returns ErrGone after a
	// Delete (the tombstone), ErrNotFound when there is no record at all,
	// so a write that arrives after Delete cannot bring a session back.
	// When a key in c.Expect does not hold the expected value (nil meaning
	// absent), Commit returns ErrConflict and changes nothing.
	//
	// Keys not named in c keep their values. The version grows by one when
	// c changes any value or the user binding; a commit that only moves
	// the idle deadline keeps it. The store expires the record by itself no
	// later than min(IdleDeadline, Deadline), setting that expiry in the
	// same atomic step as the write, so no record is ever left without one.
	Commit(ctx context.Context, id string, c Change) (version uint64, err error)

	// Delete removes the record under id and leaves a tombstone that lasts
	// at least until the record would have expired, so that a Commit
	// racing the delete fails with ErrGone. It returns the record as it was
	// just before the delete, or (nil, nil) when there was none.
	Delete(ctx context.Context, id string) (*Record, error)

	// UserSessions returns the ids of sessions bound to userID by a Commit
	// with SetUser, without scanning the store. It may include ids of
	// sessions that have since ended or been rebound (the Manager checks
	// each with Load); it must include every live session bound to userID.
	UserSessions(ctx context.Context, userID string) ([]string, error)
}

// FreshLoader is implemented by stores that may serve Load from a cache
// that lags behind writes made elsewhere (a near cache). LoadAtLeast
// returns the record only from a copy whose Version is at least
// minVersion, reading through the cache when its copy is older; it returns
// an older record or nil only when the store itself holds nothing newer.
//
// When the store implements it, the Manager appends the session's version
// to the cookie after each write ("token.version"), so a client's next
// request sees its own writes on every instance, whatever the delay of the
// cache's invalidation.
type FreshLoader interface {
	// Cached reports whether loads may come from such a cache (a store
	// type may have the cache as an option).
	Cached() bool
	LoadAtLeast(ctx context.Context, id string, minVersion uint64) (*Record, error)
}

// ExpiryNotifier is implemented by stores that learn when a session
// expires (memstore's janitor does; Redis keyspace events are lossy, and on
// a cluster per node, so redisstore does not pretend to). The Manager
// registers itself to call Config.OnExpire. f runs outside the store's
// locks, on the store's goroutine; it must not block for long.
type ExpiryNotifier interface {
	NotifyExpired(f func(id string, r *Record))
}

// Record is one session as stored.
type Record struct {
	// Values holds each key's encoded value.
	Values map[string][]byte
	// Version counts the commits that changed values or the user.
	Version uint64
	// UserID is the user the session is bound to, "" for none.
	UserID string
	// Created is when the session was created.
	Created time.Time
	// IdleDeadline is when the session expires unless used again.
	IdleDeadline time.Time
	// Deadline is the absolute end of the session, whatever its use.
	Deadline time.Time
}

// ExpiresAt is when the record stops being valid: the earlier of its idle
// and absolute deadlines.
func (r *Record) ExpiresAt() time.Time {
	if r.IdleDeadline.IsZero() || (!r.Deadline.IsZero() && r.Deadline.Before(r.IdleDeadline)) {
		return r.Deadline
	}
	return r.IdleDeadline
}

// Clone returns a deep copy, for stores that keep records in memory.
func (r *Record) Clone() *Record {
	if r == nil {
		return nil
	}
	c := *r
	c.Values = make(map[string][]byte, len(r.Values))
	for k, v := range r.Values {
		c.Values[k] = append([]byte(nil), v...)
	}
	return &c
}

// Change is what one Commit writes.
type Change struct {
	// Create makes a new record; Created and Deadline are set only then.
	Create bool
	// Clear removes every value before Set is applied.
	Clear bool
	// Set writes these keys.
	Set map[string][]byte
	// Delete removes these keys.
	Delete []string
	// Expect makes the commit conditional: each key must currently hold
	// exactly this value, or be absent when the value is nil.
	Expect map[string][]byte
	// SetUser binds the record to UserID ("" unbinds) and adds it to
	// that user's index.
	SetUser bool
	UserID  string
	// Created and Deadline are recorded when Create is set. Deadline is
	// also set on other commits that carry SetUser, so a store can keep
	// its user index as long as the session may live.
	Created  time.Time
	Deadline time.Time
	// IdleDeadline, when not zero, replaces the record's idle deadline.
	IdleDeadline time.Time
}

// Apply applies c to r (which must be live, or nil with c.Create) as a store
// that merges in memory would, checking Create and Expect, and returns the
// new record. It exists so in-memory and read-modify-write stores share one
// implementation of the semantics above.
func (c *Change) Apply(r *Record) (*Record, error) {
	if c.Create {
		if r != nil {
			return nil, ErrConflict
		}
		r = &Record{Values: map[string][]byte{}, Created: c.Created, Deadline: c.Deadline, IdleDeadline: c.IdleDeadline}
	} else if r == nil {
		return nil, ErrNotFound
	} else {
		r = r.Clone()
	}
	for k, want := range c.Expect {
		have, ok := r.Values[k]
		if want == nil {
			if ok {
				return nil, ErrConflict
			}
			continue
		}
		if !ok || string(have) != string(want) {
			return nil, ErrConflict
		}
	}
	changed := c.Create || c.Clear || len(c.Set) > 0 || len(c.Delete) > 0 || c.SetUser
	if c.Clear {
		clear(r.Values)
	}
	for k, v := range c.Set {
		r.Values[k] = append([]byte(nil), v...)
	}
	for _, k := range c.Delete {
		delete(r.Values, k)
	}
	if c.SetUser {
		r.UserID = c.UserID
	}
	if !c.IdleDeadline.IsZero() {
		r.IdleDeadline = c.IdleDeadline
	}
	if changed {
		r.Version++
	}
	return r, nil
}

var (
	// ErrConflict reports a Commit whose condition failed: Create on an
	// existing id, or an Expect that did not match.
	ErrConflict = errors.New("session: conflicting write")
	// ErrGone reports a Commit to a session that was deleted (its
	// tombstone is still there) or that does not exist.
	ErrGone = errors.New("session: session no longer exists")
	// ErrNotFound reports a Commit to an id with no record at all, not
	// even a tombstone: never created, or expired. It matches ErrGone.
	ErrNotFound = fmt.Errorf("%w (no record)", ErrGone)
	// ErrNotSupported reports a call the backend cannot answer, such as
	// SessionsOfUser on a ClientStore (nobody can list the cookies that
	// clients hold).
	ErrNotSupported = errors.New("session: not supported by this backend")
)
