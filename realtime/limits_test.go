package realtime_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
)

func redisHub(t *testing.T, mut func(*realtime.Config)) testHub {
	r := testenv.Redis(t)
	return startHub(t, newRedisBrokerT(t, r.Addr()), mut)
}

func TestOversizedFrameClosesWith1009(t *testing.T) {
	h := redisHub(t, func(c *realtime.Config) { c.Limits.MessageSize = 1024 })
	c := dial(t, h.wsURL("u"))
	c.send(map[string]any{"type": "publish", "channel": "c", "data": strings.Repeat("x", 2000)})
	if code := c.waitClosed(); code != websocket.StatusMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
	if _, err := h.Publish(context.Background(), "c", []byte(`"`+strings.Repeat("x", 2000)+`"`)); err == nil {
		t.Fatal("Hub.Publish accepted a message over the size limit")
	}
}

func TestRateLimit(t *testing.T) {
	h := redisHub(t, func(c *realtime.Config) { c.Limits.Rate = 0.001; c.Limits.Burst = 3 }) // no refill within the test
	c := dial(t, h.wsURL("u"))
	for range 20 {
		// The hub may close mid-way: that is the behaviour under test.
		_ = c.ws.Write(context.Background(), websocket.MessageText, []byte(`{"type":"ping","id":1}`))
	}
	pongs, limited := 0, 0
	for {
		f, err := c.next(func(frame) bool { return true }, 15*time.Second)
		if err != nil {
			break
		}
		switch {
		case f.Type == realtime.FramePong:
			pongs++
		case f.Type == realtime.FrameError && f.Code == realtime.ErrCodeRateLimited:
			if f.ID != 1 {
				t.Fatalf("rate_limited error without the command's id: %+v", f)
			}
			limited++
		}
	}
	if code := c.waitClosed(); code != realtime.CloseRateLimited {
		t.Fatalf("close code %d, want %d", code, realtime.CloseRateLimited)
	}
	if pongs != 3 || limited == 0 {
		t.Fatalf("%d pongs and %d rate_limited errors for 20 pings at burst 3", pongs, limited)
	}
}

// A client that stops reading is dropped with CloseSlowConsumer once its
// queue overflows; a reading client on the same channel gets everything
// and publishing never waits for the slow one.
func TestSlowConsumerIsDroppedWithoutBlockingOthers(t *testing.T) {
	h := redisHub(t, func(c *realtime.Config) { c.Limits.SendQueue = 16 })
	fast := dial(t, h.wsURL("fast"))
	fast.subscribe("fire")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	slow, _, err := websocket.Dial(ctx, h.wsURL("slow"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.CloseNow()
	slow.SetReadLimit(1 << 20)
	if err := slow.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","channel":"fire"}`)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if h.LocalSubscribers("fire") != 2 {
			return errors.New("slow client not subscribed yet")
		}
		return nil
	})
	payload := []byte(`"` + strings.Repeat("x", 32<<10) + `"`)
	n := 0
	for h.Stats().SlowConsumers == 0 {
		if n > 5000 {
			t.Fatal("no slow consumer detected after 5000 messages of 32 KiB")
		}
		if _, err := h.Publish(ctx, "fire", payload); err != nil {
			t.Fatal(err)
		}
		n++
		if n%16 == 0 {
			// Keep pace with the fast client so only the slow one lags.
			for range 16 {
				fast.message("fire")
			}
		}
	}
	for range n % 16 {
		fast.message("fire")
	}
	// Now read the slow socket: after what was in flight comes the close.
	var code websocket.StatusCode
	for {
		_, _, err := slow.Read(ctx)
		if err != nil {
			code = websocket.CloseStatus(err)
			break
		}
	}
	if code != realtime.CloseSlowConsumer {
		t.Fatalf("slow client closed with %d, want %d", code, realtime.CloseSlowConsumer)
	}
	// The fast client is still served.
	if _, err := h.Publish(ctx, "fire", []byte(`"after"`)); err != nil {
		t.Fatal(err)
	}
	if f := fast.message("fire"); string(f.Data) != `"after"` {
		t.Fatalf("fast client got %s", f.Data)
	}
}

func TestMaxConnections(t *testing.T) {
	h := redisHub(t, func(c *realtime.Config) { c.Limits.MaxConnections = 2 })
	dial(t, h.wsURL("a"))
	dial(t, h.wsURL("b"))
	if _, err := tryDial(t, h.wsURL("c")); err == nil {
		t.Fatal("a third connection was accepted over MaxConnections=2")
	}
}

// A client resubscribing all its channels at once after a reconnect must
// not be refused by the rate limit under the default limits.
func TestFullResubscribePassesDefaultLimits(t *testing.T) {
	h := redisHub(t, nil)
	c := dial(t, h.wsURL("u"))
	const n = 256 // the default MaxSubscriptions
	for i := range n {
		c.send(map[string]any{"type": "subscribe", "channel": fmt.Sprintf("c%d", i)})
	}
	for range n {
		f := c.expect(func(f frame) bool { return f.ID != 0 })
		if f.Type != realtime.FrameSubscribed {
			t.Fatalf("subscribe refused: %+v", f)
		}
	}
	if f := c.reply(map[string]any{"type": "subscribe", "channel": "one-too-many"}); f.Type != realtime.FrameError {
		t.Fatalf("subscription %d accepted over MaxSubscriptions: %+v", n+1, f)
	}
}
