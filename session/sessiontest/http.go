package sessiontest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/session"
)

// Shop is a small shop application over m: enough routes to exercise the
// session API over HTTP (GET /get/{key}, POST /set/{key}/{val}, GET /cart,
// POST /cart/add, POST /login/{user}, POST /logout, POST /del/{key},
// POST /clear, GET /user, GET /keys, GET /static).
func Shop(m *session.Manager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /static", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "no session used")
	})
	mux.HandleFunc("GET /get/{key}", func(w http.ResponseWriter, r *http.Request) {
		v, ok, err := session.Get[string](r.Context(), r.PathValue("key"))
		if err != nil {
			return // the Manager answers for us
		}
		fmt.Fprintf(w, "%v:%s", ok, v)
	})
	mux.HandleFunc("POST /set/{key}/{val}", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Set(r.Context(), r.PathValue("key"), r.PathValue("val")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /cart", func(w http.ResponseWriter, r *http.Request) {
		n, _, err := session.Get[int](r.Context(), "cart")
		if err != nil {
			return
		}
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("POST /cart/add", func(w http.ResponseWriter, r *http.Request) {
		n, err := session.Update(r.Context(), "cart", func(old int, _ bool) (int, error) { return old + 1, nil })
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("POST /login/{user}", func(w http.ResponseWriter, r *http.Request) {
		if err := session.RenewToken(r.Context()); err != nil {
			return
		}
		if err := session.SetUser(r.Context(), r.PathValue("user")); err != nil {
			return
		}
		io.WriteString(w, "welcome")
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Destroy(r.Context()); err != nil {
			return
		}
		io.WriteString(w, "bye")
	})
	mux.HandleFunc("POST /del/{key}", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Delete(r.Context(), r.PathValue("key")); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /clear", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Clear(r.Context()); err != nil {
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /user", func(w http.ResponseWriter, r *http.Request) {
		u, err := session.User(r.Context())
		if err != nil {
			return
		}
		io.WriteString(w, u)
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		keys, err := session.Keys(r.Context())
		if err != nil {
			return
		}
		io.WriteString(w, strings.Join(keys, ","))
	})
	return m.Handler(mux)
}

// Client is an HTTP client that keeps one session token, as a browser
// keeps a cookie.
type Client struct {
	t     testing.TB
	URL   string
	Token string
	HC    *http.Client
}

// NewClient returns a Client of the application at url.
func NewClient(t testing.TB, url string) *Client {
	return &Client{t: t, URL: url, HC: &http.Client{Timeout: 30 * time.Second}}
}

// Do sends a request with the client's token and keeps any new one.
func (c *Client) Do(method, path string) (int, string) {
	c.t.Helper()
	code, body, _ := c.DoResp(method, path, nil)
	return code, body
}

// DoResp is Do with extra headers, returning the response too.
func (c *Client) DoResp(method, path string, hdr http.Header) (int, string, *http.Response) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.URL+path, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.Token != "" {
		req.AddCookie(&http.Cookie{Name: "session", Value: c.Token})
	}
	resp, err := c.HC.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.Name == "session" {
			if ck.MaxAge < 0 {
				c.Token = ""
			} else {
				c.Token = ck.Value
			}
		}
	}
	return resp.StatusCode, string(b), resp
}

// Want fails the test unless the request answers wantCode and wantBody.
func (c *Client) Want(method, path string, wantCode int, wantBody string) {
	c.t.Helper()
	code, body := c.Do(method, path)
	if code != wantCode || body != wantBody {
		c.t.Fatalf("%s %s = %d %q, want %d %q", method, path, code, body, wantCode, wantBody)
	}
}

// CartStress sends n concurrent cart additions for one session, spread over
// the instances at urls, and checks that every one counted.
func CartStress(t testing.TB, urls []string, n int) {
	t.Helper()
	c := NewClient(t, urls[0])
	c.Want("POST", "/set/init/1", 200, "ok")
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", urls[i%len(urls)]+"/cart/add", nil)
			req.AddCookie(&http.Cookie{Name: "session", Value: c.Token})
			resp, err := c.HC.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("add: %d %s", resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	c.Want("GET", "/cart", 200, fmt.Sprint(n))
}

// RunManagers checks the Manager's promises end to end over HTTP on stores
// that share their data, as instances of an application behind a load
// balancer share one store: give one store per instance (the same store
// repeated for an in-memory one).
func RunManagers(t *testing.T, stores []session.Store) {
	newURLs := func(t *testing.T, cfg session.Config) ([]string, []*session.Manager) {
		var urls []string
		var ms []*session.Manager
		for _, st := range stores {
			cfg.Store = st
			m, err := session.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(Shop(m))
			t.Cleanup(srv.Close)
			urls = append(urls, srv.URL)
			ms = append(ms, m)
		}
		return urls, ms
	}
	t.Run("ConcurrentCartUpdates", func(t *testing.T) {
		urls, _ := newURLs(t, session.Config{})
		CartStress(t, urls, 200)
	})
	for _, blind := range []bool{false, true} {
		t.Run(fmt.Sprintf("LogoutRacingSlowWrite/blind=%v", blind), func(t *testing.T) {
			logoutRace(t, blind, newURLs)
		})
	}
	t.Run("RotationAcrossInstances", func(t *testing.T) {
		urls, ms := newURLs(t, session.Config{})
		c := NewClient(t, urls[0])
		c.Want("POST", "/set/cart/3", 200, "ok")
		old := c.Token
		c.URL = urls[len(urls)-1]
		c.Want("POST", "/login/amy", 200, "welcome")
		for _, u := range urls {
			c.URL = u
			c.Want("GET", "/get/cart", 200, "true:3")
			stale := NewClient(t, u)
			stale.Token = old
			stale.Want("GET", "/get/cart", 200, "false:")
		}
		n, err := ms[0].DestroyAllForUser(t.Context(), "amy")
		if err != nil || n != 1 {
			t.Fatalf("DestroyAllForUser = %d, %v; want 1", n, err)
		}
		// An instance with a near cache learns of the logout from the
		// store's invalidation, which may trail the call by milliseconds.
		for _, u := range urls {
			c.URL = u
			err := waitFor(5*time.Second, func() error {
				if code, body := c.Do("GET", "/get/cart"); code != 200 || body != "false:" {
					return fmt.Errorf("GET /get/cart on %s after DestroyAllForUser = %d %q", u, code, body)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

// logoutRace: a slow request that writes (after reading, or blind) and
// finishes after a logout on another instance leaves the user logged out.
func logoutRace(t *testing.T, blind bool, newURLs func(*testing.T, session.Config) ([]string, []*session.Manager)) {
	urls, ms := newURLs(t, session.Config{})
	c := NewClient(t, urls[0])
	c.Want("POST", "/login/zed", 200, "welcome")
	token := c.Token

	inside, release := make(chan struct{}), make(chan struct{})
	slowSrv := httptest.NewServer(ms[len(ms)-1].Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !blind { // a blind write never loads the session first
			if _, _, err := session.Get[int](r.Context(), "cart"); err != nil {
				t.Error(err)
			}
		}
		_ = session.Set(r.Context(), "cart", 99)
		close(inside)
		<-release
		io.WriteString(w, "slow done")
	})))
	defer slowSrv.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		slow := NewClient(t, slowSrv.URL)
		slow.Token = token
		slow.Do("POST", "/")
		if slow.Token != token {
			t.Errorf("the late write sent a new cookie %q: it must not start a session in place of the destroyed one", slow.Token)
		}
	}()
	<-inside
	c.Want("POST", "/logout", 200, "bye")
	close(release)
	<-done

	for _, u := range urls {
		late := NewClient(t, u)
		late.Token = token
		late.Want("GET", "/cart", 200, "0")
		late.Want("GET", "/keys", 200, "")
	}
	if infos, err := ms[0].SessionsOfUser(t.Context(), "zed"); err != nil || len(infos) != 0 {
		t.Fatalf("after logout and a late write, SessionsOfUser = %v, %v; want none", infos, err)
	}
}
