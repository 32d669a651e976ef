package realtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/redisbroker"
)

// On Redis Cluster a channel's keys share a slot through the {channel}
// hash tag, and Pub/Sub reaches every node's subscribers.
func TestRedisClusterFanoutAndResume(t *testing.T) {
	cl := testenv.RedisCluster(t, 3)
	mk := func() realtime.Broker {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: cl.Addrs(), DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		b, err := redisbroker.New(context.Background(), redisbroker.Options{Client: c, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hubs := threeHubs(t, mk, nil)
	ctx := context.Background()
	var clients []*tclient
	for i, h := range hubs {
		c := dial(t, h.wsURL("u"))
		c.subscribe("room-" + string(rune('a'+i)))
		c.subscribe("shared")
		clients = append(clients, c)
	}
	for i := range 5 {
		if _, err := hubs[i%3].Publish(ctx, "shared", data(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		for i := range 5 {
			if got := dataN(t, c.message("shared")); got != i {
				t.Fatalf("got n=%d, want %d", got, i)
			}
		}
	}
	// Resume on another hub from the cluster's history.
	first := clients[0]
	pos := *first.reply(map[string]any{"type": "subscribe", "channel": "late"}).Offset
	if _, err := hubs[1].Publish(ctx, "late", data(7)); err != nil {
		t.Fatal(err)
	}
	sub := first.message("late")
	c2 := dial(t, hubs[2].wsURL("u"))
	id := c2.send(map[string]any{"type": "subscribe", "channel": "late", "recover": true, "offset": pos, "epoch": sub.Epoch})
	if dataN(t, c2.message("late")) != 7 { // the replay comes before the reply
		t.Fatal("replay missing")
	}
	if r := c2.expect(func(f frame) bool { return f.ID == id }); r.Recovered == nil || !*r.Recovered {
		t.Fatalf("resume on cluster: %+v", r)
	}
}
