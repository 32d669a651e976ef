package shop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/shop"
	"github.com/unstuck-dev/unstuck/internal/storeurl"
	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/session"
)

// newShop runs one shop instance over a real in-process NATS.
func newShop(t *testing.T) *httptest.Server { return newShopOn(t, nil) }

// newShopOn is newShop with its sessions where sessions says (nil: the NATS
// session store).
func newShopOn(t *testing.T, sessions func(*storeurl.Parts) session.Backend) *httptest.Server {
	t.Helper()
	n := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	parts, err := storeurl.Open(ctx, n.URL(), storeurl.Options{VisibilityTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(parts.Close)
	var backend session.Backend = parts.Sessions
	if sessions != nil {
		backend = sessions(parts)
	}
	manager, err := session.New(session.Config{Store: backend})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := realtime.New(realtime.Config{Broker: parts.Broker, Presence: parts.Presence, Authenticate: shop.Authenticate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Close() })
	jm, err := jobs.New(jobs.Config{Backend: parts.Jobs, Worker: "app-test", MaxPayloadBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := jm.Handle(jobs.TextStatsKind, jobs.TextStats{}.Handle); err != nil {
		t.Fatal(err)
	}
	go func() { _ = jm.Run(ctx) }()
	s, err := shop.New(shop.Config{Instance: "app-test", Sessions: manager, Jobs: jm, Hub: hub, Broker: parts.Broker, StoreKind: "nats"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

func client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

// call sends body (a string is sent as is, anything else as JSON) and
// returns the status and the decoded JSON answer.
func call(t *testing.T, c *http.Client, method, url string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("X-Unstuck-Instance") != "app-test" {
		t.Errorf("%s %s: X-Unstuck-Instance = %q", method, url, resp.Header.Get("X-Unstuck-Instance"))
	}
	out := map[string]any{}
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &out)
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && out["error"] == nil {
		t.Errorf("%s %s: %d without a JSON error: %q", method, url, resp.StatusCode, data)
	}
	return resp.StatusCode, out
}

func TestShopRejectsBadInput(t *testing.T) {
	srv := newShop(t)
	c := client()
	u := srv.URL

	cases := []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/api/cart/items", map[string]any{"sku": "nope", "qty": 1}, 400},
		{"POST", "/api/cart/items", map[string]any{"sku": "mug", "qty": 0}, 400},
		{"POST", "/api/cart/items", map[string]any{"sku": "mug", "qty": -3}, 400},
		{"POST", "/api/cart/items", map[string]any{"sku": "mug", "qty": 10000}, 400},
		{"POST", "/api/cart/items", map[string]any{"sku": "mug", "qty": 1, "color": "red"}, 400},
		{"POST", "/api/cart/items", `{"sku":"mug","qty":1}{"again":1}`, 400},
		{"POST", "/api/cart/items", `{"sku":`, 400},
		{"POST", "/api/cart/items", "", 400},
		{"POST", "/api/cart/items", `{"sku":"` + strings.Repeat("a", 70<<10) + `"}`, 413},
		{"DELETE", "/api/cart/items/nope", nil, 404},
		{"POST", "/api/login", map[string]any{"user": ""}, 400},
		{"POST", "/api/login", map[string]any{"user": "<script>"}, 400},
		{"POST", "/api/login", map[string]any{"user": strings.Repeat("x", 65)}, 400},
		{"GET", "/api/me", nil, 401},
		{"POST", "/api/chat/messages", map[string]any{"text": "hi"}, 401},
		{"GET", "/api/chat/messages?since=abc", nil, 400},
		{"GET", "/api/chat/messages?since=-1", nil, 400},
		{"GET", "/api/files/no-such-job", nil, 404},
	}
	for _, tc := range cases {
		if st, out := call(t, c, tc.method, u+tc.path, tc.body); st != tc.want {
			t.Errorf("%s %s %.60v: %d %v, want %d", tc.method, tc.path, tc.body, st, out, tc.want)
		}
	}

	// A good add after all that: only it counts.
	if st, _ := call(t, c, "POST", u+"/api/cart/items", map[string]any{"sku": "mug"}); st != 200 {
		t.Fatalf("add mug: %d", st)
	}
	st, cart := call(t, c, "GET", u+"/api/cart", nil)
	if got := fmt.Sprint(cart["items"]); st != 200 || got != "[map[qty:1 sku:mug]]" {
		t.Fatalf("cart = %d %s, want one mug", st, got)
	}
}

func sessionCookie(t *testing.T, c *http.Client, rawURL string) string {
	t.Helper()
	u, _ := url.Parse(rawURL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "session" {
			return ck.Value
		}
	}
	return ""
}

func TestShopLoginRotatesTokenAndChat(t *testing.T) {
	srv := newShop(t)
	c := client()
	u := srv.URL
	if st, _ := call(t, c, "POST", u+"/api/cart/items", map[string]any{"sku": "tee", "qty": 2}); st != 200 {
		t.Fatalf("add: %d", st)
	}
	before := sessionCookie(t, c, u)
	if before == "" {
		t.Fatal("no session cookie after adding to the cart")
	}
	if st, out := call(t, c, "POST", u+"/api/login", map[string]any{"user": "alice"}); st != 200 || out["user"] != "alice" {
		t.Fatalf("login: %d %v", st, out)
	}
	after := sessionCookie(t, c, u)
	if after == "" || after == before {
		t.Fatalf("login did not rotate the session token (before %q, after %q)", before, after)
	}
	// The cart came along; the old token no longer works.
	if _, cart := call(t, c, "GET", u+"/api/cart", nil); fmt.Sprint(cart["items"]) != "[map[qty:2 sku:tee]]" {
		t.Fatalf("cart after login = %v", cart["items"])
	}
	old := client()
	su, _ := url.Parse(u)
	old.Jar.SetCookies(su, []*http.Cookie{{Name: "session", Value: before}})
	if st, _ := call(t, old, "GET", u+"/api/me", nil); st != 401 {
		t.Fatalf("pre-login token still logged in: %d", st)
	}

	for _, bad := range []string{"", "   ", strings.Repeat("é", 501)} {
		if st, _ := call(t, c, "POST", u+"/api/chat/messages", map[string]any{"text": bad}); st != 400 {
			t.Errorf("chat text %.20q: %d, want 400", bad, st)
		}
	}
	st, msg := call(t, c, "POST", u+"/api/chat/messages", map[string]any{"text": "hello"})
	if st != 201 || msg["user"] != "alice" || msg["offset"] == nil {
		t.Fatalf("post chat: %d %v", st, msg)
	}
	st, hist := call(t, c, "GET", u+"/api/chat/messages?since=0", nil)
	msgs, _ := hist["messages"].([]any)
	if st != 200 || len(msgs) != 1 || hist["epoch"] == "" {
		t.Fatalf("chat history: %d %v", st, hist)
	}
	if m := msgs[0].(map[string]any); m["text"] != "hello" || m["offset"] != msg["offset"] {
		t.Fatalf("history message %v, posted %v", m, msg)
	}

	if st, _ := call(t, c, "POST", u+"/api/logout", nil); st != 204 {
		t.Fatalf("logout: %d", st)
	}
	if st, _ := call(t, c, "GET", u+"/api/me", nil); st != 401 {
		t.Fatalf("after logout /api/me = %d", st)
	}
}

func upload(t *testing.T, c *http.Client, u string, content []byte) (int, map[string]any) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "words.txt")
	fw.Write(content)
	mw.Close()
	resp, err := c.Post(u+"/api/files", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestShopUpload(t *testing.T) {
	srv := newShop(t)
	c := client()
	if st, out := upload(t, c, srv.URL, nil); st < 400 || st >= 500 {
		t.Fatalf("empty upload: %d %v, want 4xx", st, out)
	}
	if st, out := upload(t, c, srv.URL, bytes.Repeat([]byte("x"), 2<<20)); st != 413 {
		t.Fatalf("oversized upload: %d %v, want 413", st, out)
	}
	st, out := upload(t, c, srv.URL, []byte("one two three\nfour\n"))
	id, _ := out["id"].(string)
	if st != 202 || id == "" {
		t.Fatalf("upload: %d %v", st, out)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		st, job := call(t, c, "GET", srv.URL+"/api/files/"+id, nil)
		if st != 200 || job["state"] != "done" || job["progress"] != float64(100) {
			return fmt.Errorf("job %d %v", st, job)
		}
		if res, _ := job["result"].(map[string]any); res["words"] != float64(4) || res["lines"] != float64(2) {
			return fmt.Errorf("result %v, want 4 words on 2 lines", job["result"])
		}
		return nil
	})
	// Its progress is pushed as Server-Sent Events; for a finished job the
	// stream carries the final state and ends.
	events, err := c.Get(srv.URL + "/api/files/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := io.ReadAll(events.Body)
	events.Body.Close()
	if ct := events.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") || !strings.Contains(string(stream), "event: status") || !strings.Contains(string(stream), `"state":"done"`) {
		t.Fatalf("events: %s %q", ct, stream)
	}

	// Another browser cannot watch it, even knowing its ID.
	stranger := client()
	if st, _ := call(t, stranger, "GET", srv.URL+"/api/files/"+id, nil); st != 404 {
		t.Fatalf("a stranger's GET /api/files/%s = %d, want 404", id, st)
	}
	if st, _ := call(t, stranger, "GET", srv.URL+"/api/files/"+id+"/events", nil); st != 404 {
		t.Fatalf("a stranger's GET /api/files/%s/events = %d, want 404", id, st)
	}

	// The upload page lists it, from the session.
	resp, err := c.Get(srv.URL + "/upload")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `data-job="`+id+`"`) {
		t.Fatalf("upload page does not list job %s", id)
	}
}
