package faults_test

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
	"sync"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/shop"
	"github.com/unstuck-dev/unstuck/internal/shop/textstats"
	"github.com/unstuck-dev/unstuck/internal/storeurl"
	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/session"
)

// startShop runs one shop instance on the store storeURL names, wired as
// `unstuck app` wires it (the shop's StoreUnavailable answers a store
// that cannot answer), and returns its base URL.
func startShop(t *testing.T, storeURL string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	openCtx, openCancel := context.WithTimeout(ctx, 30*time.Second)
	parts, err := storeurl.Open(openCtx, storeURL, storeurl.Options{NearCache: true, VisibilityTimeout: 2 * time.Second})
	openCancel()
	if err != nil {
		t.Fatalf("open %s: %v", storeURL, err)
	}
	t.Cleanup(parts.Close)
	log := slog.New(slog.DiscardHandler)
	manager, err := session.New(session.Config{
		Store:        parts.Sessions,
		StoreTimeout: 2 * time.Second,
		Logger:       log,
		ErrorHandler: shop.StoreUnavailable(log),
	})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := realtime.New(realtime.Config{Broker: parts.Broker, Presence: parts.Presence, Authenticate: shop.Authenticate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Close() })
	jm, err := jobs.New(jobs.Config{Backend: parts.Jobs, Worker: "faults", MaxPayloadBytes: 1 << 20, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := jm.Handle(textstats.Kind, textstats.Job{}.Handle); err != nil {
		t.Fatal(err)
	}
	go func() { _ = jm.Run(ctx) }()
	s, err := shop.New(shop.Config{Instance: "faults", Sessions: manager, Jobs: jm, Hub: hub, Broker: parts.Broker, StoreKind: parts.Kind, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL
}

// user is one simulated shopper: logged in, adding mugs to the cart,
// reading it back and chatting, one request at a time.
type user struct {
	name string
	base string
	c    *http.Client

	mu         sync.Mutex
	acked      []int // the cart line's quantity each acknowledged add returned
	ackedAt    []time.Time
	chatEvery  int        // post to the chat every chatEvery steps; 0: never
	chats      []chatPost // acknowledged chat posts
	requests   int
	failed     int           // answered 503 with Retry-After
	bad        []string      // any other failure: a 500, a transport error, a stale cart
	errSince   time.Time     // when the first request of the current run of failures was sent
	longestErr time.Duration // longest run of failures, first failing request sent to next success
}

func newUser(base, name string) *user {
	jar, _ := cookiejar.New(nil)
	return &user{name: name, base: base, c: &http.Client{Jar: jar, Timeout: 15 * time.Second}}
}

// do sends one request and sorts its answer: ok (2xx), unavailable (503
// with Retry-After: the answer a user may see during a failover) or bad
// (anything else, which the tests forbid).
func (u *user) do(method, path string, body any) (status int, out map[string]any, ok bool) {
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, u.base+path, r)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := u.c.Do(req)
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.requests++
	if err != nil {
		u.fail(start)
		u.bad = append(u.bad, fmt.Sprintf("%s %s: %v", method, path, err))
		return 0, nil, false
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out = map[string]any{}
	_ = json.Unmarshal(data, &out)
	switch {
	case resp.StatusCode < 300:
		if !u.errSince.IsZero() {
			u.longestErr = max(u.longestErr, now.Sub(u.errSince))
			u.errSince = time.Time{}
		}
		return resp.StatusCode, out, true
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		u.fail(start)
		u.failed++
	default:
		u.fail(start)
		u.bad = append(u.bad, fmt.Sprintf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(data))))
	}
	return resp.StatusCode, out, false
}

// fail notes a failed request sent at start: a run of failures lasts from
// sending the first until the next success arrives.
func (u *user) fail(start time.Time) {
	if u.errSince.IsZero() {
		u.errSince = start
	}
}

// login retries until the store answers.
func (u *user) login(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		if st, out, ok := u.do("POST", "/api/login", map[string]any{"user": u.name}); !ok {
			return fmt.Errorf("login %s: %d %v", u.name, st, out)
		}
		return nil
	})
}

// step is one round of the user's load: an add, and every few rounds a
// cart read (which must never show fewer mugs than acknowledged) and a
// chat post.
func (u *user) step(i int) {
	if _, out, ok := u.do("POST", "/api/cart/items", map[string]any{"sku": "mug"}); ok {
		qty, _ := out["qty"].(float64)
		u.mu.Lock()
		u.acked = append(u.acked, int(qty))
		u.ackedAt = append(u.ackedAt, time.Now())
		u.mu.Unlock()
	}
	if i%4 == 3 {
		if _, out, ok := u.do("GET", "/api/cart", nil); ok {
			got := mugs(out)
			u.mu.Lock()
			if n := len(u.acked); n > 0 && got < u.acked[n-1] {
				u.bad = append(u.bad, fmt.Sprintf("GET /api/cart: %d mugs after an add acknowledged %d (an empty or stale session)", got, u.acked[n-1]))
			}
			u.mu.Unlock()
		}
	}
	if u.chatEvery > 0 && i%u.chatEvery == u.chatEvery-1 {
		text := fmt.Sprintf("%s-%d", u.name, i)
		if _, out, ok := u.do("POST", "/api/chat/messages", map[string]any{"text": text}); ok {
			off, _ := out["offset"].(float64)
			u.mu.Lock()
			u.chats = append(u.chats, chatPost{text: text, offset: uint64(off)})
			u.mu.Unlock()
		}
	}
}

// chatPost is an acknowledged chat message and the offset the hub gave it.
type chatPost struct {
	text   string
	offset uint64
}

func mugs(cart map[string]any) int {
	items, _ := cart["items"].([]any)
	for _, it := range items {
		if m, _ := it.(map[string]any); m["sku"] == "mug" {
			q, _ := m["qty"].(float64)
			return int(q)
		}
	}
	return 0
}

// acksSince counts the adds acknowledged after t.
func (u *user) acksSince(t time.Time) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, at := range u.ackedAt {
		if at.After(t) {
			n++
		}
	}
	return n
}

// lost counts acknowledged adds that vanished: each add returns the line's
// new quantity, so in a sequence of acknowledged adds every answer must
// exceed the one before, and the final cart must hold at least the last.
// A drop means adds were lost (an add that failed but was applied only
// makes a jump, never a drop).
func (u *user) lost(final int) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	lost := 0
	for i := 1; i < len(u.acked); i++ {
		if d := u.acked[i-1] + 1 - u.acked[i]; d > 0 {
			lost += d
		}
	}
	if n := len(u.acked); n > 0 && final < u.acked[n-1] {
		lost += u.acked[n-1] - final
	}
	return lost
}

// load is users running steps until stopped.
type load struct {
	users []*user
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startLoad logs n users in and starts their steps, a short pause apart
// (the machine is shared; this is steady load, not a benchmark). The first
// chatters users also chat, every chatEvery steps.
func startLoad(t *testing.T, base string, n, chatters, chatEvery int) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	for i := range n {
		u := newUser(base, fmt.Sprintf("u%d", i))
		if i < chatters {
			u.chatEvery = chatEvery
		}
		u.login(t)
		l.users = append(l.users, u)
	}
	for _, u := range l.users {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				u.step(i)
			}
		})
	}
	return l
}

// waitAcks waits until every user has had n adds acknowledged after since.
func (l *load) waitAcks(t *testing.T, since time.Time, n int, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		for _, u := range l.users {
			if got := u.acksSince(since); got < n {
				return fmt.Errorf("%s: %d adds acknowledged since %s, want %d", u.name, got, since.Format("15:04:05.000"), n)
			}
		}
		return nil
	})
}

// figures are what one fault cost, as the FAULT line reports them.
type figures struct {
	requests, failed, bad, acked, lost int
	longestErr                         time.Duration
}

// finish stops the load, reads every cart back (retrying while the store
// recovers) and sums the figures.
func (l *load) finish(t *testing.T) figures {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	var f figures
	for _, u := range l.users {
		var final int
		testenv.Eventually(t, 30*time.Second, func() error {
			st, out, ok := u.do("GET", "/api/cart", nil)
			if !ok {
				return fmt.Errorf("%s: final cart read: %d", u.name, st)
			}
			final = mugs(out)
			return nil
		})
		f.lost += u.lost(final)
		u.mu.Lock()
		f.requests += u.requests
		f.failed += u.failed
		f.bad += len(u.bad)
		f.acked += len(u.acked)
		f.longestErr = max(f.longestErr, u.longestErr)
		for i, b := range u.bad {
			if i == 3 {
				t.Logf("%s: %d more", u.name, len(u.bad)-3)
				break
			}
			t.Logf("%s: %s", u.name, b)
		}
		u.mu.Unlock()
	}
	return f
}

// report logs the figures in the one format BENCHMARKS.md quotes.
func (f figures) report(t *testing.T, fault string) {
	t.Logf("FAULT %s: requests=%d failed_503=%d failed_other=%d longest_error_window=%v acked_writes=%d acked_writes_lost=%d",
		fault, f.requests, f.failed, f.bad, f.longestErr.Round(10*time.Millisecond), f.acked, f.lost)
}

// uploadAndWait uploads a small file as u and waits until its job is done.
func uploadAndWait(t *testing.T, u *user) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "words.txt")
	_, _ = fw.Write([]byte("one two three\nfour\n"))
	_ = mw.Close()
	var id string
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := u.c.Post(u.base+"/api/files", mw.FormDataContentType(), bytes.NewReader(body.Bytes()))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out := map[string]any{}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		id, _ = out["id"].(string)
		if resp.StatusCode != http.StatusAccepted || id == "" {
			return fmt.Errorf("upload: %d %v", resp.StatusCode, out)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		st, job, _ := u.do("GET", "/api/files/"+url.PathEscape(id), nil)
		if st != 200 || job["state"] != "done" {
			return fmt.Errorf("job %s: %d %v", id, st, job)
		}
		return nil
	})
}
