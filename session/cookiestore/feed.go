package cookiestore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"
)

// feed carries revocations between instances through a shared store.
//
// The contract that gives the delay bound: confirm, called at time t and
// returning nil, guarantees that the set holds every revocation the shared
// store had committed by t. The Store calls it every PollInterval and
// counts the set complete as of the last success; a request more than
// MaxLag after that gets the FeedDown policy. The live delivery (pub/sub,
// watch) only makes revocations arrive sooner than the next confirm.
type feed interface {
	// publish stores e in the shared store for every instance.
	publish(ctx context.Context, e entry) error
	// start (re)connects the live delivery into s. The returned channel
	// yields when it broke, after which the Store calls stop and starts it
	// again (resubscribing and catching up: a reconnect never leaves an
	// instance deaf).
	start(ctx context.Context, s *set) (<-chan error, error)
	// confirm makes s hold everything the shared store had committed when
	// confirm was called, reading the store's log directly for whatever the
	// live delivery has not brought yet.
	confirm(ctx context.Context, s *set) error
	// stop ends the live delivery started last.
	stop()
	// close releases a connection the feed opened itself.
	close()
}

// openFeed connects to the store named by o.URL and owns the connection.
func openFeed(o Options) (feed, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("cookiestore: Options.URL %q: want redis://HOST:PORT, rediss://..., nats://HOST:PORT or memory", o.URL)
	}
	switch u.Scheme {
	case "redis", "rediss":
		co, err := rueidis.ParseURL(o.URL)
		if err != nil {
			return nil, fmt.Errorf("cookiestore: Options.URL: %w", err)
		}
		co.DisableCache = true
		co.ConnWriteTimeout = 3 * time.Second
		c, err := rueidis.NewClient(co)
		if err != nil {
			return nil, fmt.Errorf("cookiestore: connect to %s: %w", u.Redacted(), err)
		}
		return newRedisFeed(c, true, o), nil
	case "nats":
		nc, err := nats.Connect(o.URL, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.Name("unstuck cookiestore"))
		if err != nil {
			return nil, fmt.Errorf("cookiestore: connect to %s: %w", u.Redacted(), err)
		}
		return newNATSFeed(nc, true, o)
	default:
		return nil, fmt.Errorf("cookiestore: Options.URL %q: unknown scheme %q; want redis, rediss, nats or memory", u.Redacted(), u.Scheme)
	}
}

// memFeed is the feed of a single process: there is no one else to tell.
type memFeed struct{}

func (memFeed) publish(context.Context, entry) error { return nil }
func (memFeed) start(context.Context, *set) (<-chan error, error) {
	return nil, nil
}
func (memFeed) confirm(context.Context, *set) error { return nil }
func (memFeed) stop()                               {}
func (memFeed) close()                              {}

// callTimeout bounds one call to the shared store off the request path,
// so a call lost in a reconnect cannot leave the feed waiting.
const callTimeout = 5 * time.Second

// errStalled asks the Store to restart the live delivery: it left entries
// to the poll twice in a row.
var errStalled = errors.New("cookiestore: live revocation delivery stalled")

// run follows the feed until ctx ends: start, confirm every PollInterval
// (or at once when Sync asks), restart with backoff when the delivery
// breaks. Confirm failures alone do not restart it: the connection may
// come back by itself, and the lag tells requests how stale the set is.
func (st *Store) run(ctx context.Context) {
	defer close(st.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		broken, err := st.feed.start(ctx, st.set)
		if err == nil {
			backoff = 50 * time.Millisecond
			err = st.follow(ctx, broken)
			st.feed.stop()
		}
		if ctx.Err() != nil {
			return
		}
		st.noteDown(err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-st.set.wake: // someone waits: try again now
			t.Stop()
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (st *Store) follow(ctx context.Context, broken <-chan error) error {
	retry := 50 * time.Millisecond
	for {
		at := time.Now()
		cctx, cancel := context.WithTimeout(ctx, min(st.o.MaxLag, callTimeout))
		err := st.feed.confirm(cctx, st.set)
		cancel()
		wait := st.o.PollInterval
		if err == nil {
			st.set.synced(at)
			st.noteUp()
			retry = 50 * time.Millisecond
		} else if ctx.Err() == nil {
			// Retry soon: the live delivery may have missed something
			// that only a confirm brings, and the lag keeps growing.
			st.noteDown(err)
			wait, retry = min(wait, retry), min(2*retry, time.Second)
		}
		st.set.sweep(at, time.Minute)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case err := <-broken:
			t.Stop()
			return err
		case <-t.C:
		case <-st.set.wake:
			t.Stop()
		}
	}
}

// noteDown and noteUp log the feed's outages once each, not per poll.
func (st *Store) noteDown(err error) {
	st.warnMu.Lock()
	defer st.warnMu.Unlock()
	if !st.down {
		st.down = true
		st.log.Warn("cookiestore: revocation feed lost; catching up when it is back", "err", err, "policy", st.o.FeedDown, "max_lag", st.o.MaxLag)
	}
}

func (st *Store) noteUp() {
	st.warnMu.Lock()
	defer st.warnMu.Unlock()
	if st.down {
		st.down = false
		st.log.Info("cookiestore: revocation feed back in sync", "revocations", st.set.size())
	}
}
