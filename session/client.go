package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ClientStore keeps each session in the client: the cookie carries the
// session itself, sealed (encrypted and authenticated), instead of a token
// naming a record on the server. session/cookiestore implements it.
//
// The server keeps only what it needs to end sessions early: the ids of
// sessions ended by Destroy, RenewToken or DestroySession, and per user a
// time before which every session was ended (DestroyAllForUser), each only
// until the sessions it names would have expired anyway.
//
// The Manager's API is the same as with a Store; what differs (round
// trips, size, concurrent requests, revocation delay) is in the package
// documentation's comparison table.
type ClientStore interface {
	Backend

	// NewID returns the id of a new session (or of a session whose user
	// changed), unique and unguessable. The store may encode its issue
	// time in it for RevokeUser.
	NewID() string

	// Open returns the session sealed in parts: the values of the cookies
	// "name", "name.1", "name.2" ... in order, or the comma-separated parts
	// of the request header. Anything that is not a live session this
	// store sealed (a forged, truncated, garbled, outdated or revoked
	// value) yields ("", nil, nil), and the client gets a new, empty
	// session. A record past its deadlines is returned as it is (the
	// Manager ends it and calls OnExpire). An error means the store cannot
	// tell whether the session was ended (its revocation feed is down and
	// it fails closed); the request then gets the ErrorHandler's answer.
	Open(ctx context.Context, parts []string) (id string, r *Record, err error)

	// Seal returns the cookie values that carry session id with r, in
	// order ("name", "name.1", ...). It returns an error matching
	// ErrTooLarge, naming the size, when they would exceed the store's
	// limit, and ErrGone when the session was revoked meanwhile (a late
	// write after a logout, which the Manager drops).
	Seal(id string, r *Record) ([]string, error)

	// Revoke ends session id on every instance: Open refuses it at once
	// on this instance and on every other within the store's stated
	// delay. until is the latest time any copy of its cookie could still
	// be valid; the store may forget the revocation after it.
	Revoke(ctx context.Context, id string, until time.Time) error

	// RevokeUser ends, on every instance, every session bound to userID
	// whose id was issued before `before` or in its millisecond (NewID);
	// until is when the last of them expires at the latest.
	RevokeUser(ctx context.Context, userID string, before, until time.Time) error
}

// ErrTooLarge reports a session that no longer fits in its cookies (a
// ClientStore's limit). Set, SetUser and Update return it and leave the
// session as it was; should a session outgrow the limit at save anyway,
// the request fails with status 500 and a log line naming the size. It
// matches ErrValueTooLarge, so handlers that answer 413 for one answer it
// for both.
var ErrTooLarge = fmt.Errorf("%w: session too large for its cookies", ErrValueTooLarge)

// maxParts bounds how many cookies one session may span, whatever a
// ClientStore or a client asks for.
const maxParts = 32

// readClient collects the sealed parts the request carries: from the
// header when it is there (API clients), else from the cookies "name",
// "name.1", ... A part missing in the middle ends the list; the store
// decides whether what it got is whole.
func (s *state) readClient(r *http.Request) {
	cfg := &s.m.cfg
	if cfg.Header != "" {
		if v := r.Header.Get(cfg.Header); v != "" {
			s.viaHeader = true
			if strings.Count(v, ",") < maxParts {
				s.parts = strings.Split(v, ",")
			}
			return
		}
	}
	name := cfg.Cookie.Name
	var byIndex [maxParts]string
	for _, c := range r.Cookies() {
		i := 0
		if c.Name != name {
			rest, ok := strings.CutPrefix(c.Name, name+".")
			n, err := strconv.Atoi(rest)
			if !ok || err != nil || n < 1 || n >= maxParts || rest != strconv.Itoa(n) {
				continue
			}
			i = n
		}
		if byIndex[i] == "" {
			byIndex[i] = c.Value
			s.present |= 1 << i
		}
	}
	for i := 0; i < maxParts && byIndex[i] != ""; i++ {
		s.parts = append(s.parts, byIndex[i])
	}
}

// openLocked opens the session the client presented, if any.
func (s *state) openLocked(ctx context.Context) (*Record, error) {
	if len(s.parts) == 0 {
		return nil, nil
	}
	sctx, cancel := s.m.storeCtx(ctx)
	defer cancel()
	id, rec, err := s.m.client.Open(sctx, s.parts)
	if err != nil || rec == nil {
		return nil, err
	}
	s.id = id
	return rec, nil
}

// fitsLocked checks, with a ClientStore, that the session with its pending
// changes still fits in its cookies, so that Set and Update can refuse a
// value at once instead of failing the whole response at save.
func (s *state) fitsLocked() error {
	if s.m.client == nil {
		return nil
	}
	c := s.changeLocked(time.Now())
	if s.rec == nil {
		c.Create, c.Clear, c.Deadline = true, false, time.Now().Add(s.m.cfg.Lifetime)
	}
	next, err := c.Apply(s.rec)
	if err != nil {
		return err
	}
	id := s.id
	if id == "" {
		id = s.m.client.NewID()
	}
	if _, err := s.m.client.Seal(id, next); errors.Is(err, ErrTooLarge) {
		return err
	}
	return nil
}

// writeClientLocked sets the cookies at save with a ClientStore: the sealed
// session when it changed (or its idle deadline moved), and an expired
// cookie for every part the client holds but no longer needs.
func (s *state) writeClientLocked(ctx context.Context, h http.Header) error {
	m := s.m
	keep := 0 // parts still in use
	switch {
	case s.issued && s.rec != nil:
		parts, err := m.client.Seal(s.id, s.rec)
		if errors.Is(err, ErrGone) {
			// Revoked while this request ran (a logout elsewhere): the
			// logout wins, as with a Store's tombstone.
			m.cfg.Logger.InfoContext(ctx, "session: write to a session destroyed meanwhile dropped", "id", s.id[:min(8, len(s.id))])
			return nil
		}
		if err != nil {
			m.cfg.Logger.ErrorContext(ctx, "session: sealed session does not fit in its cookies", "err", err)
			return err
		}
		for i, p := range parts {
			s.setCookieLocked(h, partName(m.cfg.Cookie.Name, i), p, s.rec.Deadline)
		}
		keep = len(parts)
		if s.viaHeader && m.cfg.Header != "" {
			h.Set(m.cfg.Header, strings.Join(parts, ","))
		}
	case s.ended && s.rec == nil:
		s.present |= 1 // the main cookie goes, whether or not it came
		if s.viaHeader && m.cfg.Header != "" {
			h.Set(m.cfg.Header, "")
		}
	default:
		return nil
	}
	for i := keep; i < maxParts; i++ {
		if s.present&(1<<i) != 0 {
			s.setCookieLocked(h, partName(m.cfg.Cookie.Name, i), "", time.Time{})
		}
	}
	return nil
}

func partName(name string, i int) string {
	if i == 0 {
		return name
	}
	return name + "." + strconv.Itoa(i)
}

// revokeUntil is how long a revocation of cur must last: until every copy
// of its cookie has expired. A copy was sealed no later than now, so its
// idle deadline is at most now + IdleTimeout, and no copy outlives the
// absolute deadline. For an unknown session (DestroySession by id), the
// longest any session can stay idle or live.
func (m *Manager) revokeUntil(cur *Record) time.Time {
	until := time.Now().Add(min(m.cfg.IdleTimeout, m.cfg.Lifetime))
	if cur != nil && !cur.Deadline.IsZero() && cur.Deadline.Before(until) {
		until = cur.Deadline
	}
	return until
}
