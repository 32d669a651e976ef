package sessionbench

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"
	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/cookiestore"
	"github.com/unstuck-dev/unstuck/session/memstore"
	"github.com/unstuck-dev/unstuck/session/natsstore"
	rstore "github.com/unstuck-dev/unstuck/session/redisstore"
)

// clients is the number of concurrent clients, each with its own session.
const clients = 64

// Both libraries get the same policy: 30 minutes idle, 24 hours absolute.
const (
	idle     = 30 * time.Minute
	lifetime = 24 * time.Hour
)

type system struct {
	name   string
	routes map[string]http.Handler // scenario -> handler
	cookie string                  // cookie name
	trips  func() int64            // round trips to the store so far
}

var scenarios = []string{"read", "write", "login"}

// countingClient counts the round trips a rueidis client makes: every
// command or pipeline sent, and cached reads that missed the near cache.
type countingClient struct {
	rueidis.Client
	n *atomic.Int64
}

func (c countingClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	c.n.Add(1)
	return c.Client.Do(ctx, cmd)
}

func (c countingClient) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	c.n.Add(1)
	return c.Client.DoMulti(ctx, cmds...)
}

func (c countingClient) DoCache(ctx context.Context, cmd rueidis.Cacheable, ttl time.Duration) rueidis.RedisResult {
	r := c.Client.DoCache(ctx, cmd, ttl)
	if !r.IsCacheHit() {
		c.n.Add(1)
	}
	return r
}

// countingConn counts redigo round trips (Send only buffers; Do flushes).
type countingConn struct {
	redis.Conn
	n *atomic.Int64
}

func (c countingConn) Do(cmd string, args ...any) (any, error) {
	if cmd != "" { // Do("") only flushes and reads pending replies
		c.n.Add(1)
	}
	return c.Conn.Do(cmd, args...)
}

func ours(name string, st session.Backend, trips func() int64) system {
	m, err := session.New(session.Config{Store: st, IdleTimeout: idle, Lifetime: lifetime})
	if err != nil {
		panic(err)
	}
	var user atomic.Int64
	return system{name: name, cookie: "session", trips: trips, routes: map[string]http.Handler{
		"read": m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, _, err1 := session.Get[string](r.Context(), "user")
			c, _, err2 := session.Get[int](r.Context(), "cart")
			if err1 != nil || err2 != nil || u == "" || c != 3 {
				http.Error(w, "bad session", 500)
			}
		})),
		"write": m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := session.Set(r.Context(), "last", time.Now().UnixNano()); err != nil {
				http.Error(w, err.Error(), 500)
			}
		})),
		"login": m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := session.RenewToken(r.Context()); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			if err := session.SetUser(r.Context(), "u"+strconv.FormatInt(user.Add(1)%clients, 10)); err != nil {
				http.Error(w, err.Error(), 500)
			}
		})),
		"setup": m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = session.Set(r.Context(), "user", "someone")
			_ = session.Set(r.Context(), "cart", 3)
		})),
	}}
}

func scsSystem(addr string) system {
	var n atomic.Int64
	pool := &redis.Pool{
		MaxIdle: clients, MaxActive: 0, IdleTimeout: time.Minute,
		Dial: func() (redis.Conn, error) {
			c, err := redis.Dial("tcp", addr)
			if err != nil {
				return nil, err
			}
			return countingConn{Conn: c, n: &n}, nil
		},
	}
	sm := scs.New()
	sm.Store = redisstore.New(pool)
	sm.IdleTimeout = idle
	sm.Lifetime = lifetime
	var user atomic.Int64
	return system{name: "scs+redis", cookie: sm.Cookie.Name, trips: n.Load, routes: map[string]http.Handler{
		"read": sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if sm.GetString(r.Context(), "user") == "" || sm.GetInt(r.Context(), "cart") != 3 {
				http.Error(w, "bad session", 500)
			}
		})),
		"write": sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sm.Put(r.Context(), "last", time.Now().UnixNano())
		})),
		"login": sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := sm.RenewToken(r.Context()); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			sm.Put(r.Context(), "userID", "u"+strconv.FormatInt(user.Add(1)%clients, 10))
		})),
		"setup": sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sm.Put(r.Context(), "user", "someone")
			sm.Put(r.Context(), "cart", 3)
		})),
	}}
}

func setup(b *testing.B) []system {
	ctx := context.Background()
	srv := testenv.Redis(b)
	ns := testenv.NATS(b)
	var systems []system

	mem := memstore.New(memstore.Options{MaxSessions: 1 << 20})
	b.Cleanup(func() { mem.Close() })
	systems = append(systems, ours("memory", mem, func() int64 { return 0 }))

	for _, near := range []bool{false, true} {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: !near})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		var n atomic.Int64
		st, err := rstore.New(rstore.Options{Client: countingClient{Client: c, n: &n}, NearCache: near})
		if err != nil {
			b.Fatal(err)
		}
		name := "redis"
		if near {
			name = "redis+near"
		}
		systems = append(systems, ours(name, st, n.Load))
	}

	for _, near := range []bool{false, true} {
		nc, err := nats.Connect(ns.URL())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		st, err := natsstore.New(ctx, natsstore.Options{Conn: nc, Bucket: "bench" + strconv.FormatBool(near), NearCache: near})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		name := "nats"
		if near {
			name = "nats+near"
		}
		// Every JetStream call is one request message: count those.
		systems = append(systems, ours(name, st, func() int64 { return int64(nc.Stats().OutMsgs) }))
	}

	// Sessions sealed into the cookie; revocations through the same
	// Redis (a login revokes the old id: one round trip; the feed's poll
	// adds one every second, counted too).
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	var n atomic.Int64
	key := make([]byte, 32)
	cs, err := cookiestore.New(ctx, cookiestore.Options{Keys: [][]byte{key}, Redis: countingClient{Client: c, n: &n}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cs.Close() })
	systems = append(systems, ours("cookie", cs, n.Load))

	systems = append(systems, scsSystem(srv.Addr()))
	return systems
}

// BenchmarkSessions measures one request through each library's middleware
// per op (the handler is called directly, so only session work and the
// store are measured), 64 concurrent clients each with its own session.
// rt/op is the mean number of store round trips per request; req-B/op and
// resp-B/op the bytes the session adds to each request (its Cookie header)
// and response (its Set-Cookie headers).
func BenchmarkSessions(b *testing.B) {
	systems := setup(b)
	for _, sc := range scenarios {
		for _, sys := range systems {
			b.Run(sc+"/"+sys.name, func(b *testing.B) { run(b, sys, sc) })
		}
	}
}

// client is one browser: its current cookie.
type client struct{ cookie *http.Cookie }

// wire counts the bytes sessions add to requests and responses.
type wire struct{ req, resp atomic.Int64 }

func (c *client) do(b *testing.B, sys system, h http.Handler, w *wire) {
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = net.JoinHostPort("127.0.0.1", "1")
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		b.Errorf("%s: %d %s", sys.name, rec.Code, rec.Body)
		return
	}
	var out int
	for _, line := range rec.Header().Values("Set-Cookie") {
		out += len("Set-Cookie: \r\n") + len(line)
		ck, err := http.ParseSetCookie(line)
		if err == nil && ck.Name == sys.cookie {
			c.cookie = &http.Cookie{Name: ck.Name, Value: ck.Value}
		}
	}
	if w != nil {
		if v := req.Header.Get("Cookie"); v != "" {
			w.req.Add(int64(len("Cookie: \r\n") + len(v)))
		}
		w.resp.Add(int64(out))
	}
}

func run(b *testing.B, sys system, scenario string) {
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = &client{}
		cs[i].do(b, sys, sys.routes["setup"], nil)
		cs[i].do(b, sys, sys.routes["read"], nil) // warm any cache, as a returning user would
	}
	var next atomic.Int64
	var w wire
	h := sys.routes[scenario]
	before := sys.trips()
	b.SetParallelism((clients + 1) / 2) // 64 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := cs[int(next.Add(1)-1)%clients]
		for pb.Next() {
			c.do(b, sys, h, &w)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(sys.trips()-before)/float64(b.N), "rt/op")
	b.ReportMetric(float64(w.req.Load())/float64(b.N), "req-B/op")
	b.ReportMetric(float64(w.resp.Load())/float64(b.N), "resp-B/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
