package redisbroker_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/brokertest"
	"github.com/unstuck-dev/unstuck/realtime/redisbroker"
)

func TestConformance(t *testing.T) {
	srv := testenv.Redis(t)
	brokertest.Run(t, brokertest.Backplane{
		Open: func(t *testing.T, historySize int) realtime.Broker {
			// One namespace per test, shared by the test's brokers.
			sum := sha256.Sum256([]byte(t.Name()))
			b, err := redisbroker.New(t.Context(), redisbroker.Options{
				URL: srv.URL(), Prefix: "t" + hex.EncodeToString(sum[:6]), HistorySize: historySize, Timeout: 2 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		},
		Stop: srv.Kill, Start: srv.Restart,
	})
}

// TestLostReplyPublishedOnce: a Publish that reached Redis and was applied,
// whose reply was lost with its connection, is repeated on a fresh
// connection and recognised: one message at one offset, not two.
func TestLostReplyPublishedOnce(t *testing.T) {
	srv := testenv.Redis(t)
	cut := testenv.CutReplies(t, srv.Addr())
	b, err := redisbroker.New(t.Context(), redisbroker.Options{URL: "redis://" + cut.Addr(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	first, err := b.Publish(ctx, "ch", []byte(`"first"`))
	if err != nil {
		t.Fatal(err)
	}
	cut.Arm(`"lost reply"`)
	p, err := b.Publish(ctx, "ch", []byte(`"lost reply"`))
	if err != nil || p.Offset != first.Offset+1 {
		t.Fatalf("Publish with a lost reply = %+v, %v; want offset %d", p, err, first.Offset+1)
	}
	h, err := b.History(ctx, "ch", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if h.Top.Offset != p.Offset || len(h.Publications) != 2 {
		t.Fatalf("history %+v after two publishes: the lost-reply message was stored twice", h)
	}
	if cut.Cuts() != 1 {
		t.Fatalf("%d replies lost, want 1: the test did not test", cut.Cuts())
	}
}

// TestConformanceReplicated runs the suite on a Sentinel deployment
// (through a redis+sentinel:// URL) and on a Cluster with a replica per
// master; the outage test is the single server's.
func TestConformanceReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replicated Redis deployments")
	}
	for name, start := range map[string]func(t *testing.T) string{
		"Sentinel": func(t *testing.T) string { return testenv.RedisSentinel(t).URL() },
		"Cluster":  func(t *testing.T) string { return testenv.RedisClusterReplicated(t, 3, 1).URL() },
	} {
		t.Run(name, func(t *testing.T) {
			url := start(t)
			brokertest.Run(t, brokertest.Backplane{
				Open: func(t *testing.T, historySize int) realtime.Broker {
					sum := sha256.Sum256([]byte(t.Name()))
					b, err := redisbroker.New(t.Context(), redisbroker.Options{
						URL: url, Prefix: "t" + hex.EncodeToString(sum[:6]), HistorySize: historySize, Timeout: 2 * time.Second,
					})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = b.Close() })
					return b
				},
			})
		})
	}
}
