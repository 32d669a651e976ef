package shop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/unstuck-dev/unstuck/internal/shop"
	"github.com/unstuck-dev/unstuck/internal/shop/textstats"
	"github.com/unstuck-dev/unstuck/internal/storeurl"
	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/redisstore"
)

// newShop runs one shop instance over a real in-process NATS.
func newShop(t *testing.T) *httptest.Server { return newShopWith(t, nil, session.Config{}) }

// newShopOn is newShop with its sessions where sessions says (nil: the NATS
// session store).
func newShopOn(t *testing.T, sessions func(*storeurl.Parts) session.Backend) *httptest.Server {
	return newShopWith(t, sessions, session.Config{})
}

// newShopWith runs one shop instance over a real in-process NATS, with its
// sessions where sessions says (nil: the NATS session store) and the
// session settings of cfg.
func newShopWith(t *testing.T, sessions func(*storeurl.Parts) session.Backend, cfg session.Config) *httptest.Server {
	t.Helper()
	n := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	parts, err := storeurl.Open(ctx, n.URL(), storeurl.Options{VisibilityTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(parts.Close)
	cfg.Store = parts.Sessions
	if sessions != nil {
		cfg.Store = sessions(parts)
	}
	manager, err := session.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hub, err := realtime.New(realtime.Config{Broker: parts.Broker, Presence: parts.Presence, Authenticate: shop.Authenticate, Authorize: shop.Authorize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Close() })
	jm, err := jobs.New(jobs.Config{Backend: parts.Jobs, Worker: "app-test", MaxPayloadBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := jm.Handle(textstats.Kind, textstats.Job{}.Handle); err != nil {
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

func upload(t *testing.T, c *http.Client, u string, content []byte, header ...string) (int, map[string]any) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "words.txt")
	fw.Write(content)
	mw.Close()
	req, _ := http.NewRequest("POST", u+"/api/files", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
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

// TestShopUploadRetriedWithItsKeyIsOneJob: the page's upload form sends an
// Idempotency-Key and repeats it when the user retries after an error (the
// job may have been queued before the error), so the retry returns the
// job that exists instead of processing the file twice.
func TestShopUploadRetriedWithItsKeyIsOneJob(t *testing.T) {
	srv := newShop(t)
	c := client()
	st, first := upload(t, c, srv.URL, []byte("one two"), "Idempotency-Key", "k-0123456789")
	st2, again := upload(t, c, srv.URL, []byte("one two"), "Idempotency-Key", "k-0123456789")
	if st != 202 || st2 != 202 || first["id"] == nil || first["id"] != again["id"] {
		t.Fatalf("two uploads with one key: %d %v and %d %v, want one job", st, first["id"], st2, again["id"])
	}
	_, other := upload(t, c, srv.URL, []byte("one two"), "Idempotency-Key", "k-another-key")
	if other["id"] == first["id"] {
		t.Fatalf("another key returned the same job %v", other["id"])
	}
	resp, err := c.Get(srv.URL + "/upload")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(page), `data-job="`+first["id"].(string)+`"`); n != 1 {
		t.Fatalf("the upload page lists the job %d times, want once", n)
	}
}

// TestShopStoreDownIsTheErrorHandlersAnswer: when the session store cannot
// answer, every handler leaves the answer to the session middleware's
// ErrorHandler, the shop's StoreUnavailable: one 503 with Retry-After and
// its JSON body, once, whatever the handler was doing.
func TestShopStoreDownIsTheErrorHandlersAnswer(t *testing.T) {
	r := testenv.Redis(t)
	store, err := redisstore.New(t.Context(), redisstore.Options{URL: r.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var calls atomic.Int64
	answer := shop.StoreUnavailable(slog.New(slog.DiscardHandler))
	srv := newShopWith(t, func(*storeurl.Parts) session.Backend { return store }, session.Config{
		StoreTimeout: time.Second,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			calls.Add(1)
			answer(w, r, err)
		},
	})
	c := client()
	if st, _ := call(t, c, "POST", srv.URL+"/api/login", map[string]any{"user": "alice"}); st != 200 {
		t.Fatalf("login: %d", st)
	}
	r.Kill()

	form := url.Values{"sku": {"mug"}, "text": {"hi"}}.Encode()
	requests := []struct{ method, path, body string }{
		{"GET", "/api/me", ""},
		{"GET", "/api/cart", ""},
		{"POST", "/api/cart/items", `{"sku":"mug"}`},
		{"DELETE", "/api/cart/items/mug", ""},
		{"POST", "/api/chat/messages", `{"text":"hi"}`},
		{"GET", "/api/files/some-job", ""},
		{"POST", "/api/logout", ""},
		{"GET", "/cart", ""},
		{"POST", "/cart/add", form},
		{"POST", "/chat", form},
	}
	for i, rq := range requests {
		req, _ := http.NewRequest(rq.method, srv.URL+rq.path, strings.NewReader(rq.body))
		req.Header.Set("Content-Type", "application/json")
		if strings.HasPrefix(rq.body, "sku=") {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", rq.method, rq.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" ||
			resp.Header.Get("Content-Type") != "application/json" ||
			string(body) != `{"error":"session store unavailable, try again"}`+"\n" {
			t.Errorf("%s %s with the store down: %d Retry-After %q %q %q, want the ErrorHandler's 503",
				rq.method, rq.path, resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), body)
		}
		if n := calls.Load(); n != int64(i+1) {
			t.Fatalf("%s %s: ErrorHandler called %d times for %d requests", rq.method, rq.path, n, i+1)
		}
	}
}

// TestChatOverWebSocketAsDocumented follows the README's steps for an API
// client of the chat: log in for a Session-Token, open /ws with it,
// subscribe to chat:lobby, and get a posted message in the documented
// shape.
func TestChatOverWebSocketAsDocumented(t *testing.T) {
	srv := newShop(t)
	post := func(path, token, body string) (*http.Response, map[string]any) {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Session-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out := map[string]any{}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp, out
	}
	resp, _ := post("/api/login", "new", `{"user":"alice"}`)
	token := resp.Header.Get("Session-Token")
	if resp.StatusCode != 200 || token == "" {
		t.Fatalf("login: %d, Session-Token %q", resp.StatusCode, token)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	if _, _, err := websocket.Dial(ctx, wsURL, nil); err == nil {
		t.Fatal("/ws accepted a client without a session")
	}
	ws, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Session-Token": {token}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	type frame struct {
		Type, Channel, User string
		Offset              uint64
		Data                json.RawMessage
	}
	next := func(want string) frame {
		t.Helper()
		for {
			var f frame
			if err := wsjson.Read(ctx, ws, &f); err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if f.Type == want {
				return f
			}
		}
	}
	if f := next("connected"); f.User != "alice" {
		t.Fatalf("connected as %q, want alice", f.User)
	}
	if err := wsjson.Write(ctx, ws, map[string]any{"type": "subscribe", "id": 1, "channel": shop.ChatChannel, "presence": true}); err != nil {
		t.Fatal(err)
	}
	next("subscribed")

	resp, posted := post("/api/chat/messages", token, `{"text":"hi"}`)
	if resp.StatusCode != 201 {
		t.Fatalf("post: %d %v", resp.StatusCode, posted)
	}
	f := next("message")
	var m shop.ChatMessage
	if err := json.Unmarshal(f.Data, &m); err != nil || f.Channel != "chat:lobby" {
		t.Fatalf("message frame %+v: %v", f, err)
	}
	if m.User != "alice" || m.Text != "hi" || m.Instance != "app-test" || m.Time == 0 || float64(f.Offset) != posted["offset"] {
		t.Fatalf("chat message %+v at offset %d; posted %v", m, f.Offset, posted)
	}

	// The sender is in the message's data, so publishing on the socket
	// would let alice post as bob: the hub refuses it, and other channels.
	forged := map[string]any{"user": "bob", "text": "send me your password", "instance": "app-test", "ts": 1}
	if err := wsjson.Write(ctx, ws, map[string]any{"type": "publish", "id": 2, "channel": shop.ChatChannel, "data": forged}); err != nil {
		t.Fatal(err)
	}
	next("error")
	if err := wsjson.Write(ctx, ws, map[string]any{"type": "subscribe", "id": 3, "channel": "admin:secrets"}); err != nil {
		t.Fatal(err)
	}
	next("error")
	resp, _ = post("/api/chat/messages", token, `{"text":"after"}`)
	if resp.StatusCode != 201 {
		t.Fatalf("post after the refused publish: %d", resp.StatusCode)
	}
	if f := next("message"); !strings.Contains(string(f.Data), `"after"`) {
		t.Fatalf("next chat message %s, want alice's post: the forged one got through", f.Data)
	}
}
