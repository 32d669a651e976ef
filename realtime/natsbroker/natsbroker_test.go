package natsbroker_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/brokertest"
	"github.com/unstuck-dev/unstuck/realtime/natsbroker"
)

func TestConformance(t *testing.T) {
	srv := testenv.NATS(t)
	brokertest.Run(t, brokertest.Backplane{
		Open: func(t *testing.T, historySize int) realtime.Broker {
			// One namespace per test, shared by the test's brokers.
			h := sha256.Sum256([]byte(t.Name()))
			sum := hex.EncodeToString(h[:6])
			b, err := natsbroker.New(t.Context(), natsbroker.Options{
				URL: srv.URL(), Stream: "T" + sum, Prefix: "t" + sum, PresenceBucket: "p" + sum,
				HistorySize: historySize, Timeout: 2 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		},
		Stop: srv.Shutdown, Start: srv.Restart,
	})
}

// TestLostReplyPublishedOnce: a Publish that reached the server and was
// stored, whose answer was lost with its connection, is not left waiting
// for an answer that cannot come: it is repeated on the reconnected client
// and recognised, one message at one offset.
func TestLostReplyPublishedOnce(t *testing.T) {
	srv := testenv.NATS(t)
	cut := testenv.CutReplies(t, srv.Server.Addr().String())
	b, err := natsbroker.New(t.Context(), natsbroker.Options{URL: "nats://" + cut.Addr(), Timeout: 20 * time.Second})
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
	if err != nil {
		t.Fatalf("Publish with a lost answer: %v", err)
	}
	h, err := b.History(ctx, "ch", first.Offset, 10)
	if err != nil {
		t.Fatal(err)
	}
	if h.Top.Offset != p.Offset || len(h.Publications) != 1 || string(h.Publications[0].Data) != `"lost reply"` {
		t.Fatalf("history after the lost answer: %+v, want the one message at offset %d", h, p.Offset)
	}
	if cut.Cuts() != 1 {
		t.Fatalf("%d answers lost, want 1: the test did not test", cut.Cuts())
	}
}

// TestConformanceCluster runs the suite on a 3-node cluster, the stream
// and presence bucket with three replicas: history and presence read on
// another instance right after a write must see it, though replicas lag.
func TestConformanceCluster(t *testing.T) {
	env := testenv.NATSCluster(t, 3)
	brokertest.Run(t, brokertest.Backplane{
		Open: func(t *testing.T, historySize int) realtime.Broker {
			h := sha256.Sum256([]byte(t.Name()))
			sum := hex.EncodeToString(h[:6])
			b, err := natsbroker.New(t.Context(), natsbroker.Options{
				URL: env.URL(), Stream: "T" + sum, Prefix: "t" + sum, PresenceBucket: "p" + sum,
				HistorySize: historySize, Timeout: 5 * time.Second, Replicas: 3,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		},
	})
}
