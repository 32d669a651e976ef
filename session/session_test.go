package session_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/memstore"
	"github.com/unstuck-dev/unstuck/session/sessiontest"
)

// countingStore counts the calls that reach a real store.
type countingStore struct {
	session.Store
	loads, commits, deletes atomic.Int64
}

func (c *countingStore) Load(ctx context.Context, id string) (*session.Record, error) {
	c.loads.Add(1)
	return c.Store.Load(ctx, id)
}

func (c *countingStore) Commit(ctx context.Context, id string, ch session.Change) (uint64, error) {
	c.commits.Add(1)
	return c.Store.Commit(ctx, id, ch)
}

func (c *countingStore) Delete(ctx context.Context, id string) (*session.Record, error) {
	c.deletes.Add(1)
	return c.Store.Delete(ctx, id)
}

func newMem(t *testing.T) *memstore.Store {
	s := memstore.New(memstore.Options{})
	t.Cleanup(func() { s.Close() })
	return s
}

func newManager(t *testing.T, cfg session.Config) *session.Manager {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = newMem(t)
	}
	m, err := session.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSetThenGetAcrossRequests(t *testing.T) {
	srv := httptest.NewServer(sessiontest.Shop(newManager(t, session.Config{})))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	c.Want("GET", "/get/name", 200, "false:")
	if c.Token != "" {
		t.Fatal("a read-only request on no session issued a cookie")
	}
	c.Want("POST", "/set/name/ann", 200, "ok")
	if c.Token == "" {
		t.Fatal("no session cookie after a write")
	}
	c.Want("POST", "/set/color/red", 200, "ok")
	c.Want("GET", "/get/name", 200, "true:ann")
	c.Want("GET", "/keys", 200, "color,name")
}

func TestCookieAttributes(t *testing.T) {
	m := newManager(t, session.Config{Cookie: session.CookieConfig{Name: "sid"}})
	h := sessiontest.Shop(m)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/set/a/b", nil))
	ck := rec.Result().Cookies()
	if len(ck) != 1 || ck[0].Name != "sid" || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteLaxMode || ck[0].Secure {
		t.Fatalf("cookie over plain HTTP = %+v; want sid, HttpOnly, SameSite=Lax, not Secure", ck)
	}
	if len(ck[0].Value) != 43 {
		t.Fatalf("token %q: want 43 base64url characters (256 bits)", ck[0].Value)
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
	_ = tls.VersionTLS13
}

func TestLazyLoadCostsNothing(t *testing.T) {
	cs := &countingStore{Store: newMem(t)}
	srv := httptest.NewServer(sessiontest.Shop(newManager(t, session.Config{Store: cs})))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	c.Want("POST", "/set/a/1", 200, "ok")
	loads, commits := cs.loads.Load(), cs.commits.Load()
	c.Want("GET", "/static", 200, "no session used")
	if cs.loads.Load() != loads || cs.commits.Load() != commits {
		t.Fatal("a request that never touched its session called the store")
	}
	// A read-only request soon after a write: one load, no write.
	c.Want("GET", "/get/a", 200, "true:1")
	if cs.loads.Load() != loads+1 || cs.commits.Load() != commits {
		t.Fatalf("read-only request: %d loads, %d commits; want 1, 0", cs.loads.Load()-loads, cs.commits.Load()-commits)
	}
	// A write-only request writes its key blind: one store call, no load.
	c.Want("POST", "/set/b/2", 200, "ok")
	if cs.loads.Load() != loads+1 || cs.commits.Load() != commits+1 {
		t.Fatalf("write-only request: %d loads, %d commits; want 0, 1", cs.loads.Load()-loads-1, cs.commits.Load()-commits)
	}
	c.Want("GET", "/keys", 200, "a,b")
}

func TestBadTokensGetAFreshSession(t *testing.T) {
	m := newManager(t, session.Config{})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	owner := sessiontest.NewClient(t, srv.URL)
	owner.Want("POST", "/set/secret/s3", 200, "ok")

	for name, tok := range map[string]string{
		"garbage":   "%%%not-a-token;",
		"oversized": strings.Repeat("A", 64<<10),
		"short":     "abc",
		"unknown":   "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"non-canon": owner.Token[:42] + "_",
	} {
		t.Run(name, func(t *testing.T) {
			c := sessiontest.NewClient(t, srv.URL)
			c.Token = tok
			c.Want("GET", "/get/secret", 200, "false:")
			c.Want("POST", "/set/x/1", 200, "ok")
			if c.Token == tok || len(c.Token) != 43 {
				t.Fatalf("client-chosen token %.20q was adopted (now %.20q)", tok, c.Token)
			}
			c.Want("GET", "/get/x", 200, "true:1")
		})
	}
}

func TestValueOverLimitIsAClearError(t *testing.T) {
	m := newManager(t, session.Config{MaxValueSize: 16})
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := session.Set(r.Context(), "big", strings.Repeat("x", 100))
		if !errors.Is(err, session.ErrValueTooLarge) || !strings.Contains(err.Error(), "limit 16") {
			t.Errorf("Set(big) err = %v, want ErrValueTooLarge naming the limit", err)
		}
		_, err = session.Update(r.Context(), "big", func(string, bool) (string, error) { return strings.Repeat("y", 100), nil })
		if !errors.Is(err, session.ErrValueTooLarge) {
			t.Errorf("Update(big) err = %v, want ErrValueTooLarge", err)
		}
		if err := session.Set(r.Context(), "small", "ok"); err != nil {
			t.Errorf("Set(small): %v", err)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
}

func TestRenewTokenInvalidatesOldAtOnce(t *testing.T) {
	st := newMem(t)
	m := newManager(t, session.Config{Store: st})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	c.Want("POST", "/set/cart/3", 200, "ok")
	before := c.Token
	c.Want("POST", "/login/alice", 200, "welcome")
	if c.Token == before || c.Token == "" {
		t.Fatal("login did not rotate the token")
	}
	c.Want("GET", "/get/cart", 200, "true:3") // carried over

	attacker := sessiontest.NewClient(t, srv.URL)
	attacker.Token = before
	attacker.Want("GET", "/get/cart", 200, "false:")
	// A write on the old token cannot resurrect the old session.
	attacker.Want("POST", "/set/cart/9", 200, "ok")
	c.Want("GET", "/get/cart", 200, "true:3")

	infos, err := m.SessionsOfUser(context.Background(), "alice")
	if err != nil || len(infos) != 1 {
		t.Fatalf("SessionsOfUser = %v, %v; want the one rotated session", infos, err)
	}
}

func TestDestroyAndLogOutEverywhere(t *testing.T) {
	var destroyed, created atomic.Int64
	m := newManager(t, session.Config{
		OnCreate:  func(context.Context, session.Event) { created.Add(1) },
		OnDestroy: func(context.Context, session.Event) { destroyed.Add(1) },
	})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	phone, laptop, other := sessiontest.NewClient(t, srv.URL), sessiontest.NewClient(t, srv.URL), sessiontest.NewClient(t, srv.URL)
	for _, c := range []*sessiontest.Client{phone, laptop} {
		c.Want("POST", "/set/x/1", 200, "ok")
		c.Want("POST", "/login/bob", 200, "welcome")
	}
	other.Want("POST", "/login/eve", 200, "welcome")
	other.Want("POST", "/set/x/1", 200, "ok")
	if created.Load() != 3 {
		t.Fatalf("OnCreate ran %d times, want 3", created.Load())
	}

	infos, err := m.SessionsOfUser(context.Background(), "bob")
	if err != nil || len(infos) != 2 {
		t.Fatalf("SessionsOfUser(bob) = %v, %v; want 2", infos, err)
	}
	phoneToken := phone.Token
	phone.Want("POST", "/logout", 200, "bye")
	if phone.Token != "" {
		t.Fatal("logout did not remove the cookie")
	}
	phone.Token = phoneToken
	phone.Want("GET", "/get/x", 200, "false:")

	n, err := m.DestroyAllForUser(context.Background(), "bob")
	if err != nil || n != 1 {
		t.Fatalf("DestroyAllForUser = %d, %v; want 1 (the laptop)", n, err)
	}
	laptop.Want("GET", "/get/x", 200, "false:")
	other.Want("GET", "/get/x", 200, "true:1")
	// bob's two logins each ended an old session, then phone and laptop.
	if destroyed.Load() != 4 {
		t.Fatalf("OnDestroy ran %d times, want 4", destroyed.Load())
	}
}

func TestManagersSharingAStore(t *testing.T) {
	st := newMem(t)
	sessiontest.RunManagers(t, []session.Store{st, st, st})
}

func TestHeaderTokenForAPIClients(t *testing.T) {
	srv := httptest.NewServer(sessiontest.Shop(newManager(t, session.Config{})))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	hdr := http.Header{"Session-Token": {"-"}}
	_, _, resp := c.DoResp("POST", "/set/k/v", hdr)
	tok := resp.Header.Get("Session-Token")
	if len(tok) != 43 {
		t.Fatalf("no token in the Session-Token response header: %q", tok)
	}
	c.Token = ""
	code, body, _ := c.DoResp("GET", "/get/k", http.Header{"Session-Token": {tok}})
	if code != 200 || body != "true:v" {
		t.Fatalf("GET with header token = %d %q", code, body)
	}
}

func TestIdleDeadlineMovedOnlyAfterShare(t *testing.T) {
	cs := &countingStore{Store: newMem(t)}
	m := newManager(t, session.Config{Store: cs, IdleTimeout: time.Hour, TouchAfter: 0.5})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	c.Want("POST", "/login/ida", 200, "welcome")
	infos, _ := m.SessionsOfUser(context.Background(), "ida")
	id := infos[0].ID

	commits := cs.commits.Load()
	c.Want("GET", "/get/x", 200, "false:")
	if cs.commits.Load() != commits {
		t.Fatal("a read just after a write moved the idle deadline (a needless store write)")
	}
	// Pretend 40 of the 60 minutes have passed.
	if _, err := cs.Store.Commit(context.Background(), id, session.Change{IdleDeadline: time.Now().Add(20 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	c.Want("GET", "/get/x", 200, "false:")
	if cs.commits.Load() != commits+1 {
		t.Fatalf("read after 2/3 of the idle timeout: %d writes, want 1 touch", cs.commits.Load()-commits)
	}
	rec, _ := cs.Store.Load(context.Background(), id)
	if time.Until(rec.IdleDeadline) < 50*time.Minute {
		t.Fatalf("idle deadline not moved: %v left", time.Until(rec.IdleDeadline))
	}
}

// laggingStore returns records as a store that has not yet dropped them
// would: with deadlines in the past.
type laggingStore struct{ session.Store }

func (l laggingStore) Load(ctx context.Context, id string) (*session.Record, error) {
	r, err := l.Store.Load(ctx, id)
	if r != nil {
		r.Deadline = time.Now().Add(-time.Second)
	}
	return r, err
}

func TestExpiredSessionEnforcedByManager(t *testing.T) {
	var expired atomic.Int64
	m := newManager(t, session.Config{Store: laggingStore{newMem(t)}, OnExpire: func(context.Context, session.Event) { expired.Add(1) }})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	c.Want("POST", "/set/a/1", 200, "ok")
	c.Want("GET", "/get/a", 200, "false:")
	if expired.Load() != 1 {
		t.Fatalf("OnExpire ran %d times, want 1", expired.Load())
	}
}

func TestFlushHijackAndUnwrapPassThrough(t *testing.T) {
	m := newManager(t, session.Config{})
	lateDone := make(chan struct{})
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sse":
			_ = session.Set(r.Context(), "seen", "yes")
			w.Header().Set("Content-Type", "text/event-stream")
			rc := http.NewResponseController(w)
			io.WriteString(w, "data: 1\n\n")
			if err := rc.Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
			if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
				t.Errorf("SetWriteDeadline through Unwrap: %v", err)
			}
			// Changing an existing session after the header went out
			// writes through at once.
			if err := session.Set(r.Context(), "late", "yes"); err != nil {
				t.Errorf("late Set: %v", err)
			}
			close(lateDone)
		case "/ws":
			_ = session.Set(r.Context(), "ws", "yes")
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("Hijack: %v", err)
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nhello")
			brw.Flush()
		case "/get":
			v1, _, _ := session.Get[string](r.Context(), "seen")
			v2, _, _ := session.Get[string](r.Context(), "late")
			io.WriteString(w, v1+","+v2)
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	if line != "data: 1\n" || len(resp.Cookies()) != 1 {
		t.Fatalf("SSE: first line %q, cookies %v", line, resp.Cookies())
	}
	c := sessiontest.NewClient(t, srv.URL)
	c.Token = resp.Cookies()[0].Value
	<-lateDone
	c.Want("GET", "/get", 200, "yes,yes")

	req, _ := http.NewRequest("GET", srv.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "test")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 101 {
		t.Fatalf("upgrade status %d", resp.StatusCode)
	}
}

func TestNotWrappedIsAnError(t *testing.T) {
	if err := session.Set(context.Background(), "k", 1); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("err = %v, want ErrNoSession", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	if _, err := session.New(session.Config{}); err == nil || !strings.Contains(err.Error(), "Store") {
		t.Fatalf("New without Store: %v", err)
	}
	if _, err := session.New(session.Config{Store: newMem(t), TouchAfter: 2}); err == nil || !strings.Contains(err.Error(), "TouchAfter") {
		t.Fatalf("New with TouchAfter 2: %v", err)
	}
}

func TestOnExpireFromStoreJanitor(t *testing.T) {
	st := memstore.New(memstore.Options{CleanupInterval: 10 * time.Millisecond})
	t.Cleanup(func() { st.Close() })
	expired := make(chan session.Event, 1)
	m := newManager(t, session.Config{Store: st, IdleTimeout: 100 * time.Millisecond,
		OnExpire: func(_ context.Context, e session.Event) { expired <- e }})
	srv := httptest.NewServer(sessiontest.Shop(m))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	c.Want("POST", "/login/exp", 200, "welcome")
	select {
	case e := <-expired:
		if e.UserID != "exp" || len(e.ID) != 64 {
			t.Fatalf("OnExpire event %+v, want the session of user exp", e)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("OnExpire never ran for a session the store expired")
	}
	c.Want("GET", "/get/x", 200, "false:")
}

func TestDeleteAndClear(t *testing.T) {
	st := newMem(t)
	srv := httptest.NewServer(sessiontest.Shop(newManager(t, session.Config{Store: st})))
	defer srv.Close()
	c := sessiontest.NewClient(t, srv.URL)
	c.Want("POST", "/set/a/1", 200, "ok")
	c.Want("POST", "/set/b/2", 200, "ok")
	c.Want("POST", "/login/dee", 200, "welcome")
	c.Want("POST", "/del/a", 200, "ok") // blind: not loaded first
	c.Want("GET", "/keys", 200, "b")
	c.Want("POST", "/set/c/3", 200, "ok")
	c.Want("POST", "/clear", 200, "ok")
	c.Want("GET", "/keys", 200, "")
	c.Want("GET", "/user", 200, "dee") // Clear keeps the user binding
	c.Want("POST", "/set/d/4", 200, "ok")
	c.Want("GET", "/keys", 200, "d")
}

func TestPersistentCookieLastsUntilTheDeadline(t *testing.T) {
	m := newManager(t, session.Config{Lifetime: 2 * time.Hour, Cookie: session.CookieConfig{Persist: true}})
	rec := httptest.NewRecorder()
	sessiontest.Shop(m).ServeHTTP(rec, httptest.NewRequest("POST", "/set/a/b", nil))
	ck := rec.Result().Cookies()
	if len(ck) != 1 || ck[0].MaxAge < 7000 || ck[0].MaxAge > 7200 || ck[0].Expires.IsZero() {
		t.Fatalf("persistent cookie = %+v; want Max-Age about 2h and Expires set", ck)
	}
}

// TestUpdateQueueIsBounded: requests of one session take turns to update
// it on an instance; one whose turn does not come within StoreTimeout is
// refused with ErrUnavailable (the ErrorHandler's 503) instead of hanging
// until its client gives up, and the update ahead of it still lands.
func TestUpdateQueueIsBounded(t *testing.T) {
	m := newManager(t, session.Config{StoreTimeout: 50 * time.Millisecond})
	holding, release := make(chan struct{}), make(chan struct{})
	errs := make(chan error, 2)
	var token string
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			_ = session.Set(r.Context(), "n", 0)
			return
		}
		_, err := session.Update(r.Context(), "n", func(n int, _ bool) (int, error) {
			if r.URL.Path == "/slow" {
				close(holding)
				<-release
			}
			return n + 1, nil
		})
		errs <- err
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	for _, c := range rec.Result().Cookies() {
		token = c.Name + "=" + c.Value
	}
	answers := make(chan *httptest.ResponseRecorder, 2)
	do := func(path string) {
		// The client's own patience, longer than StoreTimeout.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, "POST", path, nil)
		req.Header.Set("Cookie", token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		answers <- rec
	}
	go do("/slow")
	<-holding
	go do("/queued")
	if err := <-errs; !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("an update queued behind one that holds its turn: %v, want ErrUnavailable", err)
	}
	if a := <-answers; a.Code != http.StatusServiceUnavailable || a.Header().Get("Retry-After") == "" {
		t.Fatalf("the queued request was answered %d, Retry-After %q; want the ErrorHandler's 503", a.Code, a.Header().Get("Retry-After"))
	}
	close(release)
	if err := <-errs; err != nil {
		t.Fatalf("the update that held the turn: %v", err)
	}
}
