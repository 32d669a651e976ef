package sessiontest

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
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
// the instances at urls, and checks that every acknowledged one counted.
//
// A store that cannot answer within Config.StoreTimeout (an overloaded
// machine, a store serialising n contending writes) refuses an addition
// with the documented 503 and Retry-After; that is allowed, as long as
// nothing acknowledged is lost and nothing is counted twice. An addition
// refused after its write landed (the deadline passed while the answer
// was on its way) may count.
func CartStress(t testing.TB, urls []string, n int) {
	t.Helper()
	c, _, acked := concurrently(t, urls, n, func(int) string { return "/cart/add" })
	if len(acked) == 0 {
		t.Fatalf("all %d concurrent additions were refused", n)
	}
	_, body := c.Do("GET", "/cart")
	got, err := strconv.Atoi(body)
	if err != nil || got < len(acked) || got > n {
		t.Fatalf("cart after %d concurrent additions, %d acknowledged = %q; want between %d and %d", n, len(acked), body, len(acked), n)
	}
	if len(acked) < n {
		t.Logf("%d of %d concurrent additions refused with 503 (store overloaded); none acknowledged was lost", n-len(acked), n)
	}
}

// concurrently creates a session, then sends n concurrent POSTs of it (path
// i for the i-th), spread over urls, all presenting the session's cookie as
// it was before them, as tabs that fire at once do. It returns the client,
// the cookie of the response that arrived last (what a browser keeps) and
// the requests that were acknowledged (not refused with a 503).
func concurrently(t testing.TB, urls []string, n int, path func(i int) string) (c *Client, last string, acked []int) {
	t.Helper()
	c = NewClient(t, urls[0])
	c.Want("POST", "/set/init/1", 200, "ok")
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	last = c.Token
	for i := range n {
		wg.Go(func() {
			tok, ok := c.post(urls[i%len(urls)]+path(i), c.Token)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				acked = append(acked, i)
			}
			if ok && tok != "" {
				last = tok
			}
		})
	}
	wg.Wait()
	return c, last, acked
}

// post sends a POST presenting cookie as the session, as a browser that
// holds it would, and returns the session cookie the answer set ("" for
// none) and whether it was acknowledged. A refusal with the documented 503
// and Retry-After (the store did not answer in time) is ok false; any
// other failure is a test error too.
func (c *Client) post(url, cookie string) (newCookie string, ok bool) {
	req, _ := http.NewRequest("POST", url, nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: cookie})
	resp, err := c.HC.Do(req)
	if err != nil {
		c.t.Error(err)
		return "", false
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
		return "", false
	}
	if resp.StatusCode != 200 {
		c.t.Errorf("POST %s: %d %s", url, resp.StatusCode, b)
		return "", false
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "session" && ck.MaxAge >= 0 {
			newCookie = ck.Value
		}
	}
	return newCookie, true
}
