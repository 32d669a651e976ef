package session

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Writing the session back: pending changes become one Change for the
// backend, and the cookie goes out just before the response header.

// blindFlushLocked writes pending Set and Delete changes to a session that
// was never loaded.
func (s *state) blindFlushLocked(ctx context.Context) error {
	m := s.m
	c := s.changeLocked(time.Now())
	ver, err := m.commit(ctx, s.id, nil, c)
	switch {
	case err == nil:
		s.resetPendingLocked()
		s.blindVersion = ver
		s.wroteLocked()
		return nil
	case errors.Is(err, ErrNotFound):
		// Unknown or expired token: the changes start a fresh session,
		// exactly as if the session had been loaded and found empty.
		s.loaded, s.rec, s.token, s.id = true, nil, "", ""
		if s.saved && s.headerOut {
			s.resetPendingLocked()
			return ErrResponseStarted
		}
		return s.flushLocked(ctx)
	case errors.Is(err, ErrGone):
		m.cfg.Logger.InfoContext(ctx, "session: write to a session destroyed meanwhile dropped", "id", s.id[:8])
		s.loaded, s.rec, s.token, s.id = true, nil, "", ""
		s.resetPendingLocked()
		return ErrGone
	default:
		s.failed = unavailable("save", err)
		return s.failed
	}
}

func (s *state) resetPendingLocked() {
	s.set, s.del, s.clear, s.setUser, s.userID, s.rotated = nil, nil, false, false, "", nil
}

func (s *state) dirtyLocked() bool {
	return len(s.set) > 0 || len(s.del) > 0 || s.clear || s.setUser || s.rotated != nil
}

func (m *Manager) idleDeadline(now time.Time, rec *Record) time.Time {
	d := now.Add(m.cfg.IdleTimeout)
	if rec != nil && !rec.Deadline.IsZero() && d.After(rec.Deadline) {
		d = rec.Deadline
	}
	return d
}

// changeLocked builds the Change for the pending writes.
func (s *state) changeLocked(now time.Time) Change {
	c := Change{Clear: s.clear, Set: s.set, SetUser: s.setUser, UserID: s.userID}
	for k := range s.del {
		c.Delete = append(c.Delete, k)
	}
	c.IdleDeadline = s.m.idleDeadline(now, s.rec)
	if s.rec != nil {
		c.Deadline = s.rec.Deadline // lets stores bound the user index
	}
	return c
}

// flushLocked writes pending changes now, creating the session if needed.
func (s *state) flushLocked(ctx context.Context) error {
	m := s.m
	now := time.Now()
	if s.rec == nil {
		token, id := m.newToken()
		c := s.changeLocked(now)
		c.Create, c.Clear, c.Delete = true, false, nil
		c.Created, c.Deadline = now, now.Add(m.cfg.Lifetime)
		rotated := s.rotated
		if rotated != nil {
			// Same session under a new token: same age, same end.
			c.Created, c.Deadline = rotated.Created, rotated.Deadline
		}
		c.IdleDeadline = m.idleDeadline(now, &Record{Deadline: c.Deadline})
		ver, err := m.commit(ctx, id, nil, c)
		if err != nil {
			s.failed = unavailable("create", err)
			return s.failed
		}
		rec, _ := c.Apply(nil)
		rec.Version = ver
		s.rec, s.token, s.id, s.issued = rec, token, id, true
		s.resetPendingLocked()
		s.wroteLocked()
		if rotated == nil {
			m.hook(m.cfg.OnCreate, ctx, id, rec)
		}
		return nil
	}
	if !s.dirtyLocked() {
		return nil
	}
	c := s.changeLocked(now)
	ver, err := m.commit(ctx, s.id, s.rec, c)
	if errors.Is(err, ErrGone) {
		// Destroyed or rotated by another request meanwhile: the
		// logout wins, and this request's writes are dropped on purpose.
		m.cfg.Logger.InfoContext(ctx, "session: write to a session destroyed meanwhile dropped", "id", s.id[:8])
		s.rec, s.token, s.id = nil, "", ""
		s.resetPendingLocked()
		return ErrGone
	}
	if err != nil {
		s.failed = unavailable("save", err)
		return s.failed
	}
	rec, _ := c.Apply(s.rec)
	rec.Version = ver
	if m.client != nil && c.SetUser && c.UserID != s.rec.UserID {
		// A new user gets a new id, so the id's issue time (RevokeUser)
		// is never older than the binding. No revocation: that is
		// RenewToken's job.
		s.id = m.client.NewID()
	}
	s.rec = rec
	s.resetPendingLocked()
	s.wroteLocked()
	return nil
}

// wroteLocked notes a write, so the cookie carries the new version when the
// store's cache may lag, or the new session with a ClientStore.
func (s *state) wroteLocked() {
	if s.m.fresh != nil || s.m.client != nil {
		s.issued = true // read by save; harmless once the header is out
	}
}

// save runs once, before the response header goes out: it writes pending
// changes (or moves the idle deadline) and sets the cookie.
func (s *state) save(h http.Header) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saved {
		return s.failed
	}
	s.saved = true
	if s.failed != nil {
		return s.failed
	}
	ctx := s.r.Context()
	m := s.m
	switch {
	case !s.loaded && s.dirtyLocked():
		if err := s.blindFlushLocked(ctx); err != nil && !errors.Is(err, ErrGone) {
			return err
		}
	case !s.loaded:
		// The handler never used its session: no store call at all.
	case s.rec == nil && s.dirtyLocked(), s.rec != nil && s.dirtyLocked():
		if err := s.flushLocked(ctx); err != nil && !errors.Is(err, ErrGone) {
			return err
		}
	case s.rec != nil:
		now := time.Now()
		touchAt := s.rec.IdleDeadline.Add(-time.Duration(float64(m.cfg.IdleTimeout) * (1 - m.cfg.TouchAfter)))
		if !s.rec.IdleDeadline.IsZero() && !now.Before(touchAt) && s.rec.IdleDeadline.Before(s.rec.Deadline) {
			touch := Change{IdleDeadline: m.idleDeadline(now, s.rec)}
			_, err := m.commit(ctx, s.id, s.rec, touch)
			switch {
			case err == nil:
				s.rec.IdleDeadline = touch.IdleDeadline
				if m.client != nil {
					s.issued = true // the deadline travels in the cookie
				}
			case !errors.Is(err, ErrGone):
				// The request wrote nothing, so nothing is lost: serve
				// it and let a later request move the deadline.
				m.cfg.Logger.WarnContext(ctx, "session: idle deadline not extended", "err", err)
			}
		}
	}
	s.headerOut = true
	if m.client != nil {
		return s.writeClientLocked(ctx, h)
	}
	var v string // the cookie's new value; "" deletes it
	switch {
	case s.issued && s.token != "":
		ver, deadline := s.blindVersion, time.Time{}
		if s.rec != nil {
			ver, deadline = s.rec.Version, s.rec.Deadline
		}
		v = s.token
		if m.fresh != nil {
			v += "." + strconv.FormatUint(ver, 10)
		}
		s.setCookieLocked(h, m.cfg.Cookie.Name, v, deadline)
	case s.ended && s.token == "":
		s.setCookieLocked(h, m.cfg.Cookie.Name, "", time.Time{})
	default:
		return nil
	}
	if s.viaHeader && m.cfg.Header != "" {
		h.Set(m.cfg.Header, v)
	}
	return nil
}

// setCookieLocked adds one Set-Cookie; an empty value deletes the cookie.
func (s *state) setCookieLocked(h http.Header, name, value string, deadline time.Time) {
	cfg := &s.m.cfg
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     cfg.Cookie.Path,
		Domain:   cfg.Cookie.Domain,
		HttpOnly: true,
		Secure:   cfg.Cookie.Secure || s.r.TLS != nil,
		SameSite: cfg.Cookie.SameSite,
	}
	if value == "" {
		c.MaxAge = -1
	} else if cfg.Cookie.Persist && !deadline.IsZero() {
		c.Expires = deadline.UTC()
		c.MaxAge = max(1, int(time.Until(deadline).Seconds()))
	}
	h.Add("Set-Cookie", c.String())
	if !slices.Contains(h.Values("Vary"), "Cookie") {
		h.Add("Vary", "Cookie")
	}
	h.Set("Cache-Control", `no-cache="Set-Cookie"`)
}
