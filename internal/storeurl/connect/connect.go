// Package connect turns a redis:// or nats:// URL into a client, the same
// way for every part that talks to Redis or NATS: the session stores, the
// realtime brokers, the jobs backends (when their Options name a URL) and
// storeurl (which opens one client and shares it between all three). How
// unstuck connects, reconnects and times out lives here only.
package connect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"
)

// Either checks the one rule every Options with a URL and a Client
// follows: exactly one of the two is set. The error names both fields.
func Either(rawURL string, haveClient bool) error {
	switch {
	case rawURL != "" && haveClient:
		return errors.New("Options.URL and Options.Client are both set: give one")
	case rawURL == "" && !haveClient:
		return errors.New("Options.URL or Options.Client is required")
	}
	return nil
}

// RedisOptions tune a Redis client.
type RedisOptions struct {
	// NearCache turns on server-assisted client-side caching (RESP3 client
	// tracking), for a session store's near cache.
	NearCache bool
	// CacheSize bounds the cache per connection, in bytes; 32 MiB if 0.
	CacheSize int
}

// Redis opens a client to the Redis server or Cluster that rawURL names
// (redis://[:PASSWORD@]HOST:PORT[/DB], rediss:// for TLS, ?addr=HOST:PORT
// for more cluster seeds), or to the primary that Sentinels name
// (redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[?db=N]),
// which the client follows through failovers. rueidis dials and authenticates at once, here
// bounded by ctx, so a wrong address or password fails now and names the
// address rather than on the first user's request.
func Redis(ctx context.Context, rawURL string, o RedisOptions) (rueidis.Client, error) {
	var opt rueidis.ClientOption
	var err error
	if strings.HasPrefix(rawURL, SentinelScheme+"://") {
		opt, err = ParseSentinelURL(rawURL)
	} else {
		opt, err = rueidis.ParseURL(rawURL)
	}
	if err != nil {
		return nil, fmt.Errorf("URL %s: %w", Redact(rawURL), err)
	}
	opt.DisableCache = !o.NearCache
	// The parts repeat what is safe to repeat themselves (internal/retry),
	// building a fresh command for each try. rueidis's own retry sends the
	// same pooled command again on the new connection and then recycles
	// it while the dead connection's writer may still hold it, a race the
	// race detector caught after a server restart.
	opt.DisableRetry = true
	if o.NearCache {
		opt.CacheSizeEachConn = o.CacheSize
		if opt.CacheSizeEachConn <= 0 {
			opt.CacheSizeEachConn = 32 << 20
		}
	}
	if opt.ConnWriteTimeout == 0 { // ?write_timeout= in the URL wins
		// Detect a dead connection in bounded time.
		opt.ConnWriteTimeout = 3 * time.Second
	}
	if d, ok := ctx.Deadline(); ok && opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = max(min(5*time.Second, time.Until(d)), time.Millisecond) // 5 s is rueidis's own
	}
	if opt.Sentinel.MasterSet != "" && opt.Sentinel.Dialer.Timeout == 0 {
		// Sentinels are dialled first, within the same bound.
		opt.Sentinel.Dialer.Timeout = opt.Dialer.Timeout
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", Redact(rawURL), err)
	}
	return c, nil
}

// NATS connects to the NATS server that rawURL names, or to one of a
// cluster's servers listed as nats://A:4222,nats://B:4222, as name (shown
// by the server's monitoring). The connection rides out outages: it
// reconnects forever, every 250 ms (to another listed server when one
// dies), and the parts built on it report the outage instead of failing
// for good.
func NATS(ctx context.Context, rawURL, name string) (*nats.Conn, error) {
	timeout := 3 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(d)), time.Millisecond)
	}
	nc, err := nats.Connect(rawURL, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.Name(name), nats.Timeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", Redact(rawURL), err)
	}
	return nc, nil
}

// Redact hides the user information (a password, a NATS token) in a store
// URL, or in each URL of a list, for errors and logs.
func Redact(rawURL string) string { return redactAuthority(rawURL) }
