package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/redisstore"
	"github.com/unstuck-dev/unstuck/session/sessiontest"
)

func newStore(t *testing.T, o redisstore.Options) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	// With its append-only file, so a restart keeps the data.
	srv := testenv.Redis(t, testenv.RedisOptions{AOF: true})
	o := sessiontest.Options{Restart: srv.Restart}
	t.Run("Plain", func(t *testing.T) {
		sessiontest.RunWith(t, func(t *testing.T) session.Store {
			return newStore(t, redisstore.Options{URL: srv.URL()})
		}, o)
	})
	t.Run("NearCache", func(t *testing.T) {
		sessiontest.RunWith(t, func(t *testing.T) session.Store {
			return newStore(t, redisstore.Options{URL: srv.URL(), NearCache: true})
		}, o)
	})
}

func TestManagersOnOneRedis(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	// Three instances, each with its own client, as three processes.
	var stores []session.Store
	for i := range 3 {
		stores = append(stores, newStore(t, redisstore.Options{URL: srv.URL(), NearCache: i == 2}))
	}
	sessiontest.RunManagers(t, stores)
}

func TestNoKeysOrScanAndOneRoundTripPerWrite(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	st := newStore(t, redisstore.Options{URL: srv.URL()})
	m, err := session.New(session.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(sessiontest.Shop(m))
	defer hs.Close()
	c := sessiontest.NewClient(t, hs.URL)
	c.Want("POST", "/set/a/1", 200, "ok")
	c.Want("POST", "/login/u1", 200, "welcome")
	c.Want("GET", "/get/a", 200, "true:1")
	if _, err := m.DestroyAllForUser(context.Background(), "u1"); err != nil {
		t.Fatal(err)
	}
	before := commandCalls(t, srv)
	c2 := sessiontest.NewClient(t, hs.URL)
	c2.Want("POST", "/set/a/1", 200, "ok") // create: one script
	c2.Want("POST", "/set/b/2", 200, "ok") // load + one script
	after := commandCalls(t, srv)
	if d := after["evalsha"] + after["eval"] - before["evalsha"] - before["eval"]; d != 2 {
		t.Fatalf("two writes ran %d scripts, want 2 (one round trip each)", d)
	}
	for cmd := range after {
		if cmd == "keys" || cmd == "scan" {
			t.Fatalf("%s was used", strings.ToUpper(cmd))
		}
	}
}

// commandCalls reads INFO commandstats: command name -> calls.
func commandCalls(t *testing.T, srv *testenv.RedisServer) map[string]int {
	t.Helper()
	info, err := srv.Do("INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		out[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.Atoi(n)
	}
	return out
}

func TestNearCacheSeesWriteFromOtherInstanceAtOnce(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	var urls []string
	for range 2 {
		st := newStore(t, redisstore.Options{URL: srv.URL(), NearCache: true})
		m, err := session.New(session.Config{Store: st})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(sessiontest.Shop(m))
		t.Cleanup(hs.Close)
		urls = append(urls, hs.URL)
	}
	a := sessiontest.NewClient(t, urls[0])
	a.Want("POST", "/set/n/0", 200, "ok")
	b := sessiontest.NewClient(t, urls[1])
	b.Token = a.Token
	b.Want("GET", "/get/n", 200, "true:0") // now cached on B

	// Repeated reads on B hit its near cache: no HGETALL reaches Redis.
	before := commandCalls(t, srv)["hgetall"]
	for range 5 {
		b.Want("GET", "/get/n", 200, "true:0")
	}
	if got := commandCalls(t, srv)["hgetall"] - before; got != 0 {
		t.Fatalf("5 cached reads sent %d HGETALL to Redis, want 0", got)
	}
	for i := 1; i <= 20; i++ {
		a.Want("POST", "/set/n/"+strconv.Itoa(i), 200, "ok")
		b.Token = a.Token // one browser, one cookie jar
		b.Want("GET", "/get/n", 200, "true:"+strconv.Itoa(i))
	}
}

func TestOutageAnswers503AndRecovers(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t, testenv.RedisOptions{AOF: true})
	st := newStore(t, redisstore.Options{URL: srv.URL()})
	m, err := session.New(session.Config{Store: st, StoreTimeout: time.Second, RetryAfter: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(sessiontest.Shop(m))
	defer hs.Close()
	c := sessiontest.NewClient(t, hs.URL)
	c.Want("POST", "/set/init/1", 200, "ok")
	for i := range 5 {
		c.Want("POST", "/cart/add", 200, strconv.Itoa(i+1))
	}
	token := c.Token

	var acked, attempted, unavailable atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 30 * time.Second}
	for w := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				method, path := "GET", "/cart"
				if w%2 == 1 {
					method, path = "POST", "/cart/add"
					attempted.Add(1)
				}
				req, _ := http.NewRequest(method, hs.URL+path, nil)
				req.AddCookie(&http.Cookie{Name: "session", Value: token})
				start := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				// Bounded: a dead store must not hang a request (the
				// bound is loose on purpose; StoreTimeout is 1s).
				if el := time.Since(start); el > 10*time.Second {
					t.Errorf("%s %s took %v during the outage", method, path, el)
				}
				switch resp.StatusCode {
				case 200:
					n, _ := strconv.Atoi(string(b))
					if n < 5 {
						t.Errorf("%s %s served cart %q: an empty or stale session", method, path, b)
					}
					if method == "POST" {
						acked.Add(1)
					}
				case 503:
					unavailable.Add(1)
					if resp.Header.Get("Retry-After") != "2" {
						t.Errorf("503 without Retry-After: %v", resp.Header)
					}
				default:
					t.Errorf("%s %s = %d %s", method, path, resp.StatusCode, b)
				}
				if len(resp.Cookies()) > 0 {
					t.Errorf("%s %s during the outage issued a cookie: %v", method, path, resp.Cookies())
				}
			}
		})
	}
	srv.Kill()
	testenv.Eventually(t, 20*time.Second, func() error {
		if unavailable.Load() < 10 {
			return fmt.Errorf("%d 503s so far", unavailable.Load())
		}
		return nil
	})
	srv.Restart()
	// The app recovers by itself: no restart of the Manager or client.
	testenv.Eventually(t, 20*time.Second, func() error {
		code, body := c.Do("GET", "/cart")
		if code != 200 {
			return fmt.Errorf("GET /cart = %d %s", code, body)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	// The restarted Redis forgot the Lua scripts; the pipelined login
	// path must load them again.
	c.Want("POST", "/login/after-restart", 200, "welcome")
	code, body := c.Do("GET", "/cart")
	n, _ := strconv.Atoi(body)
	if code != 200 || int64(n) < 5+acked.Load() || int64(n) > 5+attempted.Load() {
		t.Fatalf("after recovery cart = %d %q; want between %d (acknowledged adds kept) and %d", code, body, 5+acked.Load(), 5+attempted.Load())
	}
}

func TestClusterNodeKilledFailsOnlyItsSlots(t *testing.T) {
	t.Parallel()
	cl := testenv.RedisCluster(t, 3)
	t.Run("Conformance", func(t *testing.T) {
		sessiontest.Run(t, func(t *testing.T) session.Store {
			return newStore(t, redisstore.Options{URL: cl.URL(), NearCache: true})
		})
	})

	st := newStore(t, redisstore.Options{URL: cl.URL()})
	ctx := context.Background()
	now := time.Now()
	ids := make([]string, 60)
	byNode := map[int][]string{}
	for i := range ids {
		ids[i] = fmt.Sprintf("%064x", i+1)
		if _, err := st.Commit(ctx, ids[i], session.Change{Create: true, Set: map[string][]byte{"n": []byte(strconv.Itoa(i))}, Created: now, Deadline: now.Add(time.Hour), IdleDeadline: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		node := cl.NodeForKey(t, st.Key(ids[i]))
		byNode[node] = append(byNode[node], ids[i])
	}
	if len(byNode) != 3 {
		t.Fatalf("sessions landed on %d nodes, want 3", len(byNode))
	}
	victim := cl.NodeForKey(t, st.Key(ids[0]))
	cl.Nodes[victim].Kill()
	killed := time.Now()
	var wg sync.WaitGroup
	for node, nodeIDs := range byNode {
		for _, id := range nodeIDs {
			wg.Go(func() {
				short, cancel := context.WithTimeout(ctx, time.Second)
				r, err := st.Load(short, id)
				cancel()
				switch {
				case node == victim && err == nil:
					t.Errorf("session on the killed node loaded without error (record %v)", r != nil)
				case node != victim && (err != nil || r == nil):
					t.Errorf("session on a live node: %v, %v", r, err)
				}
			})
		}
	}
	wg.Wait()
	t.Logf("loads with one node down took %v", time.Since(killed))
	cl.Nodes[victim].Restart()
	cl.WaitHealthy(t)
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, id := range ids {
			if _, err := st.Load(ctx, id); err != nil {
				return err
			}
		}
		return nil
	})
	// The killed node had no persistence: its sessions are gone (fresh
	// sessions for those users), the others kept theirs, and new
	// sessions land on every node again.
	for node, nodeIDs := range byNode {
		for _, id := range nodeIDs {
			r, err := st.Load(ctx, id)
			if err != nil || (node != victim && r == nil) {
				t.Fatalf("after recovery: %v, %v", r, err)
			}
		}
	}
	for _, id := range byNode[victim] {
		if _, err := st.Commit(ctx, id, session.Change{Create: true, Created: now, Deadline: now.Add(time.Hour)}); err != nil && !errors.Is(err, session.ErrConflict) {
			t.Fatalf("write to the recovered node: %v", err)
		}
	}
}

// TestLostReplyAppliedOnce: a Commit or Delete that reached Redis and was
// applied, whose reply was lost with its connection, is repeated on a
// fresh connection and recognised: the change counts once, the version
// grows by one, the repeated Delete returns what it deleted.
func TestLostReplyAppliedOnce(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	cut := testenv.CutReplies(t, srv.Addr())
	for _, near := range []bool{false, true} {
		st := newStore(t, redisstore.Options{URL: "redis://" + cut.Addr(), NearCache: near})
		ctx := t.Context()
		id := strings.Repeat(strconv.FormatBool(near)[:1], 64)
		now := time.Now()
		v1, err := st.Commit(ctx, id, session.Change{Create: true, Created: now, Deadline: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		cuts := cut.Cuts()
		cut.Arm("EVALSHA")
		// Conditional on the key being absent: applied twice, it would
		// conflict with itself.
		v2, err := st.Commit(ctx, id, session.Change{Expect: map[string][]byte{"n": nil}, Set: map[string][]byte{"n": []byte("1")}})
		if err != nil || v2 != v1+1 {
			t.Fatalf("near=%v: Commit whose reply was lost = %d, %v; want version %d", near, v2, err, v1+1)
		}
		cut.Arm("EVALSHA")
		r, err := st.Delete(ctx, id)
		if err != nil || r == nil || string(r.Values["n"]) != "1" || r.Version != v2 {
			t.Fatalf("near=%v: Delete whose reply was lost = %+v, %v; want the record at version %d", near, r, err, v2)
		}
		if got := cut.Cuts() - cuts; got != 2 {
			t.Fatalf("near=%v: %d replies lost, want 2: the test did not test", near, got)
		}
	}
}
