// Package storeurl opens, from one store URL, the shared parts an app
// instance needs: the session store, the realtime backplane and the jobs
// backend. It is how `unstuck app` and `demo` accept --store
// nats://HOST:PORT, redis://HOST:PORT, rediss://HOST:PORT,
// dynamodb://TABLE?region=R&endpoint=URL or memory. DynamoDB and memory
// hold sessions only; chat and jobs then need a backplane URL of their own.
package storeurl

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/jobs/natsjobs"
	"github.com/unstuck-dev/unstuck/jobs/redisjobs"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/cookiestore"
	"github.com/unstuck-dev/unstuck/session/dynamostore"
	"github.com/unstuck-dev/unstuck/session/memstore"
	"github.com/unstuck-dev/unstuck/session/natsstore"
	"github.com/unstuck-dev/unstuck/session/redisstore"
)

// Parts are the shared parts behind one store URL. Close releases them.
// Broker, Presence and Jobs are nil for a sessions-only store (memory,
// dynamodb).
type Parts struct {
	// Kind is "nats", "redis", "dynamodb" or "memory".
	Kind     string
	Sessions session.Store
	Broker   realtime.Broker
	Presence realtime.PresenceStore
	Jobs     jobs.Backend

	// The connection behind the parts, for CookieStore.
	redis   rueidis.Client
	nats    *nats.Conn
	closers []func()
}

// Options tune what Open builds.
type Options struct {
	// NearCache keeps recently used sessions in this instance's memory,
	// invalidated by the store (Redis client tracking or a NATS watch).
	NearCache bool
	// VisibilityTimeout is how long a job's claim lasts without a
	// heartbeat before another instance takes it over [10s].
	VisibilityTimeout time.Duration
}

// Describe says what a store URL must look like, for CLI errors.
const Describe = "nats://HOST:PORT, redis://[:PASSWORD@]HOST:PORT[/DB], rediss://... (TLS), dynamodb://TABLE?region=R[&endpoint=URL][&create=true] or memory"

// Open connects to the store named by raw and builds every part. A bad URL
// is an error naming what is wrong; an unreachable store fails within ctx.
func Open(ctx context.Context, raw string, opts Options) (*Parts, error) {
	if opts.VisibilityTimeout == 0 {
		opts.VisibilityTimeout = 10 * time.Second
	}
	k, err := Kind(raw)
	if err != nil {
		return nil, err
	}
	switch k {
	case "memory":
		return openMemory(opts)
	case "nats":
		return openNATS(ctx, raw, opts)
	case "dynamodb":
		return openDynamo(ctx, raw)
	default:
		return openRedis(ctx, raw, opts)
	}
}

// SessionsOnly reports whether the parts lack a backplane and job queue.
func (p *Parts) SessionsOnly() bool { return p.Broker == nil || p.Jobs == nil }

// UseBackplane takes the realtime broker and jobs backend from other, a
// store that has them, for a sessions-only store; p then closes other too.
func (p *Parts) UseBackplane(other *Parts) {
	p.Broker, p.Presence, p.Jobs = other.Broker, other.Presence, other.Jobs
	p.redis, p.nats = other.redis, other.nats
	p.closers = append(p.closers, other.Close)
}

// CookieStore opens sessions sealed into the cookie (cookiestore), their
// revocations carried between instances over this store's connection (or
// its backplane's), which o must not name itself. Close closes it.
func (p *Parts) CookieStore(ctx context.Context, o cookiestore.Options) (*cookiestore.Store, error) {
	switch {
	case p.redis != nil:
		o.Redis = p.redis
	case p.nats != nil:
		o.NATS = p.nats
	default:
		return nil, fmt.Errorf("cookie sessions need nats:// or redis:// to carry logouts between instances; %s cannot", p.Kind)
	}
	st, err := cookiestore.New(ctx, o)
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() { _ = st.Close() })
	return st, nil
}

// Kind checks a store URL's form without connecting and returns its kind:
// "nats", "redis", "dynamodb" or "memory".
func Kind(raw string) (string, error) {
	if raw == "memory" {
		return "memory", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Host == "" && u.Scheme != "dynamodb") {
		return "", fmt.Errorf("store URL %q: want %s", raw, Describe)
	}
	switch u.Scheme {
	case "nats":
		return "nats", nil
	case "redis", "rediss":
		return "redis", nil
	case "dynamodb":
		if _, err := dynamostore.ParseURL(raw); err != nil {
			return "", fmt.Errorf("store URL %q: %w", raw, err)
		}
		return "dynamodb", nil
	default:
		return "", fmt.Errorf("store URL %q: unknown scheme %q; want %s", raw, u.Scheme, Describe)
	}
}

// Close releases every part, in reverse order of opening.
func (p *Parts) Close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	p.closers = nil
}

func openNATS(ctx context.Context, raw string, opts Options) (*Parts, error) {
	// Ride out outages: reconnect forever, and buffer what is published
	// meanwhile only briefly (the session layer fails clearly instead).
	nc, err := nats.Connect(raw, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.Name("unstuck"), nats.Timeout(3*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", raw, err)
	}
	p := &Parts{Kind: "nats", nats: nc, closers: []func(){nc.Close}}
	js, err := jetstream.New(nc)
	if err != nil {
		p.Close()
		return nil, err
	}
	store, err := natsstore.New(ctx, natsstore.Options{Conn: nc, NearCache: opts.NearCache})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("session store: %w", err)
	}
	p.Sessions = store
	p.closers = append(p.closers, func() { _ = store.Close() })
	broker, err := realtime.NewNATSBroker(ctx, realtime.NATSConfig{Conn: nc})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("realtime broker: %w", err)
	}
	p.Broker, p.Presence = broker, broker
	backend, err := natsjobs.New(ctx, js, natsjobs.Config{VisibilityTimeout: opts.VisibilityTimeout})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("jobs backend: %w", err)
	}
	p.Jobs = backend
	return p, nil
}

func openRedis(ctx context.Context, raw string, opts Options) (*Parts, error) {
	co, err := rueidis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("store URL %q: %w", raw, err)
	}
	co.DisableCache = !opts.NearCache
	co.ConnWriteTimeout = 3 * time.Second
	client, err := rueidis.NewClient(co)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(raw), err)
	}
	p := &Parts{Kind: "redis", redis: client, closers: []func(){client.Close}}
	// rueidis connects lazily; ask once so a wrong address fails now, with
	// the address in the error, not on the first user's request.
	if err := client.Do(ctx, client.B().Ping().Build()).Error(); err != nil {
		p.Close()
		return nil, fmt.Errorf("connect to %s: %w", redact(raw), err)
	}
	store, err := redisstore.New(redisstore.Options{Client: client, NearCache: opts.NearCache})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("session store: %w", err)
	}
	p.Sessions = store
	// The backplane's subscriptions need a connection of their own kind;
	// the broker shares the client, which rueidis multiplexes.
	broker, err := realtime.NewRedisBroker(realtime.RedisConfig{Client: client})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("realtime broker: %w", err)
	}
	p.Broker, p.Presence = broker, broker
	backend, err := redisjobs.New(client, redisjobs.Config{VisibilityTimeout: opts.VisibilityTimeout})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("jobs backend: %w", err)
	}
	p.Jobs = backend
	return p, nil
}

// openDynamo opens a DynamoDB session store (see dynamostore.Open for the
// URL's fields).
func openDynamo(ctx context.Context, raw string) (*Parts, error) {
	store, err := dynamostore.Open(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	return &Parts{Kind: "dynamodb", Sessions: store}, nil
}

// openMemory opens only a session store: memory keeps state inside one
// process, so it cannot carry chat or jobs between instances, and the
// caller says so if it needs them.
func openMemory(Options) (*Parts, error) {
	store := memstore.New(memstore.Options{})
	p := &Parts{Kind: "memory", Sessions: store, closers: []func(){func() { _ = store.Close() }}}
	return p, nil
}

// redact hides a password in a URL for error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return strings.Replace(raw, u.User.String()+"@", "***@", 1)
}
