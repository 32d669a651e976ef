package lb

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// fakeReq is a request head for routing without a network.
type fakeReq struct {
	cookies map[string]string
	headers map[string]string
	ip      netip.Addr
	secure  bool
}

func (r *fakeReq) Header(n string) []byte {
	if v, ok := r.headers[n]; ok {
		return []byte(v)
	}
	return nil
}

func (r *fakeReq) Cookie(n string) []byte {
	if v, ok := r.cookies[n]; ok {
		return []byte(v)
	}
	return nil
}
func (r *fakeReq) ClientIP() netip.Addr { return r.ip }
func (r *fakeReq) Secure() bool         { return r.secure }

// testConfig is three backends on unused ports (nothing dials them here).
func testConfig(mut func(*Config)) *Config {
	c := &Config{
		Backends: []BackendConfig{
			{Name: "a", URL: "http://127.0.0.1:1"},
			{Name: "b", URL: "http://127.0.0.1:2"},
			{Name: "c", URL: "http://127.0.0.1:3"},
		},
		Sticky: StickyConfig{Secrets: []string{secretA}},
		Admin:  AdminConfig{Listen: "off"},
	}
	if mut != nil {
		mut(c)
	}
	return c
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestBalancer(t *testing.T, cfg *Config) *Balancer {
	t.Helper()
	bl, err := New(cfg, Options{Logger: quietLogger(), Tick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bl.Close() })
	return bl
}

// client is a browser-ish user: it keeps the sticky cookie it is given.
type client struct {
	req fakeReq
}

func newClient(ip string) *client {
	return &client{req: fakeReq{ip: netip.MustParseAddr(ip), cookies: map[string]string{}}}
}

// do routes one request, ends it successfully, and keeps any new cookie.
func (c *client) do(t *testing.T, bl *Balancer) (backend, setCookie string) {
	t.Helper()
	tg, err := bl.route(&c.req, 0, nil)
	if err != nil {
		t.Fatalf("route: %v", err)
	}
	tg.Done(proxy.Outcome{Status: 200, Duration: time.Millisecond})
	c.absorb(tg.SetCookie)
	return tg.Upstream.Name(), tg.SetCookie
}

func (c *client) absorb(setCookie string) {
	if setCookie == "" {
		return
	}
	nv, _, _ := strings.Cut(setCookie, ";")
	name, val, _ := strings.Cut(nv, "=")
	c.req.cookies[name] = val
}

func TestStickyCookiePinsAndIsSetOnce(t *testing.T) {
	bl := newTestBalancer(t, testConfig(nil))
	c := newClient("10.0.0.1")
	first, sc := c.do(t, bl)
	if !strings.HasPrefix(sc, "unstuck_affinity=") || !strings.Contains(sc, "HttpOnly") ||
		!strings.Contains(sc, "SameSite=Lax") || !strings.Contains(sc, "Path=/") ||
		strings.Contains(sc, "Secure") || strings.Contains(sc, "Max-Age") || strings.Contains(sc, "127.0.0.1") {
		t.Fatalf("first response Set-Cookie %q", sc)
	}
	for range 20 {
		b, sc := c.do(t, bl)
		if b != first || sc != "" {
			t.Fatalf("pinned to %s, went to %s (Set-Cookie %q)", first, b, sc)
		}
	}
	// Round-robin still spreads new users.
	seen := map[string]bool{}
	for range 3 {
		b, _ := newClient("10.0.0.2").do(t, bl)
		seen[b] = true
	}
	if len(seen) != 3 {
		t.Fatalf("three new users went to %v", seen)
	}
}

func TestBadCookieIsReplacedNeverAnError(t *testing.T) {
	bl := newTestBalancer(t, testConfig(nil))
	good := mustSigner(t, "", secretA).Sign(Pin{Backend: "b", Expires: time.Now().Add(20 * time.Hour), User: 5})
	for name, v := range map[string]string{
		"forged":    strings.Replace(good, ".b.", ".c.", 1),
		"expired":   mustSigner(t, "", secretA).Sign(Pin{Backend: "b", Expires: time.Now().Add(-time.Second), User: 5}),
		"truncated": good[:len(good)-5],
		"garbage":   "%%%not a cookie",
		"other key": mustSigner(t, "", secretB).Sign(Pin{Backend: "b", Expires: time.Now().Add(time.Hour), User: 5}),
	} {
		c := newClient("10.0.0.3")
		c.req.cookies[DefaultCookieName] = v
		b, sc := c.do(t, bl)
		if sc == "" {
			t.Errorf("%s cookie: no replacement cookie", name)
		}
		// The replacement pins to where this request went.
		if again, sc2 := c.do(t, bl); again != b || sc2 != "" {
			t.Errorf("%s: replacement cookie does not pin (%s then %s)", name, b, again)
		}
	}
	c := newClient("10.0.0.3")
	c.req.cookies[DefaultCookieName] = good
	if b, sc := c.do(t, bl); b != "b" || sc != "" {
		t.Errorf("good cookie: went to %s, Set-Cookie %q", b, sc)
	}
	// A value past half its TTL is refreshed, to the same backend.
	c.req.cookies[DefaultCookieName] = mustSigner(t, "", secretA).Sign(Pin{Backend: "b", Expires: time.Now().Add(time.Hour), User: 5})
	if b, sc := c.do(t, bl); b != "b" || !strings.Contains(sc, ".b.") {
		t.Errorf("aging cookie: went to %s, Set-Cookie %q", b, sc)
	}
}

func TestSecureCookieAndMaxAge(t *testing.T) {
	bl := newTestBalancer(t, testConfig(func(c *Config) { c.Sticky.MaxAge = time.Hour }))
	c := newClient("10.0.0.4")
	c.req.secure = true
	_, sc := c.do(t, bl)
	if !strings.Contains(sc, "; Secure") || !strings.Contains(sc, "Max-Age=3600") {
		t.Fatalf("TLS client Set-Cookie %q", sc)
	}
}

// Two balancers that share nothing but the config agree on every cookie.
func TestTwoBalancersAgreeOnCookies(t *testing.T) {
	a := newTestBalancer(t, testConfig(nil))
	b := newTestBalancer(t, testConfig(func(c *Config) { c.Policy.Name = PolicyRandom }))
	for i := range 30 {
		c := newClient("10.1.0.1")
		pinned, _ := c.do(t, a)
		if i%2 == 0 {
			pinned, _ = c.do(t, b) // first request on b, later ones on a
		}
		for j := range 4 {
			lbx := a
			if j%2 == 1 {
				lbx = b
			}
			if got, sc := c.do(t, lbx); got != pinned || sc != "" {
				t.Fatalf("user pinned to %s sent to %s (Set-Cookie %q)", pinned, got, sc)
			}
		}
	}
}

func TestFailoverRepinsAndCounts(t *testing.T) {
	bl := newTestBalancer(t, testConfig(nil))
	c := newClient("10.0.0.5")
	first, _ := c.do(t, bl)
	v := bl.view.Load()
	v.byName[first].healthy.Store(false) // as active checks would
	moved, sc := c.do(t, bl)
	if moved == first || sc == "" {
		t.Fatalf("pinned backend down: went to %s (was %s), Set-Cookie %q", moved, first, sc)
	}
	if again, sc := c.do(t, bl); again != moved || sc != "" {
		t.Fatalf("after re-pin: %s, Set-Cookie %q", again, sc)
	}
	// The old backend comes back: the user stays where it was re-pinned.
	v.byName[first].healthy.Store(true)
	if again, _ := c.do(t, bl); again != moved {
		t.Fatalf("user bounced back to %s", again)
	}
	if got := counterValue(t, bl, "unstuck_lb_repins_total", "down"); got != 1 {
		t.Fatalf("repins{down} = %v, want 1", got)
	}
	// A retry (attempt 1) avoids the failed backend and re-pins.
	tg, err := bl.route(&c.req, 1, []*proxy.Upstream{v.byName[moved].up})
	if err != nil || tg.Upstream.Name() == moved || tg.SetCookie == "" {
		t.Fatalf("retry went to %v (%v), Set-Cookie %q", tg.Upstream, err, tg.SetCookie)
	}
	tg.Done(proxy.Outcome{Status: 200})
}

func TestNoBackendIsErrNoUpstream(t *testing.T) {
	bl := newTestBalancer(t, testConfig(func(c *Config) {
		c.Backends = c.Backends[:1]
		zero := 0
		c.Health.PanicThreshold = &zero
	}))
	bl.view.Load().backends[0].healthy.Store(false)
	if _, err := bl.route(&newClient("10.0.0.6").req, 0, nil); !errors.Is(err, proxy.ErrNoUpstream) {
		t.Fatalf("route with every backend down: %v", err)
	}
}

func TestPassiveEjectionGrowsAndIsBounded(t *testing.T) {
	bl := newTestBalancer(t, testConfig(func(c *Config) {
		c.Health.Passive = PassiveHealthConfig{Failures: 3, Ejection: time.Hour, MaxEjection: 3 * time.Hour, MaxEjectedPercent: 34}
	}))
	v := bl.view.Load()
	a, b := v.byName["a"], v.byName["b"]
	fail := func(x *Backend, n int, o proxy.Outcome) {
		for range n {
			x.inflight.Add(1)
			bl.done(x, o)
		}
	}
	fail(a, 2, proxy.Outcome{Status: 500})
	fail(a, 1, proxy.Outcome{Status: 200}) // a success resets the count
	fail(a, 2, proxy.Outcome{Err: errors.New("connection refused")})
	if a.state(time.Now().UnixNano()) != StateUp {
		t.Fatal("ejected before 3 failures in a row")
	}
	fail(a, 1, proxy.Outcome{Status: 502})
	if s := a.state(time.Now().UnixNano()); s != StateEjected {
		t.Fatalf("after 3 failures in a row: %s", s)
	}
	until := time.Unix(0, a.ejectedTo.Load())
	if d := time.Until(until); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("first ejection lasts %v", d)
	}
	// 34% of 3 backends: a second ejection would be 67%, so b stays in.
	fail(b, 5, proxy.Outcome{Status: 500})
	if s := b.state(time.Now().UnixNano()); s != StateUp {
		t.Fatalf("b %s though a is already ejected (max 34%%)", s)
	}
	// Nobody new goes to the ejected backend.
	for range 30 {
		if got, _ := newClient("10.0.0.7").do(t, bl); got == "a" {
			t.Fatal("new user sent to an ejected backend")
		}
	}
	// The second ejection of a lasts twice as long.
	a.ejectedTo.Store(0)
	fail(a, 3, proxy.Outcome{Status: 500})
	if d := time.Until(time.Unix(0, a.ejectedTo.Load())); d < 119*time.Minute {
		t.Fatalf("second ejection lasts %v, want 2h", d)
	}
	if got := counterValue(t, bl, "unstuck_lb_ejections_total", "a"); got != 2 {
		t.Fatalf("ejections{a} = %v", got)
	}
}

// TestPassiveHealthIgnores503ByDefault: an app whose shared store is down
// answers 503 on every instance; ejecting them would help nobody. Listed
// in health.passive.statuses, 503 counts.
func TestPassiveHealthIgnores503ByDefault(t *testing.T) {
	for _, listed := range []bool{false, true} {
		bl := newTestBalancer(t, testConfig(func(c *Config) {
			c.Health.Passive.Failures = 3
			if listed {
				c.Health.Passive.Statuses = []int{503}
			}
		}))
		a := bl.view.Load().byName["a"]
		for range 10 {
			a.inflight.Add(1)
			bl.done(a, proxy.Outcome{Status: 503})
		}
		if got := a.state(time.Now().UnixNano()) == StateEjected; got != listed {
			t.Fatalf("503 listed %v: ejected %v", listed, got)
		}
	}
}

// TestEjectionShareCountsBackendsInService: with two of four backends down,
// the two left are the ones in service, and at most half of them (one) may
// be ejected, so users always have somewhere to go.
func TestEjectionShareCountsBackendsInService(t *testing.T) {
	bl := newTestBalancer(t, testConfig(func(c *Config) {
		c.Backends = append(c.Backends, BackendConfig{Name: "d", URL: "http://127.0.0.1:4"})
		c.Health.Passive = PassiveHealthConfig{Failures: 1, MaxEjectedPercent: 50}
	}))
	v := bl.view.Load()
	v.byName["c"].healthy.Store(false)
	v.byName["d"].healthy.Store(false)
	now := func() int64 { return time.Now().UnixNano() }
	for _, name := range []string{"a", "b"} {
		x := v.byName[name]
		x.inflight.Add(1)
		bl.done(x, proxy.Outcome{Err: errors.New("connection refused")})
	}
	if sa, sb := v.byName["a"].state(now()), v.byName["b"].state(now()); sa != StateEjected || sb != StateUp {
		t.Fatalf("a %s, b %s: want a ejected and b kept, the last in service", sa, sb)
	}
}

func TestPanicModeSpreadsOverAll(t *testing.T) {
	bl := newTestBalancer(t, testConfig(nil)) // panic threshold 50%
	v := bl.view.Load()
	v.byName["a"].healthy.Store(false)
	v.byName["b"].healthy.Store(false)
	seen := map[string]int{}
	for range 30 {
		b, _ := newClient("10.0.0.8").do(t, bl)
		seen[b]++
	}
	if len(seen) != 3 {
		t.Fatalf("1 of 3 healthy (below 50%%): new users went to %v, want all three", seen)
	}
	v.byName["a"].healthy.Store(true) // 2 of 3: no panic
	for range 30 {
		if b, _ := newClient("10.0.0.8").do(t, bl); b == "b" {
			t.Fatal("down backend used outside panic mode")
		}
	}
}

func TestSlowStartRampsWeight(t *testing.T) {
	bl := newTestBalancer(t, testConfig(func(c *Config) { c.Health.SlowStart = time.Hour }))
	a := bl.view.Load().byName["a"]
	a.startRamp(time.Now(), time.Hour)
	if w := a.effectiveWeight(); w > 0.11 {
		t.Fatalf("weight right after coming back %v, want 0.1", w)
	}
	a.startRamp(time.Now().Add(-30*time.Minute), time.Hour)
	if w := a.effectiveWeight(); w < 0.49 || w > 0.51 {
		t.Fatalf("weight half way through slow start %v", w)
	}
	// Round-robin gives it its ramped share: 1/21 of picks at weight 0.1.
	a.startRamp(time.Now(), time.Hour)
	got := picks(&RoundRobin{}, bl.view.Load().backends, 210, nil)
	if got["a"] > 12 {
		t.Fatalf("ramping backend got %d of 210", got["a"])
	}
}

func TestDrainKeepsPinnedUsersThenDrains(t *testing.T) {
	bl := newTestBalancer(t, testConfig(func(c *Config) { c.Drain.Idle = 300 * time.Millisecond }))
	var pinned []*client
	for range 6 {
		c := newClient("10.0.1.1")
		if b, _ := c.do(t, bl); b == "a" {
			pinned = append(pinned, c)
		}
	}
	if len(pinned) != 2 {
		t.Fatalf("%d of 6 users on a", len(pinned))
	}
	if err := bl.Drain("a"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if b, _ := newClient("10.0.1.2").do(t, bl); b == "a" {
			t.Fatal("new user sent to a draining backend")
		}
		for _, c := range pinned {
			if b, sc := c.do(t, bl); b != "a" || sc != "" {
				t.Fatalf("pinned user moved off a draining backend to %s", b)
			}
		}
	}
	st, _ := bl.status("a")
	if st.State != StateDraining || st.PinnedUsers != 2 {
		t.Fatalf("status while draining: %+v", st)
	}
	// Users go quiet: after drain.idle it is drained, and they move.
	testenv.Eventually(t, 10*time.Second, func() error {
		if st, _ := bl.status("a"); st.State != StateDrained {
			return errors.New("state " + st.State)
		}
		return nil
	})
	for _, c := range pinned {
		if b, sc := c.do(t, bl); b == "a" || sc == "" {
			t.Fatalf("user still on drained backend (Set-Cookie %q)", sc)
		}
	}
	if err := bl.Undrain("a"); err != nil {
		t.Fatal(err)
	}
	if st, _ := bl.status("a"); st.State != StateUp {
		t.Fatalf("after undrain: %s", st.State)
	}
}

func TestSpillMovesDrainingAndOverloadedUsersAtOnce(t *testing.T) {
	bl := newTestBalancer(t, testConfig(func(c *Config) { c.Sticky.Spill = true }))
	c := newClient("10.0.2.1")
	first, _ := c.do(t, bl)
	v := bl.view.Load()
	// Overload: the pinned backend carries 9 in flight, the others none.
	v.byName[first].inflight.Add(9)
	moved, sc := c.do(t, bl)
	if moved == first || sc == "" {
		t.Fatalf("overloaded pinned backend kept its user (Set-Cookie %q)", sc)
	}
	v.byName[first].inflight.Add(-9)
	if got := counterValue(t, bl, "unstuck_lb_spills_total", first); got != 1 {
		t.Fatalf("spills{%s} = %v", first, got)
	}
	// Drain with spill: the user moves on the next request, and the
	// backend is drained without waiting for idle users.
	if err := bl.Drain(moved); err != nil {
		t.Fatal(err)
	}
	if again, _ := c.do(t, bl); again == moved {
		t.Fatal("spill: pinned user kept on a draining backend")
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if st, _ := bl.status(moved); st.State != StateDrained {
			return errors.New("state " + st.State)
		}
		return nil
	})
}

func TestHashPolicyThroughRoute(t *testing.T) {
	bl := newTestBalancer(t, testConfig(func(c *Config) {
		c.Policy = PolicyConfig{Name: PolicyHash, Key: "header:X-User"}
		c.Sticky.Mode = "none"
	}))
	owner := map[string]string{}
	for range 3 {
		for _, u := range []string{"ann", "bob", "cyd", "dan", "eve"} {
			c := newClient("10.0.3.1")
			c.req.headers = map[string]string{"X-User": u}
			b, sc := c.do(t, bl)
			if sc != "" {
				t.Fatal("cookie set with sticky none")
			}
			if o, ok := owner[u]; ok && o != b {
				t.Fatalf("user %s moved from %s to %s", u, o, b)
			}
			owner[u] = b
		}
	}
}

func TestAddRemoveAndApply(t *testing.T) {
	bl := newTestBalancer(t, testConfig(func(c *Config) { c.Drain.Idle = 100 * time.Millisecond }))
	if _, err := bl.Add(BackendConfig{Name: "d", URL: "http://127.0.0.1:4"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bl.Add(BackendConfig{Name: "d", URL: "http://127.0.0.1:5"}); err == nil {
		t.Fatal("duplicate name accepted")
	}
	if _, err := bl.Add(BackendConfig{Name: "e", URL: "gopher://x"}); err == nil {
		t.Fatal("bad URL accepted")
	}
	c := newClient("10.0.4.1")
	var onD bool
	for range 8 {
		c = newClient("10.0.4.1")
		if b, _ := c.do(t, bl); b == "d" {
			onD = true
			break
		}
	}
	if !onD {
		t.Fatal("added backend never chosen")
	}
	// DELETE drains, then removes; the pinned user is re-pinned.
	if err := bl.Remove("d"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, ok := bl.status("d"); ok {
			return errors.New("d still listed")
		}
		return nil
	})
	if b, sc := c.do(t, bl); b == "d" || sc == "" {
		t.Fatalf("user of a removed backend: %s, Set-Cookie %q", b, sc)
	}
	if got := counterValue(t, bl, "unstuck_lb_repins_total", "removed"); got != 1 {
		t.Fatalf("repins{removed} = %v", got)
	}
	// Apply keeps the state of backends that stay.
	a := bl.view.Load().byName["a"]
	a.total.Add(100)
	cfg := testConfig(func(c *Config) {
		c.Backends = c.Backends[:2]
		c.Policy.Name = PolicyLeastConn
		c.Drain.Idle = 100 * time.Millisecond
	})
	if _, err := bl.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if bl.view.Load().byName["a"] != a || len(bl.Backends()) != 2 {
		t.Fatal("reload replaced a backend that stayed")
	}
	bad := testConfig(func(c *Config) { c.Policy.Name = "nope" })
	if _, err := bl.Apply(bad); err == nil {
		t.Fatal("bad config applied")
	}
	if len(bl.Backends()) != 2 || bl.Config().Policy.Name != PolicyLeastConn {
		t.Fatal("refused config changed something")
	}
}

// counterValue reads one labelled counter from the balancer's registry.
func counterValue(t *testing.T, bl *Balancer, name, label string) float64 {
	t.Helper()
	mfs, err := bl.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestHashKeySources(t *testing.T) {
	r := &fakeReq{ip: netip.MustParseAddr("192.0.2.7"), headers: map[string]string{"X-User": "ann"}, cookies: map[string]string{"sid": "s1"}}
	ip := netip.MustParseAddr("192.0.2.7").As16()
	for _, c := range []struct {
		k    HashKey
		want string
	}{
		{HashKey{Source: "ip"}, string(ip[:])},
		{HashKey{Source: "header", Name: "X-User"}, "ann"},
		{HashKey{Source: "cookie", Name: "sid"}, "s1"},
		{HashKey{Source: "header", Name: "X-Missing"}, string(ip[:])}, // falls back to the client IP
		{HashKey{Source: "cookie", Name: "nope"}, string(ip[:])},
	} {
		if got := string(hashKey(c.k, r)); got != c.want {
			t.Errorf("%+v: key %q, want %q", c.k, got, c.want)
		}
	}
}

func TestCookieRefresh(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	session := &StickyConfig{TTL: 24 * time.Hour}
	persistent := &StickyConfig{TTL: 24 * time.Hour, MaxAge: time.Hour}
	for _, c := range []struct {
		sc     *StickyConfig
		issued time.Duration // ago
		want   bool
	}{
		{session, time.Minute, false},
		{session, 11 * time.Hour, false},
		{session, 13 * time.Hour, true}, // under half the TTL left
		{persistent, 20 * time.Minute, false},
		{persistent, 40 * time.Minute, true}, // the browser would drop it within 30m
	} {
		p := Pin{Backend: "a", Expires: now.Add(-c.issued).Add(c.sc.TTL)}
		if got := needsRefresh(p, now, c.sc); got != c.want {
			t.Errorf("max age %v, issued %v ago: refresh %v, want %v", c.sc.MaxAge, c.issued, got, c.want)
		}
	}
}

// byKey is an embedder's policy: a new user goes to the backend named by
// the request's key when it is offered, else to the first one.
type byKey struct {
	mu   sync.Mutex
	keys []string
}

func (p *byKey) Pick(bs []*Backend, key []byte) *Backend {
	p.mu.Lock()
	p.keys = append(p.keys, string(key))
	p.mu.Unlock()
	for _, b := range bs {
		if b.Name() == string(key) {
			return b
		}
	}
	return bs[0]
}

// A Policy given in Options picks for new users, with policy.key as its
// key; stickiness, health and drain work around it as around a built-in
// one, and it survives a reload that names another policy.
func TestPolicyFromOptions(t *testing.T) {
	p := &byKey{}
	cfg := testConfig(func(c *Config) { c.Policy.Key = "header:X-Backend" })
	bl, err := New(cfg, Options{Logger: quietLogger(), Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	c := newClient("10.0.0.1")
	c.req.headers = map[string]string{"X-Backend": "c"}
	if b, _ := c.do(t, bl); b != "c" {
		t.Fatalf("custom policy: went to %s, want c", b)
	}
	c.req.headers["X-Backend"] = "a"
	if b, _ := c.do(t, bl); b != "c" {
		t.Fatalf("the sticky cookie should pin to c; went to %s", b)
	}
	if err := bl.Drain("b"); err != nil {
		t.Fatal(err)
	}
	nb := newClient("10.0.0.2")
	nb.req.headers = map[string]string{"X-Backend": "b"}
	if b, _ := nb.do(t, bl); b == "b" {
		t.Fatal("a draining backend was offered to the policy")
	}
	if _, err := bl.Apply(testConfig(func(c *Config) { c.Policy = PolicyConfig{Name: PolicyLeastConn, Key: "header:X-Backend"} })); err != nil {
		t.Fatal(err)
	}
	na := newClient("10.0.0.3")
	na.req.headers = map[string]string{"X-Backend": "a"}
	if b, _ := na.do(t, bl); b != "a" {
		t.Fatalf("after reload: went to %s, want a (the custom policy)", b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if strings.Join(p.keys, ",") != "c,b,a" {
		t.Fatalf("keys given to Pick: %q", p.keys)
	}
}

// Building a view changes nothing, so a reload that fails half-way leaves
// no trace; install is where it meets the running balancer.
func TestBuildViewChangesNothingInstallDoes(t *testing.T) {
	bl := newTestBalancer(t, testConfig(func(c *Config) { c.Sticky.Secrets = nil }))
	old := bl.view.Load()
	cfg := testConfig(func(c *Config) {
		c.Sticky.Secrets = nil
		c.Backends[0].Weight = 7
		c.Backends = append(c.Backends, BackendConfig{Name: "d", URL: "http://127.0.0.1:4"})
	})
	cfg.ApplyDefaults()
	series := func(backend string) bool {
		mfs, err := bl.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "backend" && l.GetValue() == backend {
						return true
					}
				}
			}
		}
		return false
	}
	nv, err := bl.buildView(cfg, old)
	if err != nil {
		t.Fatal(err)
	}
	a := old.byName["a"]
	if bl.view.Load() != old || nv.byName["a"] != a || a.baseWeight() != 1 || series("d") {
		t.Fatal("buildView changed the running balancer")
	}
	if !nv.generated || string(nv.secrets[0]) != string(old.secrets[0]) {
		t.Fatal("the generated secret did not carry over")
	}
	bl.install(nv, old)
	if bl.view.Load() != nv || a.baseWeight() != 7 || !series("d") {
		t.Fatal("install did not apply the view")
	}
}
