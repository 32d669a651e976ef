package realtime_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
)

// presentUsers asks through the hub API: polling through a client would
// trip the client's rate limit.
func presentUsers(t *testing.T, h testHub, ch string) ([]string, error) {
	entries, err := h.Presence(context.Background(), ch)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, e := range entries {
		users = append(users, e.User)
	}
	slices.Sort(users)
	return users, nil
}

func wantUsers(t *testing.T, h testHub, ch string, want ...string) {
	t.Helper()
	testenv.Eventually(t, 15*time.Second, func() error {
		got, err := presentUsers(t, h, ch)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("presence %v, want %v", got, want)
		}
		return nil
	})
}

func TestPresenceAcrossHubsAndDeadInstance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, mk func() realtime.Broker) {
		const ttl = 3 * time.Second
		hubs := threeHubs(t, mk, func(c *realtime.Config) { c.PresenceTTL = ttl })
		a := dial(t, hubs[0].wsURL("alice"))
		b := dial(t, hubs[1].wsURL("bob"))
		obs := dial(t, hubs[2].wsURL("observer"))
		for _, c := range []*tclient{a, b} {
			if f := c.reply(map[string]any{"type": "subscribe", "channel": "room", "presence": true}); f.Type != realtime.FrameSubscribed {
				t.Fatalf("subscribe: %+v", f)
			}
		}
		// The protocol's presence command sees both.
		f := obs.reply(map[string]any{"type": "presence", "channel": "room"})
		if f.Type != realtime.FramePresence || len(f.Clients) != 2 {
			t.Fatalf("presence reply %+v", f)
		}
		wantUsers(t, hubs[2], "room", "alice", "bob")
		// Entries outlive their TTL while their instance heartbeats: watch
		// past the join's own expiry (sampling every 50 ms).
		deadline := time.Now().Add(ttl)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for time.Now().Before(deadline) {
			if got, _ := presentUsers(t, hubs[2], "room"); !slices.Equal(got, []string{"alice", "bob"}) {
				t.Fatalf("a live entry lapsed: %v", got)
			}
			<-tick.C
		}
		// Leaving removes the entry at once.
		if f := b.reply(map[string]any{"type": "unsubscribe", "channel": "room"}); f.Type != realtime.FrameUnsubscribed {
			t.Fatalf("unsubscribe: %+v", f)
		}
		wantUsers(t, hubs[2], "room", "alice")
		// An instance that dies leaves its entries behind; they lapse
		// within the TTL since nobody refreshes them.
		_ = hubs[0].Close()
		wantUsers(t, hubs[2], "room")
	})
}
