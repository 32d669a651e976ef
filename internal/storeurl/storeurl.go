// Package storeurl is the one place that turns a store URL into the shared
// parts an app instance needs: the session store, the realtime backplane
// (broker and presence) and the jobs backend. It is how `unstuck app` and
// `demo` accept --store nats://HOST:PORT (or a cluster's list,
// nats://A:4222,nats://B:4222), redis://HOST:PORT, rediss://HOST:PORT,
// redis+sentinel://S1:26379,S2:26379/MASTER,
// dynamodb://TABLE?region=R&endpoint=URL or memory.
//
// Two query parameters belong to the store rather than the connection:
// ?wait=N[&wait_timeout=D] on a Redis URL makes session writes and job
// records wait for N replicas before they are acknowledged (see
// redisstore.Durability), and ?replicas=N on a NATS URL creates every
// bucket and stream with N replicas.
// DynamoDB and memory hold sessions only; chat and jobs then need a
// backplane URL of their own.
//
// Open connects once per URL and hands that one client to every part (as
// its Options.Client), so an instance holds one Redis client or NATS
// connection, not three. How a redis:// or nats:// URL becomes a client
// lives in the connect subpackage, which every part also uses when a
// library user gives it a URL (Options.URL) instead. A new scheme goes in
// three places side by side: Kind recognises it, connect dials it, Open
// builds the parts on it.
package storeurl

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/jobs/natsjobs"
	"github.com/unstuck-dev/unstuck/jobs/redisjobs"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/natsbroker"
	"github.com/unstuck-dev/unstuck/realtime/redisbroker"
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
const Describe = "nats://HOST:PORT[,nats://HOST:PORT...][?replicas=N], redis://[:PASSWORD@]HOST:PORT[/DB][?wait=N&wait_timeout=D], rediss://... (TLS), redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[?db=N], dynamodb://TABLE?region=R[&endpoint=URL][&create=true] or memory"

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
	case "dynamodb":
		return openDynamo(ctx, raw)
	}
	raw, p, err := splitParams(raw, k)
	if err != nil {
		return nil, err
	}
	if k == "nats" {
		return openNATS(ctx, raw, p, opts)
	}
	return openRedis(ctx, raw, p, opts)
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
	if strings.HasPrefix(raw, connect.SentinelScheme+"://") {
		base, _, err := splitParams(raw, "redis")
		if err != nil {
			return "", err
		}
		if _, err := connect.ParseSentinelURL(base); err != nil {
			return "", fmt.Errorf("store URL %q: %w", connect.Redact(raw), err)
		}
		return "redis", nil
	}
	if strings.HasPrefix(raw, "nats://") && strings.Contains(raw, ",") {
		return natsList(raw)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Host == "" && u.Scheme != "dynamodb") {
		return "", fmt.Errorf("store URL %q: want %s", connect.Redact(raw), Describe)
	}
	switch u.Scheme {
	case "nats":
		if _, _, err := splitParams(raw, "nats"); err != nil {
			return "", err
		}
		return "nats", nil
	case "redis", "rediss":
		if _, _, err := splitParams(raw, "redis"); err != nil {
			return "", err
		}
		return "redis", nil
	case "dynamodb":
		if _, err := dynamostore.ParseURL(raw); err != nil {
			return "", fmt.Errorf("store URL %q: %w", raw, err)
		}
		return "dynamodb", nil
	default:
		return "", fmt.Errorf("store URL %q: unknown scheme %q; want %s", connect.Redact(raw), u.Scheme, Describe)
	}
}

// maxNATSURLs bounds a NATS server list.
const maxNATSURLs = 64

// natsList checks a comma-separated list of a NATS cluster's servers.
func natsList(raw string) (string, error) {
	base, _, err := splitParams(raw, "nats")
	if err != nil {
		return "", err
	}
	list := strings.Split(base, ",")
	if len(list) > maxNATSURLs {
		return "", fmt.Errorf("store URL %q: more than %d servers", connect.Redact(raw), maxNATSURLs)
	}
	for _, one := range list {
		u, err := url.Parse(one)
		if err != nil || u.Scheme != "nats" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return "", fmt.Errorf("store URL %q: %q in the list: want nats://HOST:PORT", connect.Redact(raw), connect.Redact(one))
		}
	}
	return "nats", nil
}

// Close releases every part, in reverse order of opening.
func (p *Parts) Close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	p.closers = nil
}

// closing has Close close part (before what was opened earlier) and
// returns it.
func closing[T io.Closer](p *Parts, part T) T {
	p.closers = append(p.closers, func() { _ = part.Close() })
	return part
}

// openNATS shares one connection between the three parts, which do not
// own it: Close closes it after them.
func openNATS(ctx context.Context, raw string, params params, opts Options) (*Parts, error) {
	nc, err := connect.NATS(ctx, raw, "unstuck")
	if err != nil {
		return nil, err
	}
	replicas := max(params.replicas, 1)
	p := &Parts{Kind: "nats", nats: nc, closers: []func(){nc.Close}}
	store, err := natsstore.New(ctx, natsstore.Options{Client: nc, NearCache: opts.NearCache, Replicas: replicas})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("session store: %w", err)
	}
	p.Sessions = closing(p, store)
	broker, err := natsbroker.New(ctx, natsbroker.Options{Client: nc, Replicas: replicas})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("realtime broker: %w", err)
	}
	p.Broker, p.Presence = closing(p, broker), broker
	backend, err := natsjobs.New(ctx, natsjobs.Options{Client: nc, VisibilityTimeout: opts.VisibilityTimeout, Replicas: replicas})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("jobs backend: %w", err)
	}
	p.Jobs = closing(p, backend)
	return p, nil
}

// openRedis shares one client between the three parts, which rueidis
// multiplexes (the broker dedicates a connection to Pub/Sub).
func openRedis(ctx context.Context, raw string, params params, opts Options) (*Parts, error) {
	client, err := connect.Redis(ctx, raw, connect.RedisOptions{NearCache: opts.NearCache})
	if err != nil {
		return nil, err
	}
	p := &Parts{Kind: "redis", redis: client, closers: []func(){client.Close}}
	store, err := redisstore.New(ctx, redisstore.Options{Client: client, NearCache: opts.NearCache,
		Durability: redisstore.Durability{Replicas: params.wait, Timeout: params.waitTimeout}})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("session store: %w", err)
	}
	p.Sessions = closing(p, store)
	broker, err := redisbroker.New(ctx, redisbroker.Options{Client: client})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("realtime broker: %w", err)
	}
	p.Broker, p.Presence = closing(p, broker), broker
	backend, err := redisjobs.New(ctx, redisjobs.Options{Client: client, VisibilityTimeout: opts.VisibilityTimeout,
		Durability: redisjobs.Durability{Replicas: params.wait, Timeout: params.waitTimeout}})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("jobs backend: %w", err)
	}
	p.Jobs = closing(p, backend)
	return p, nil
}

// openDynamo opens a DynamoDB session store (see dynamostore.ParseURL for
// the URL's fields).
func openDynamo(ctx context.Context, raw string) (*Parts, error) {
	store, err := dynamostore.New(ctx, dynamostore.Options{URL: raw})
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	return &Parts{Kind: "dynamodb", Sessions: store}, nil
}

// openMemory opens only a session store: memory keeps state inside one
// process, so it cannot carry chat or jobs between instances, and the
// caller says so if it needs them.
func openMemory(Options) (*Parts, error) {
	p := &Parts{Kind: "memory"}
	p.Sessions = closing(p, memstore.New(memstore.Options{}))
	return p, nil
}
