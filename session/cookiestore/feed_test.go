package cookiestore_test

import (
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/cookiestore"
	"github.com/unstuck-dev/unstuck/session/sessiontest"
)

// feedURL starts a private shared store of the given kind and returns its
// URL and a function that brings it down (kill) and one that brings it back.
type feedServer struct {
	url        string
	down, back func()
}

// restart kills the server and brings it back.
func (fs feedServer) restart() { fs.down(); fs.back() }

func redisServer(t *testing.T, aof bool) feedServer {
	srv := testenv.Redis(t, testenv.RedisOptions{AOF: aof})
	return feedServer{url: "redis://" + srv.Addr(), down: srv.Kill, back: srv.Restart}
}

func natsServer(t *testing.T) feedServer {
	n := testenv.NATS(t)
	return feedServer{url: n.URL(), down: n.Shutdown, back: n.Restart}
}

var feeds = map[string]func(t *testing.T) feedServer{
	"redis": func(t *testing.T) feedServer { return redisServer(t, false) },
	"nats":  natsServer,
}

// instances returns n Stores sharing keys and one feed, as n processes.
func instances(t *testing.T, n int, o cookiestore.Options) []*cookiestore.Store {
	t.Helper()
	if o.Keys == nil {
		o.Keys = [][]byte{newKey()}
	}
	var out []*cookiestore.Store
	for range n {
		out = append(out, newStore(t, o))
	}
	return out
}

// refusedOn waits until the instance at url treats cookie as no session:
// a logout made elsewhere has reached it.
func refusedOn(t *testing.T, url, cookie, what string) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func() error {
		r := sessiontest.NewClient(t, url)
		r.Token = cookie
		if _, body := r.Do("GET", "/user"); body != "" {
			return fmt.Errorf("%s: the other instance still knows the session's user %q", what, body)
		}
		if _, body := r.Do("GET", "/keys"); body != "" {
			return fmt.Errorf("%s: the other instance still has the session's keys %q", what, body)
		}
		return nil
	})
}

func serve(t *testing.T, st session.Backend, cfg session.Config) string {
	t.Helper()
	cfg.Store = st
	srv := httptest.NewServer(sessiontest.Shop(newManager(t, cfg)))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestConformanceAcrossInstances(t *testing.T) {
	for name, start := range feeds {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fs := start(t)
			stores := instances(t, 3, cookiestore.Options{URL: fs.url})
			var backends []session.Backend
			for _, s := range stores {
				backends = append(backends, s)
			}
			sessiontest.RunManagersWith(t, backends, sessiontest.Options{Limitations: limits, Settle: syncAll(stores...), Restart: fs.restart})
		})
	}
}

// TestReplayAfterLogoutOnAnotherInstance is the attack the feed exists
// for: a copy of the cookie taken before logout, presented to another
// instance. It is refused once the revocation has propagated, which the
// test waits for without any hint from the stores.
func TestReplayAfterLogoutOnAnotherInstance(t *testing.T) {
	for name, start := range feeds {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fs := start(t)
			stores := instances(t, 2, cookiestore.Options{URL: fs.url})
			a, b := serve(t, stores[0], session.Config{}), serve(t, stores[1], session.Config{})
			for round := range 20 {
				c := sessiontest.NewClient(t, a)
				c.Want("POST", "/login/mallory-victim", 200, "welcome")
				c.Want("POST", "/set/card/4242", 200, "ok")
				copied := c.Token
				replay := sessiontest.NewClient(t, b)
				replay.Token = copied
				replay.Want("GET", "/get/card", 200, "true:4242") // the copy works before logout
				c.Want("POST", "/logout", 200, "bye")
				start := time.Now()
				refusedOn(t, b, copied, fmt.Sprintf("round %d, copy replayed after logout", round))
				if round == 0 {
					t.Logf("%s: the replayed copy was refused on the other instance %v after logout returned", name, time.Since(start).Round(time.Microsecond))
				}
				// And the other way round: RenewToken (login) retires the
				// pre-login cookie everywhere too.
				anon := sessiontest.NewClient(t, b)
				anon.Want("POST", "/set/cart/2", 200, "ok")
				pre := anon.Token
				anon.Want("POST", "/login/eve", 200, "welcome")
				refusedOn(t, a, pre, fmt.Sprintf("round %d, pre-login cookie", round))
			}
		})
	}
}

// TestFeedOutageFailsClosedOrAcceptsAndRecovers kills the shared store:
// the fail-closed instance answers 503 once it can no longer confirm it is
// in sync, the accepting one serves and logs a warning; both are back in
// sync without a restart once the store is, and a logout made after the
// recovery reaches both.
func TestFeedOutageFailsClosedOrAcceptsAndRecovers(t *testing.T) {
	for name, start := range map[string]func(t *testing.T) feedServer{
		"redis": func(t *testing.T) feedServer { return redisServer(t, true) },
		"nats":  natsServer,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fs := start(t)
			keys := [][]byte{newKey()}
			logs := &testenv.Buffer{}
			// A short MaxLag so the outage shows soon; on a loaded machine
			// an instance may also lag now and then outside the outage,
			// and then answers 503 as documented, so requests that are not
			// about the outage retry.
			o := cookiestore.Options{Keys: keys, URL: fs.url, MaxLag: time.Second, PollInterval: 100 * time.Millisecond}
			closed := newStore(t, o)
			o.FeedDown, o.Logger = cookiestore.Accept, slog.New(slog.NewTextHandler(logs, nil))
			accepting := newStore(t, o)
			closedURL, acceptURL := serve(t, closed, session.Config{}), serve(t, accepting, session.Config{})

			c := sessiontest.NewClient(t, closedURL)
			c.Want("POST", "/login/olive", 200, "welcome")
			testenv.Eventually(t, 10*time.Second, func() error {
				if code, body := c.Do("POST", "/set/n/1"); code != 200 {
					return fmt.Errorf("set: %d %q", code, body)
				}
				return nil
			})
			cookie := c.Token
			on := func(url string) (int, string) {
				cl := sessiontest.NewClient(t, url)
				cl.Token = cookie
				return cl.Do("GET", "/get/n")
			}

			fs.down()
			testenv.Eventually(t, 20*time.Second, func() error {
				if code, _ := on(closedURL); code != 503 {
					return fmt.Errorf("fail-closed instance answers %d during the outage, want 503", code)
				}
				return nil
			})
			if code, body := on(acceptURL); code != 200 || body != "true:1" {
				t.Fatalf("accepting instance answers %d %q during the outage, want the session", code, body)
			}
			testenv.Eventually(t, 10*time.Second, func() error {
				on(acceptURL) // the warning comes with a request that needed it
				if !strings.Contains(logs.String(), "revocation feed is behind") {
					return fmt.Errorf("no warning logged by the accepting instance: %q", logs)
				}
				return nil
			})
			// A request without a session needs no revocation check.
			fresh := sessiontest.NewClient(t, closedURL)
			fresh.Want("POST", "/set/new/1", 200, "ok")

			fs.back()
			testenv.Eventually(t, 30*time.Second, func() error {
				if code, body := on(closedURL); code != 200 || body != "true:1" {
					return fmt.Errorf("fail-closed instance answers %d %q after the store came back", code, body)
				}
				return nil
			})
			testenv.Eventually(t, 10*time.Second, func() error {
				if code, body := c.Do("POST", "/logout"); code != 200 {
					return fmt.Errorf("logout after recovery: %d %q", code, body)
				}
				return nil
			})
			testenv.Eventually(t, 10*time.Second, func() error {
				if _, body := on(acceptURL); body != "false:" {
					return fmt.Errorf("a logout after recovery did not reach the other instance: %q", body)
				}
				return nil
			})
		})
	}
}

// TestResubscribesAfterLosingItsSubscription: the Redis server kills every
// Pub/Sub connection (as it does to a client whose output buffer
// overflows). With polling off, only a resubscription and a catch-up from
// the log can bring the revocations made meanwhile and after, so an
// instance that reconnected without resubscribing (socket.io#4845) fails.
func TestResubscribesAfterLosingItsSubscription(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	o := cookiestore.Options{URL: "redis://" + srv.Addr(), MaxLag: time.Hour, PollInterval: time.Hour}
	stores := instances(t, 2, o)
	a, b := serve(t, stores[0], session.Config{}), serve(t, stores[1], session.Config{})
	for round := range 3 {
		c := sessiontest.NewClient(t, a)
		c.Want("POST", "/set/k/v", 200, "ok")
		copied := c.Token
		if _, err := srv.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
			t.Fatal(err)
		}
		c.Want("POST", "/logout", 200, "bye")
		refusedOn(t, b, copied, fmt.Sprintf("round %d, logout made while the subscription was down", round))
	}
}

// TestWatchSurvivesServerRestart: with polling off, only the bucket watch
// can bring a logout to the other instance, so it must be live again after
// the NATS server restarts.
func TestWatchSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	n := testenv.NATS(t)
	o := cookiestore.Options{URL: n.URL(), MaxLag: time.Hour, PollInterval: time.Hour}
	stores := instances(t, 2, o)
	a, b := serve(t, stores[0], session.Config{}), serve(t, stores[1], session.Config{})
	for round := range 2 {
		c := sessiontest.NewClient(t, a)
		c.Want("POST", "/set/k/v", 200, "ok")
		copied := c.Token
		n.Restart()
		testenv.Eventually(t, 20*time.Second, func() error {
			if code, body := c.Do("POST", "/logout"); code != 200 {
				return fmt.Errorf("logout after the restart: %d %q", code, body)
			}
			return nil
		})
		refusedOn(t, b, copied, fmt.Sprintf("round %d, logout made after the server restarted", round))
	}
}

// TestLogoutDuringOutageFailsThenItsRetryReachesEveryone: a logout that
// cannot publish its revocation fails (503) and changes nothing, so that
// the client's retry, once the store is back, still has something to
// revoke and every instance hears of it.
func TestLogoutDuringOutageFailsThenItsRetryReachesEveryone(t *testing.T) {
	t.Parallel()
	fs := redisServer(t, true)
	stores := instances(t, 2, cookiestore.Options{URL: fs.url, MaxLag: time.Hour})
	a, b := serve(t, stores[0], session.Config{StoreTimeout: 500 * time.Millisecond}), serve(t, stores[1], session.Config{})
	c := sessiontest.NewClient(t, a)
	c.Want("POST", "/login/ursula", 200, "welcome")
	copied := c.Token
	fs.down()
	if code, _ := c.Do("POST", "/logout"); code != 503 {
		t.Fatalf("logout with the store down answered %d, want 503", code)
	}
	if c.Token != copied {
		t.Fatal("a failed logout changed the client's cookie")
	}
	fs.back()
	testenv.Eventually(t, 20*time.Second, func() error {
		if code, body := c.Do("POST", "/logout"); code != 200 {
			return fmt.Errorf("retried logout: %d %q", code, body)
		}
		return nil
	})
	refusedOn(t, b, copied, "retried logout")
}

// TestLatePollerConfirmsOnDemand: an instance whose poller has not
// confirmed within MaxLag while the feed is up (in production, a poller
// starved of CPU; here, one that never polls) confirms on demand for the
// request, at the cost of one round trip, instead of refusing it.
func TestLatePollerConfirmsOnDemand(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	st := newStore(t, cookiestore.Options{URL: "redis://" + srv.Addr(), MaxLag: 50 * time.Millisecond, PollInterval: time.Hour})
	u := serve(t, st, session.Config{})
	c := sessiontest.NewClient(t, u)
	c.Want("POST", "/login/lena", 200, "welcome")
	for start := time.Now(); time.Since(start) < 500*time.Millisecond; {
		c.Want("GET", "/user", 200, "lena")
	}
}
