package realtime_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/natsbroker"
	"github.com/unstuck-dev/unstuck/realtime/redisbroker"
)

func healthStatus(t *testing.T, h testHub) int {
	t.Helper()
	resp, err := http.Get(h.srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Killing Redis: hubs report unhealthy, keep their sockets and local
// delivery, resubscribe when Redis returns, and fill what subscribers
// missed meanwhile from history (kept by AOF), with no gap or repeat.
func TestRedisOutageAndRecovery(t *testing.T) {
	r := testenv.Redis(t, testenv.RedisOptions{AOF: true})
	hubs := threeHubs(t, func() realtime.Broker { return newRedisBrokerT(t, r.Addr()) }, nil)
	ctx := context.Background()
	c0 := dial(t, hubs[0].wsURL("a"))
	c1 := dial(t, hubs[1].wsURL("b"))
	sub := c0.subscribe("news")
	c1.subscribe("news")
	if _, err := hubs[2].Publish(ctx, "news", data(0)); err != nil {
		t.Fatal(err)
	}
	first := c0.message("news")
	c1.message("news")

	r.Kill()
	for _, h := range hubs {
		testenv.Eventually(t, 10*time.Second, func() error {
			if h.Healthy() == nil {
				return errors.New("hub still healthy with Redis down")
			}
			return nil
		})
		if code := healthStatus(t, h); code != http.StatusServiceUnavailable {
			t.Fatalf("healthz %d during outage, want 503", code)
		}
	}
	// Local delivery goes on: a publish on hub 0 reaches hub 0's
	// subscriber, flagged as not in history; the publisher learns it.
	w := dial(t, hubs[0].wsURL("w"))
	rep := w.reply(map[string]any{"type": "publish", "channel": "news", "data": data(-1)})
	if rep.Type != realtime.FrameError || rep.Code != realtime.ErrCodeUnavailable || !rep.Local {
		t.Fatalf("publish during outage: %+v", rep)
	}
	if f := c0.message("news"); f.Offset != nil || dataN(t, f) != -1 {
		t.Fatalf("local message %+v", f)
	}

	r.Restart()
	for _, h := range hubs {
		testenv.Eventually(t, 20*time.Second, h.Healthy)
	}
	// Published right away, possibly before hubs 0 and 1 resubscribed:
	// those are missed live and must come from history.
	for i := 1; i <= 5; i++ {
		testenv.Eventually(t, 10*time.Second, func() error {
			_, err := hubs[2].Publish(ctx, "news", data(i))
			return err
		})
	}
	for _, c := range []*tclient{c0, c1} {
		last := *first.Offset
		for i := 1; i <= 5; i++ {
			f := c.expect(func(f frame) bool {
				if f.Type == realtime.FrameSubscribed && f.ID == 0 {
					t.Fatalf("history survived but the hub reset: %+v", f)
				}
				return f.Type == realtime.FrameMessage && f.Offset != nil
			})
			if dataN(t, f) != i || *f.Offset != last+1 || f.Epoch != sub.Epoch {
				t.Fatalf("after outage got n=%d offset=%d epoch=%s, want n=%d offset=%d epoch=%s", dataN(t, f), *f.Offset, f.Epoch, i, last+1, sub.Epoch)
			}
			last = *f.Offset
		}
	}
}

// A backplane that comes back empty has lost history: subscribers are told
// recovered:false with the new epoch, then live delivery resumes.
func TestBackplaneDataLossResetsEpoch(t *testing.T) {
	r := testenv.Redis(t)
	hubs := threeHubs(t, func() realtime.Broker { return newRedisBrokerT(t, r.Addr()) }, nil)
	c := dial(t, hubs[0].wsURL("a"))
	sub := c.subscribe("news")
	r.Kill()
	testenv.Eventually(t, 10*time.Second, func() error {
		if hubs[0].Healthy() == nil {
			return errors.New("still healthy")
		}
		return nil
	})
	r.Restart()
	testenv.Eventually(t, 20*time.Second, hubs[0].Healthy)
	testenv.Eventually(t, 10*time.Second, func() error {
		_, err := hubs[1].Publish(context.Background(), "news", data(1))
		return err
	})
	reset := c.expect(func(f frame) bool { return f.Type == realtime.FrameSubscribed && f.ID == 0 })
	if reset.Recovered == nil || *reset.Recovered || reset.Epoch == sub.Epoch {
		t.Fatalf("want recovered:false with a new epoch, got %+v (old epoch %s)", reset, sub.Epoch)
	}
}

// NATS restarting: the client library resubscribes, the hub refills.
func TestNATSOutageAndRecovery(t *testing.T) {
	n := testenv.NATS(t)
	hubs := threeHubs(t, func() realtime.Broker { return newNATSBrokerT(t, n.URL()) }, nil)
	c := dial(t, hubs[0].wsURL("a"))
	c.subscribe("news")
	n.Shutdown()
	testenv.Eventually(t, 10*time.Second, func() error {
		if hubs[0].Healthy() == nil {
			return errors.New("still healthy")
		}
		return nil
	})
	// Publishing while NATS is down fails at once, delivered locally only.
	if _, err := hubs[0].Publish(context.Background(), "news", data(0)); !errors.Is(err, realtime.ErrBackplaneUnavailable) {
		t.Fatalf("publish during outage: %v", err)
	}
	if f := c.message("news"); f.Offset != nil {
		t.Fatalf("local message with an offset: %+v", f)
	}
	n.Restart()
	testenv.Eventually(t, 20*time.Second, hubs[0].Healthy)
	for i := 1; i <= 3; i++ {
		testenv.Eventually(t, 10*time.Second, func() error {
			_, err := hubs[1].Publish(context.Background(), "news", data(i))
			return err
		})
	}
	for i := 1; i <= 3; i++ {
		if got := dataN(t, c.message("news")); got != i {
			t.Fatalf("got n=%d, want %d", got, i)
		}
	}
}

// A publish whose answer was lost, and that ran out of time before its
// client reconnected, may have been stored all the same: delivering it to
// this instance's subscribers without an offset would have them get it
// twice, once more when the hub fills the gap from history.
func TestNATSPublishMaybeStoredDeliveredOnce(t *testing.T) {
	n := testenv.NATS(t)
	cut := testenv.CutReplies(t, n.Server.Addr().String())
	// The reconnect is held until the publish has given up.
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	nc, err := nats.Connect("nats://"+cut.Addr(), nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(int) time.Duration { <-release; return 0 }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unblock(); nc.Close() })
	b, err := natsbroker.New(context.Background(), natsbroker.Options{Client: nc, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := startHub(t, b, nil)
	c := dial(t, h.wsURL("a"))
	c.subscribe("news")
	cut.Arm(`{"n":0}`)
	if _, err := h.Publish(context.Background(), "news", data(0)); err == nil {
		t.Fatal("publish whose answer was lost succeeded while its client could not reconnect")
	}
	if cut.Cuts() != 1 {
		t.Fatalf("%d answers lost, want 1: the test did not test", cut.Cuts())
	}
	unblock()
	testenv.Eventually(t, 10*time.Second, h.Healthy)
	expectOnceFromHistory(t, h, c)
}

// expectOnceFromHistory publishes n=1 once the backplane is back and
// checks that c got n=0 exactly once, from history (with its offset),
// before it: messages arrive in order.
func expectOnceFromHistory(t *testing.T, h testHub, c *tclient) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		_, err := h.Publish(context.Background(), "news", data(1))
		return err
	})
	var got []string
	for {
		f := c.message("news")
		off := "none"
		if f.Offset != nil {
			off = fmt.Sprint(*f.Offset)
		}
		got = append(got, fmt.Sprintf("n=%d offset=%s", dataN(t, f), off))
		if dataN(t, f) == 1 {
			break
		}
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], "n=0 ") || strings.HasSuffix(got[0], "offset=none") {
		t.Fatalf("subscriber got %v, want n=0 once, from history (with its offset), then n=1", got)
	}
}

// The same on Redis: the publish script ran, its answer was lost with
// every connection to the server, and no new one could be made before
// the publish gave up.
func TestRedisPublishMaybeStoredDeliveredOnce(t *testing.T) {
	r := testenv.Redis(t)
	cut := testenv.CutReplies(t, r.Addr())
	var refuse atomic.Bool // new connections fail, as to a server that is down
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{cut.Addr()}, DisableCache: true,
		DialCtxFn: func(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
			if refuse.Load() {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
			}
			return d.DialContext(ctx, "tcp", addr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	b, err := redisbroker.New(context.Background(), redisbroker.Options{Client: c, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := startHub(t, b, nil)
	w := dial(t, h.wsURL("a"))
	w.subscribe("news")
	// The first publish loads the script (EVALSHA answered NOSCRIPT, then
	// EVAL): only a later one runs it with the request that is cut.
	if _, err := h.Publish(context.Background(), "news", data(-1)); err != nil {
		t.Fatal(err)
	}
	if f := w.message("news"); dataN(t, f) != -1 {
		t.Fatalf("got %+v, want n=-1", f)
	}
	refuse.Store(true)
	// The client holds several connections: all must go, as with a
	// server that died, or the repeat goes through another.
	cut.ArmCrash(`{"n":0}`)
	if _, err := h.Publish(context.Background(), "news", data(0)); err == nil {
		t.Fatalf("publish whose answer was lost succeeded while no connection could be made (%d answers lost)", cut.Cuts())
	}
	if cut.Cuts() != 1 {
		t.Fatalf("%d answers lost, want 1: the test did not test", cut.Cuts())
	}
	refuse.Store(false)
	testenv.Eventually(t, 20*time.Second, h.Healthy)
	expectOnceFromHistory(t, h, w)
}
