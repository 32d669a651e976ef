package realtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
)

// forEachBackend runs test once over a private Redis and once over a
// private NATS; mk makes one broker per hub on the shared backplane.
func forEachBackend(t *testing.T, test func(t *testing.T, mk func() realtime.Broker)) {
	t.Run("redis", func(t *testing.T) {
		r := testenv.Redis(t)
		test(t, func() realtime.Broker { return newRedisBrokerT(t, r.Addr()) })
	})
	t.Run("nats", func(t *testing.T) {
		n := testenv.NATS(t)
		test(t, func() realtime.Broker { return newNATSBrokerT(t, n.URL()) })
	})
}

func threeHubs(t *testing.T, mk func() realtime.Broker, mut func(*realtime.Config)) []testHub {
	hubs := make([]testHub, 3)
	for i := range hubs {
		hubs[i] = startHub(t, mk(), mut)
	}
	return hubs
}

func data(i int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)) }

func dataN(t *testing.T, f frame) int {
	t.Helper()
	var v struct{ N int }
	if err := json.Unmarshal(f.Data, &v); err != nil {
		t.Fatalf("data %s: %v", f.Data, err)
	}
	return v.N
}

func TestFanoutAcrossHubs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, mk func() realtime.Broker) {
		hubs := threeHubs(t, mk, nil)
		var clients []*tclient
		for i, h := range hubs {
			c := dial(t, h.wsURL(fmt.Sprintf("u%d", i)))
			c.subscribe("room")
			clients = append(clients, c)
		}
		// A client on hub 0 publishes; the API publishes on hub 2.
		pub := dial(t, hubs[0].wsURL("writer"))
		const n = 20
		for i := range n {
			if i%2 == 0 {
				r := pub.reply(map[string]any{"type": "publish", "channel": "room", "data": data(i)})
				if r.Type != realtime.FramePublished || r.Offset == nil {
					t.Fatalf("publish reply %+v", r)
				}
			} else if _, err := hubs[2].Publish(context.Background(), "room", data(i)); err != nil {
				t.Fatal(err)
			}
		}
		for ci, c := range clients {
			var last uint64
			for i := range n {
				f := c.message("room")
				if got := dataN(t, f); got != i {
					t.Fatalf("client %d: message %d has n=%d: order broken", ci, i, got)
				}
				if *f.Offset <= last {
					t.Fatalf("client %d: offset %d after %d", ci, *f.Offset, last)
				}
				last = *f.Offset
			}
		}
	})
}

func TestUserDeliveryReachesEveryConnection(t *testing.T) {
	forEachBackend(t, func(t *testing.T, mk func() realtime.Broker) {
		hubs := threeHubs(t, mk, nil)
		a1 := dial(t, hubs[1].wsURL("alice"))
		a2 := dial(t, hubs[2].wsURL("alice"))
		a1.subscribe("$user:alice")
		a2.subscribe("$user:alice")
		bob := dial(t, hubs[1].wsURL("bob"))
		if f := bob.reply(map[string]any{"type": "subscribe", "channel": "$user:alice"}); f.Type != realtime.FrameError || f.Code != realtime.ErrCodeForbidden {
			t.Fatalf("bob subscribed to alice's channel: %+v", f)
		}
		if f := bob.reply(map[string]any{"type": "publish", "channel": "$user:alice", "data": 1}); f.Type != realtime.FrameError || f.Code != realtime.ErrCodeForbidden {
			t.Fatalf("a client published to a user channel: %+v", f)
		}
		if _, err := hubs[0].PublishToUser(context.Background(), "alice", json.RawMessage(`{"hello":"alice"}`)); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*tclient{a1, a2} {
			if f := c.message("$user:alice"); string(f.Data) != `{"hello":"alice"}` {
				t.Fatalf("got %s", f.Data)
			}
		}
	})
}

// A client that reconnects to another instance gets what it missed, or is
// told explicitly that it cannot.
func TestResumeOnAnotherHub(t *testing.T) {
	forEachBackend(t, func(t *testing.T, mk func() realtime.Broker) {
		hubs := threeHubs(t, mk, func(c *realtime.Config) { c.HistoryLimit = 10 })
		ctx := context.Background()
		c := dial(t, hubs[0].wsURL("u"))
		sub := c.subscribe("feed")
		for i := range 3 {
			if _, err := hubs[1].Publish(ctx, "feed", data(i)); err != nil {
				t.Fatal(err)
			}
		}
		var last frame
		for range 3 {
			last = c.message("feed")
		}
		if last.Epoch != sub.Epoch {
			t.Fatalf("epoch changed from %q to %q", sub.Epoch, last.Epoch)
		}
		c.ws.CloseNow()
		for i := 3; i < 8; i++ { // missed while away
			if _, err := hubs[2].Publish(ctx, "feed", data(i)); err != nil {
				t.Fatal(err)
			}
		}
		c2 := dial(t, hubs[1].wsURL("u"))
		id := c2.send(map[string]any{"type": "subscribe", "channel": "feed", "recover": true, "offset": *last.Offset, "epoch": last.Epoch})
		for i := 3; i < 8; i++ {
			if got := dataN(t, c2.message("feed")); got != i {
				t.Fatalf("replayed n=%d, want %d", got, i)
			}
		}
		r := c2.expect(func(f frame) bool { return f.ID == id })
		if r.Type != realtime.FrameSubscribed || r.Recovered == nil || !*r.Recovered {
			t.Fatalf("want recovered:true, got %+v", r)
		}
		// Live messages follow the replay without a hole or a repeat.
		if _, err := hubs[0].Publish(ctx, "feed", data(8)); err != nil {
			t.Fatal(err)
		}
		if got := dataN(t, c2.message("feed")); got != 8 {
			t.Fatalf("live after replay: n=%d", got)
		}

		// A stale epoch and a gap longer than the history limit both say
		// recovered:false and replay nothing.
		for name, cmd := range map[string]map[string]any{
			"epoch": {"type": "subscribe", "channel": "feed", "recover": true, "offset": *last.Offset, "epoch": "gone"},
			"gap":   {"type": "subscribe", "channel": "feed", "recover": true, "offset": 0, "epoch": last.Epoch},
		} {
			c3 := dial(t, hubs[2].wsURL("u"))
			if name == "gap" {
				for i := range 12 {
					if _, err := hubs[0].Publish(ctx, "feed", data(100+i)); err != nil {
						t.Fatal(err)
					}
				}
			}
			r := c3.reply(cmd)
			if r.Type != realtime.FrameSubscribed || r.Recovered == nil || *r.Recovered {
				t.Fatalf("%s: want recovered:false, got %+v", name, r)
			}
			select {
			case f := <-c3.frames:
				t.Fatalf("%s: unexpected frame after recovered:false: %+v", name, f)
			default:
			}
		}
	})
}

// lossyBroker drops every third live message before the hub sees it, as a
// flaky backplane link would; the hub must notice by offsets and refill
// from history.
type lossyBroker struct {
	realtime.Broker
}

type lossyHandler struct {
	realtime.BrokerHandler
	n int
}

func (l *lossyHandler) HandlePublication(ch string, p realtime.Publication) {
	l.n++
	if l.n%3 == 0 {
		return
	}
	l.BrokerHandler.HandlePublication(ch, p)
}

func (l lossyBroker) Run(ctx context.Context, h realtime.BrokerHandler) error {
	return l.Broker.Run(ctx, &lossyHandler{BrokerHandler: h})
}

func TestGapInLiveStreamIsFilledFromHistory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, mk func() realtime.Broker) {
		src := startHub(t, mk(), nil)
		lossy := startHub(t, lossyBroker{mk()}, func(c *realtime.Config) { c.PositionCheck = 20 * time.Millisecond })
		c := dial(t, lossy.wsURL("u"))
		c.subscribe("g")
		const n = 30
		for i := range n {
			if _, err := src.Publish(context.Background(), "g", data(i)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range n {
			if got := dataN(t, c.message("g")); got != i {
				t.Fatalf("message %d arrived as n=%d", i, got)
			}
		}
		if s := lossy.Stats(); s.GapsFilled == 0 || s.Resets != 0 {
			t.Fatalf("every third message was dropped, yet %+v", s)
		}
	})
}

func TestHandshakeNeedsAuthentication(t *testing.T) {
	r := testenv.Redis(t)
	h := startHub(t, newRedisBrokerT(t, r.Addr()), nil)
	resp, err := http.Get(h.srv.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", resp.StatusCode)
	}
	// With TokenAuth: a valid token connects as its user, a forged one
	// is refused before the upgrade.
	auth := realtime.TokenAuth{Secret: []byte(strings.Repeat("k", 32))}
	ht := startHub(t, newRedisBrokerT(t, r.Addr()), func(c *realtime.Config) { c.Authenticate = auth.Authenticate })
	tok, err := auth.Issue("carol", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	base := "ws" + strings.TrimPrefix(ht.srv.URL, "http") + "/ws?token="
	if c := dial(t, base+tok); c.hello.User != "carol" {
		t.Fatalf("connected as %q", c.hello.User)
	}
	if _, err := tryDial(t, base+tok+"x"); err == nil {
		t.Fatal("a forged token connected")
	}
	if _, err := realtime.New(realtime.Config{Broker: newRedisBrokerT(t, r.Addr())}); err == nil {
		t.Fatal("a hub without Authenticate was created")
	}
}

func TestClientJSIsServed(t *testing.T) {
	r := testenv.Redis(t)
	h := startHub(t, newRedisBrokerT(t, r.Addr()), nil)
	resp, err := http.Get(h.srv.URL + "/realtime/realtime.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(string(body), "export class Realtime") {
		t.Fatal("served file is not the client module")
	}
	resp, err = http.Get(h.srv.URL + "/realtime/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
}

func TestAuthorizeHook(t *testing.T) {
	r := testenv.Redis(t)
	h := startHub(t, newRedisBrokerT(t, r.Addr()), func(c *realtime.Config) {
		c.Authorize = func(_ context.Context, user string, op realtime.Op, ch string) error {
			if op == realtime.OpPublish && strings.HasPrefix(ch, "ro:") && user != "admin" {
				return fmt.Errorf("%s is read-only", ch)
			}
			return nil
		}
	})
	u := dial(t, h.wsURL("u"))
	u.subscribe("ro:news")
	if f := u.reply(map[string]any{"type": "publish", "channel": "ro:news", "data": 1}); f.Type != realtime.FrameError || f.Code != realtime.ErrCodeForbidden {
		t.Fatalf("read-only publish allowed: %+v", f)
	}
	admin := dial(t, h.wsURL("admin"))
	if f := admin.reply(map[string]any{"type": "publish", "channel": "ro:news", "data": 1}); f.Type != realtime.FramePublished {
		t.Fatalf("admin publish refused: %+v", f)
	}
	if f := u.message("ro:news"); string(f.Data) != "1" {
		t.Fatalf("got %s", f.Data)
	}
	// The built-in rule holds even with a permissive hook.
	if f := u.reply(map[string]any{"type": "subscribe", "channel": "$user:admin"}); f.Type != realtime.FrameError || f.Code != realtime.ErrCodeForbidden {
		t.Fatalf("subscribed to another user's channel: %+v", f)
	}
}
