package session

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// Config configures a Manager. The zero value of every field but Store is
// a sensible default.
type Config struct {
	// Store keeps the sessions. Required: a Store (memstore, redisstore,
	// natsstore, dynamostore: the session on the server, a token in the
	// cookie) or a ClientStore (cookiestore: the session sealed into the
	// cookie itself). Switching is changing this one value.
	Store Backend

	// Cookie configures the session cookie.
	Cookie CookieConfig

	// Header is a request header that may carry the token instead of the
	// cookie, for API clients; when a request used it, a new token is sent
	// back in the same response header. Default "Session-Token"; "-"
	// disables it. A header cannot be set by a cross-site form, so it
	// needs no CSRF protection beyond the cookie's.
	Header string

	// IdleTimeout ends a session not used for this long. Default 30m.
	IdleTimeout time.Duration
	// Lifetime ends a session this long after it was created, however
	// much it is used. Default 24h.
	Lifetime time.Duration
	// TouchAfter is the share of IdleTimeout that must have passed since
	// the idle deadline was last moved before a request that writes
	// nothing moves it again (one store call). Lower keeps deadlines
	// tighter; higher saves store writes. Default 0.5, range (0, 1].
	TouchAfter float64

	// Codec encodes values. Default JSONCodec.
	Codec Codec
	// MaxValueSize limits one encoded value, in bytes; Set and Update
	// return ErrValueTooLarge above it. Default 64 KiB.
	MaxValueSize int

	// StoreTimeout bounds every store call, so an unreachable store fails
	// a request in bounded time instead of hanging it. Default 2s.
	StoreTimeout time.Duration
	// RetryAfter is the Retry-After the default error handler sends with
	// its 503. Default 1s.
	RetryAfter time.Duration
	// ErrorHandler answers a request whose session could not be loaded or
	// saved. It runs before any byte of the handler's response was sent,
	// and the handler's own output is discarded. Default: 503 Service
	// Unavailable with Retry-After when the store (or a ClientStore's
	// revocation feed) cannot answer (ErrUnavailable); 500 when the session
	// outgrew its cookies (ErrTooLarge).
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

	// OnCreate is called after a new session was stored.
	OnCreate func(ctx context.Context, e Event)
	// OnDestroy is called after Destroy, RenewToken (for the old id) or
	// DestroyAllForUser removed a session.
	OnDestroy func(ctx context.Context, e Event)
	// OnExpire is called when a session expires: at once for stores that
	// report expiry (ExpiryNotifier: memstore), otherwise when a request
	// presents a session that has expired while the store still held it.
	// Redis and NATS drop expired records by TTL without a reliable event,
	// so there a session never presented again ends without OnExpire.
	OnExpire func(ctx context.Context, e Event)

	// Logger receives events that do not fail a request, such as a write
	// dropped because the session was destroyed meanwhile. Default
	// slog.Default().
	Logger *slog.Logger
}

// CookieConfig configures the session cookie. It is always HttpOnly.
type CookieConfig struct {
	// Name defaults to "session".
	Name string
	// Domain and Path scope the cookie; Path defaults to "/".
	Domain, Path string
	// Persist makes the cookie survive a browser restart, until the
	// session's absolute deadline. Default: a browser-session cookie.
	Persist bool
	// SameSite defaults to http.SameSiteLaxMode.
	SameSite http.SameSite
	// Secure forces the Secure attribute; it is always set on requests
	// that arrived over TLS.
	Secure bool
}

// Event describes a session to a hook.
type Event struct {
	// ID is the session's store id (a hash of its token, not the token).
	ID     string
	UserID string
	// Created is zero when the store no longer knew the session.
	Created time.Time
}

func (c *Config) withDefaults() (Config, error) {
	d := *c
	if d.Store == nil {
		return d, errors.New("session: Config.Store is required")
	}
	if d.Cookie.Name == "" {
		d.Cookie.Name = "session"
	}
	if d.Cookie.Path == "" {
		d.Cookie.Path = "/"
	}
	if d.Cookie.SameSite == 0 {
		d.Cookie.SameSite = http.SameSiteLaxMode
	}
	if d.Header == "" {
		d.Header = "Session-Token"
	} else if d.Header == "-" {
		d.Header = ""
	}
	if d.IdleTimeout == 0 {
		d.IdleTimeout = 30 * time.Minute
	}
	if d.Lifetime == 0 {
		d.Lifetime = 24 * time.Hour
	}
	if d.IdleTimeout < 0 || d.Lifetime < 0 {
		return d, errors.New("session: Config.IdleTimeout and Config.Lifetime must not be negative")
	}
	if d.TouchAfter == 0 {
		d.TouchAfter = 0.5
	}
	if d.TouchAfter < 0 || d.TouchAfter > 1 {
		return d, errors.New("session: Config.TouchAfter must be in (0, 1]")
	}
	if d.Codec == nil {
		d.Codec = JSONCodec{}
	}
	if d.MaxValueSize == 0 {
		d.MaxValueSize = 64 << 10
	}
	if d.StoreTimeout == 0 {
		d.StoreTimeout = 2 * time.Second
	}
	if d.RetryAfter == 0 {
		d.RetryAfter = time.Second
	}
	if d.ErrorHandler == nil {
		retry := int((d.RetryAfter + time.Second - 1) / time.Second)
		d.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			h := w.Header()
			if errors.Is(err, ErrTooLarge) {
				h.Set("Cache-Control", "no-store")
				http.Error(w, "session too large", http.StatusInternalServerError)
				return
			}
			h.Set("Retry-After", itoa(retry))
			h.Set("Cache-Control", "no-store")
			http.Error(w, "session store unavailable, retry shortly", http.StatusServiceUnavailable)
		}
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	return d, nil
}
