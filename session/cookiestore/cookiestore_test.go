package cookiestore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/cookiestore"
	"github.com/unstuck-dev/unstuck/session/sessiontest"
)

func newKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// newStore returns a Store closed when the test ends.
func newStore(t *testing.T, o cookiestore.Options) *cookiestore.Store {
	t.Helper()
	if o.Keys == nil {
		o.Keys = [][]byte{newKey()}
	}
	if o.URL == "" && o.Redis == nil && o.NATS == nil {
		o.URL = "memory"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := cookiestore.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newManager(t *testing.T, cfg session.Config) *session.Manager {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = newStore(t, cookiestore.Options{})
	}
	m, err := session.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// limits are what the cookie store documents it does not do.
const limits = sessiontest.LosesConcurrentWrites | sessiontest.NoUserIndex

func TestConformanceOneProcess(t *testing.T) {
	st := newStore(t, cookiestore.Options{})
	sessiontest.RunManagersWith(t, []session.Backend{st, st, st}, sessiontest.Options{Limitations: limits})
}

// syncAll is the suite's Settle: every instance has applied every
// revocation committed before it was called.
func syncAll(stores ...*cookiestore.Store) func(context.Context) error {
	return func(ctx context.Context) error {
		for _, s := range stores {
			if err := s.Sync(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestSealedCookieRoundTripsEverything(t *testing.T) {
	m := newManager(t, session.Config{})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	c.Want("GET", "/get/name", 200, "false:")
	if c.Token != "" {
		t.Fatal("a read-only request without a session set a cookie")
	}
	c.Want("POST", "/set/name/ann", 200, "ok")
	first := c.Token
	c.Want("POST", "/set/color/red", 200, "ok")
	if c.Token == first {
		t.Fatal("a write did not send the new sealed session")
	}
	c.Want("POST", "/login/ann", 200, "welcome")
	c.Want("GET", "/user", 200, "ann")
	c.Want("GET", "/keys", 200, "color,name")
	c.Want("POST", "/cart/add", 200, "1")
	c.Want("POST", "/cart/add", 200, "2")
	c.Want("POST", "/del/color", 200, "ok")
	c.Want("GET", "/keys", 200, "cart,name")
	c.Want("POST", "/clear", 200, "ok")
	c.Want("GET", "/keys", 200, "")
	c.Want("GET", "/user", 200, "ann")
	if strings.Contains(c.Token, "ann") {
		t.Fatal("the cookie shows the user id in clear")
	}
}

func TestCookieAttributesAndNoPlaintext(t *testing.T) {
	m := newManager(t, session.Config{Cookie: session.CookieConfig{Name: "sid"}})
	h := sessiontest.Shop(m)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/set/secret/hunter2", nil))
	ck := rec.Result().Cookies()
	if len(ck) != 1 || ck[0].Name != "sid" || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteLaxMode || ck[0].Secure {
		t.Fatalf("cookie over plain HTTP = %+v; want sid, HttpOnly, SameSite=Lax, not Secure", ck)
	}
	if strings.Contains(ck[0].Value, "hunter2") || strings.Contains(ck[0].Value, "secret") {
		t.Fatal("the sealed cookie shows a value in clear")
	}
	tlsSrv := httptest.NewTLSServer(h)
	defer tlsSrv.Close()
	resp, err := tlsSrv.Client().Post(tlsSrv.URL+"/set/a/b", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ck := resp.Cookies(); len(ck) != 1 || !ck[0].Secure {
		t.Fatalf("cookie under TLS = %+v, want Secure", ck)
	}
}

func TestBadCookiesGetAFreshSession(t *testing.T) {
	key := newKey()
	m := newManager(t, session.Config{Store: newStore(t, cookiestore.Options{Keys: [][]byte{key}})})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	owner := sessiontest.NewClient(t, srv.URL)
	owner.Want("POST", "/set/secret/s3", 200, "ok")
	good := owner.Token

	// The same session sealed under a key this instance does not have.
	other := newManager(t, session.Config{})
	otherSrv := httptest.NewServer(sessiontest.Shop(other))
	defer otherSrv.Close()
	stranger := sessiontest.NewClient(t, otherSrv.URL)
	stranger.Want("POST", "/set/secret/s3", 200, "ok")

	flip := []byte(good)
	flip[len(flip)/2] ^= 1
	if flip[len(flip)/2] == '.' {
		flip[len(flip)/2] = 'A'
	}
	for name, v := range map[string]string{
		"garbage":     "%%%not-a-cookie;",
		"oversized":   strings.Repeat("A", 64<<10),
		"empty-ish":   "AAAA",
		"truncated":   good[:len(good)-5],
		"bit flipped": string(flip),
		"other key":   stranger.Token,
		"split lies":  "3." + good,
	} {
		t.Run(name, func(t *testing.T) {
			c := sessiontest.NewClient(t, srv.URL)
			c.Token = v
			c.Want("GET", "/get/secret", 200, "false:")
			c.Want("POST", "/set/x/1", 200, "ok")
			c.Want("GET", "/get/x", 200, "true:1")
			c.Want("GET", "/get/secret", 200, "false:")
		})
	}
}

func TestKeyRotation(t *testing.T) {
	oldKey, newKey := newKey(), newKey()
	before := newManager(t, session.Config{Store: newStore(t, cookiestore.Options{Keys: [][]byte{oldKey}})})
	during := newManager(t, session.Config{Store: newStore(t, cookiestore.Options{Keys: [][]byte{newKey, oldKey}})})
	after := newManager(t, session.Config{Store: newStore(t, cookiestore.Options{Keys: [][]byte{newKey}})})
	srvs := map[string]*httptest.Server{}
	for name, m := range map[string]*session.Manager{"before": before, "during": during, "after": after} {
		srvs[name] = httptest.NewServer(sessiontest.Shop(m))
		defer srvs[name].Close()
	}
	c := sessiontest.NewClient(t, srvs["before"].URL)
	c.Want("POST", "/set/k/v", 200, "ok")
	sealedByOld := c.Token
	c.URL = srvs["during"].URL
	c.Want("GET", "/get/k", 200, "true:v") // all keys open
	c.Want("POST", "/set/k2/v2", 200, "ok")
	if c.Token == sealedByOld {
		t.Fatal("no new cookie after a write")
	}
	c.URL = srvs["after"].URL // the first key sealed it
	c.Want("GET", "/get/k2", 200, "true:v2")
	stale := sessiontest.NewClient(t, srvs["after"].URL)
	stale.Token = sealedByOld
	stale.Want("GET", "/get/k", 200, "false:") // the old key is gone
}

func TestKeysAreCheckedWithClearErrors(t *testing.T) {
	ctx := context.Background()
	for name, o := range map[string]cookiestore.Options{
		"no keys":   {URL: "memory"},
		"short key": {URL: "memory", Keys: [][]byte{[]byte("0123456789abcdef0123456789abcde")}},
		"no feed":   {Keys: [][]byte{newKey()}},
		"two feeds": {Keys: [][]byte{newKey()}, URL: "memory", NATS: nil, Redis: nil, Name: ""},
		"bad url":   {Keys: [][]byte{newKey()}, URL: "postgres://x"},
		"tiny size": {Keys: [][]byte{newKey()}, URL: "memory", MaxCookieSize: 10},
		"too many":  {Keys: [][]byte{newKey()}, URL: "memory", MaxCookieSize: 100, MaxSize: 100000},
	} {
		if name == "two feeds" {
			continue // needs a live client; covered by the option check's own message
		}
		_, err := cookiestore.New(ctx, o)
		if err == nil || !strings.HasPrefix(err.Error(), "cookiestore: ") {
			t.Errorf("%s: err = %v, want a cookiestore error", name, err)
		}
	}
	_, err := cookiestore.New(ctx, cookiestore.Options{URL: "memory", Keys: [][]byte{newKey(), make([]byte, 8)}})
	if err == nil || !strings.Contains(err.Error(), "Keys[1] is 8 bytes") {
		t.Errorf("short second key: %v, want the index and size named", err)
	}
	keys, err := cookiestore.ParseKeys(strings.Repeat("ab", 32) + ", " + "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=")
	if err != nil || len(keys) != 2 || len(keys[0]) != 32 || len(keys[1]) != 32 {
		t.Fatalf("ParseKeys(hex, base64) = %d keys, %v", len(keys), err)
	}
	for _, bad := range []string{"", "abcd", "not a key at all!", strings.Repeat("ab", 31)} {
		if _, err := cookiestore.ParseKeys(bad); err == nil {
			t.Errorf("ParseKeys(%q) accepted", bad)
		}
	}
}

func TestTooLargeIsAClearError(t *testing.T) {
	m := newManager(t, session.Config{Store: newStore(t, cookiestore.Options{MaxCookieSize: 600})})
	var setErr atomic.Value
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/set":
			// The handler learns at once and can answer itself.
			err := session.Set(r.Context(), "big", strings.Repeat("x", 800))
			setErr.Store(err)
			if errors.Is(err, session.ErrValueTooLarge) {
				http.Error(w, "too big", http.StatusRequestEntityTooLarge)
			}
		case "/grow":
			// Small values that only together outgrow the cookie: each Set
			// fits until the last.
			for i := range 40 {
				if err := session.Set(r.Context(), "k"+strings.Repeat("k", i), strings.Repeat("v", 30)); err != nil {
					setErr.Store(err)
					break
				}
			}
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/set", nil))
	err, _ := setErr.Load().(error)
	if !errors.Is(err, session.ErrTooLarge) || !strings.Contains(err.Error(), "limit 600") || rec.Code != 413 {
		t.Fatalf("Set(800 bytes) into a 600-byte cookie: err = %v, status %d; want ErrTooLarge naming the limit, the handler's 413", err, rec.Code)
	}
	if len(rec.Result().Cookies()) != 0 {
		t.Fatal("a refused value still produced a cookie")
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/grow", nil))
	if err, _ := setErr.Load().(error); !errors.Is(err, session.ErrTooLarge) || rec.Code != 200 {
		t.Fatalf("growing session: err = %v, status %d; want ErrTooLarge from the Set that overflowed, the rest kept", err, rec.Code)
	}
	ck := rec.Result().Cookies()
	if len(ck) != 1 || len(ck[0].Value) > 600 {
		t.Fatalf("cookies after overflow = %d, want the session as it fitted", len(ck))
	}
}

// tightening is a real Store whose limit drops once tight is set: the
// only way to make a session that passed every Set outgrow its cookies at
// save, which the Manager must answer with 500 and a log line.
type tightening struct {
	*cookiestore.Store
	tight atomic.Bool
}

func (s *tightening) Seal(id string, r *session.Record) ([]string, error) {
	parts, err := s.Store.Seal(id, r)
	if err == nil && s.tight.Load() {
		return nil, fmt.Errorf("%w: sealed session is %d bytes, limit 10", session.ErrTooLarge, len(strings.Join(parts, "")))
	}
	return parts, err
}

func TestTooLargeAtSaveAnswers500AndLogsTheSize(t *testing.T) {
	logs := &cookiestore.LogBuffer{}
	st := &tightening{Store: newStore(t, cookiestore.Options{})}
	m := newManager(t, session.Config{Store: st, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.Set(r.Context(), "a", "fits"); err != nil {
			t.Error(err)
		}
		st.tight.Store(true)
		io.WriteString(w, "the handler's answer")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "handler's answer") || len(rec.Result().Cookies()) != 0 {
		t.Fatalf("status %d %q, %d cookies; want 500 instead of the handler's answer, no cookie", rec.Code, rec.Body, len(rec.Result().Cookies()))
	}
	if !strings.Contains(logs.String(), "does not fit in its cookies") || !strings.Contains(logs.String(), "bytes, limit 10") {
		t.Fatalf("log = %q; want a line naming the size", logs)
	}
}

func TestSplitOverSeveralCookiesAndStalePartsRemoved(t *testing.T) {
	st := newStore(t, cookiestore.Options{MaxCookieSize: 200, MaxSize: 1000})
	m := newManager(t, session.Config{Store: st})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	do := func(method, path string) (string, *http.Response) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp
	}
	names := func() []string {
		var out []string
		u := mustURL(srv.URL)
		for _, c := range jar.Cookies(u) {
			out = append(out, c.Name)
		}
		return out
	}
	do("POST", "/set/big/"+strings.Repeat("x", 500))
	if n := names(); len(n) < 3 {
		t.Fatalf("cookies after a 500-byte value with 200-byte cookies: %v, want it split over 3 or more", n)
	}
	if body, _ := do("GET", "/get/big"); body != "true:"+strings.Repeat("x", 500) {
		t.Fatalf("split session read back as %.40q", body)
	}
	_, resp := do("POST", "/set/big/small")
	if n := names(); len(n) != 1 || n[0] != "session" {
		t.Fatalf("cookies after shrinking: %v, want only session (stale parts removed)", n)
	}
	var expired int
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 && strings.HasPrefix(c.Name, "session.") {
			expired++
		}
	}
	if expired < 2 {
		t.Fatalf("the shrinking response expired %d stale parts, want every one the client held", expired)
	}
	if body, _ := do("GET", "/get/big"); body != "true:small" {
		t.Fatalf("after shrinking: %q", body)
	}
	do("POST", "/set/big/"+strings.Repeat("y", 2000))
	if body, _ := do("GET", "/get/big"); body != "true:small" {
		t.Fatalf("a value beyond MaxSize replaced the session: %.40q", body)
	}
	do("POST", "/set/big/"+strings.Repeat("z", 500))
	do("POST", "/logout")
	if n := names(); len(n) != 0 {
		t.Fatalf("cookies after logout: %v, want none", n)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestExpiredCookieIsANewSessionAndOnExpireRuns(t *testing.T) {
	var expired atomic.Int64
	m := newManager(t, session.Config{IdleTimeout: 300 * time.Millisecond, OnExpire: func(context.Context, session.Event) { expired.Add(1) }})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	c.Want("POST", "/set/a/1", 200, "ok")
	old := c.Token
	// The cookie's own idle deadline is what ends it: no store to ask.
	testenv.Eventually(t, 10*time.Second, func() error {
		c.Token = old
		if _, body := c.Do("GET", "/get/a"); body != "false:" {
			return fmt.Errorf("GET after the idle timeout = %q", body)
		}
		return nil
	})
	if expired.Load() == 0 {
		t.Fatal("OnExpire did not run for an expired cookie")
	}
}

func TestIdleDeadlineTravelsInTheCookie(t *testing.T) {
	m := newManager(t, session.Config{IdleTimeout: time.Hour, TouchAfter: 0.5})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	c.Want("POST", "/set/a/1", 200, "ok")
	_, _, resp := c.DoResp("GET", "/get/a", nil)
	if len(resp.Cookies()) != 0 {
		t.Fatal("a read soon after a write re-sent the cookie (needless bytes on every response)")
	}
	// A read after TouchAfter of the idle timeout must re-seal it: with a
	// tiny idle timeout, any read qualifies.
	m2 := newManager(t, session.Config{IdleTimeout: 2 * time.Second, TouchAfter: 0.0001})
	srv2 := httptest.NewServer(sessiontest.Shop(m2))
	defer srv2.Close()
	c2 := sessiontest.NewClient(t, srv2.URL)
	c2.Want("POST", "/set/a/1", 200, "ok")
	before := c2.Token
	testenv.Eventually(t, 10*time.Second, func() error {
		_, _, resp := c2.DoResp("GET", "/get/a", nil)
		if len(resp.Cookies()) != 1 || c2.Token == before {
			return errors.New("a read past TouchAfter did not move the idle deadline in the cookie")
		}
		return nil
	})
}

func TestHeaderCarriesTheSealedSessionForAPIClients(t *testing.T) {
	srv := httptest.NewServer(sessiontest.Shop(newManager(t, session.Config{})))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	_, _, resp := c.DoResp("POST", "/set/k/v", http.Header{"Session-Token": {"-"}})
	v := resp.Header.Get("Session-Token")
	if len(v) < 50 {
		t.Fatalf("no sealed session in the Session-Token response header: %q", v)
	}
	c.Token = ""
	code, body, _ := c.DoResp("GET", "/get/k", http.Header{"Session-Token": {v}})
	if code != 200 || body != "true:v" {
		t.Fatalf("GET with the header = %d %q", code, body)
	}
}

func TestWritesAfterTheResponseStartedAreRefused(t *testing.T) {
	m := newManager(t, session.Config{})
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = session.Set(r.Context(), "before", 1)
		io.WriteString(w, "body")
		if err := session.Set(r.Context(), "after", 2); !errors.Is(err, session.ErrResponseStarted) {
			t.Errorf("Set after the cookie went out: %v, want ErrResponseStarted (it could never reach the client)", err)
		}
		if _, err := session.Update(r.Context(), "n", func(n int, _ bool) (int, error) { return n + 1, nil }); !errors.Is(err, session.ErrResponseStarted) {
			t.Errorf("Update after the cookie went out: %v, want ErrResponseStarted", err)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	if len(rec.Result().Cookies()) != 1 {
		t.Fatal("the write before the body was not sent")
	}
}

func TestHooksAndTheUserAPI(t *testing.T) {
	var created, destroyed atomic.Int64
	var lastID atomic.Value
	m := newManager(t, session.Config{
		OnCreate:  func(_ context.Context, e session.Event) { created.Add(1); lastID.Store(e.ID) },
		OnDestroy: func(context.Context, session.Event) { destroyed.Add(1) },
	})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	c.Want("POST", "/set/a/1", 200, "ok")
	c.Want("POST", "/login/bea", 200, "welcome") // RenewToken: the old id ends
	if created.Load() != 1 || destroyed.Load() != 1 {
		t.Fatalf("OnCreate %d, OnDestroy %d after a session and a login; want 1, 1", created.Load(), destroyed.Load())
	}
	if _, err := m.SessionsOfUser(t.Context(), "bea"); !errors.Is(err, session.ErrNotSupported) {
		t.Fatalf("SessionsOfUser: %v, want ErrNotSupported", err)
	}
	other := sessiontest.NewClient(t, srv.URL)
	other.Want("POST", "/set/x/1", 200, "ok")
	if err := m.DestroySession(t.Context(), lastID.Load().(string)); err != nil {
		t.Fatal(err)
	}
	other.Want("GET", "/get/x", 200, "false:")
	c.Want("GET", "/user", 200, "bea")
	if n, err := m.DestroyAllForUser(t.Context(), "bea"); n != -1 || err != nil {
		t.Fatalf("DestroyAllForUser = %d, %v; want -1 (not counted), nil", n, err)
	}
	c.Want("GET", "/user", 200, "")
	// Logging in again after "log out everywhere" works: the new session
	// is issued after the revocation.
	testenv.Eventually(t, 10*time.Second, func() error {
		c.Want("POST", "/login/bea", 200, "welcome")
		if _, body := c.Do("GET", "/user"); body != "bea" {
			return fmt.Errorf("user after a new login = %q", body)
		}
		return nil
	})
}
