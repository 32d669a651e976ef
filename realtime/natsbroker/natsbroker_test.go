package natsbroker_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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

// TestLostReplyRepeatAfterAnotherPublish: a Publish whose answer was lost
// is repeated once its client has reconnected, and by then another
// instance may have published on the channel: what happens when the
// server restarts under several publishers (the experiment's store
// restart once stored a chat message twice, 64 duplicates, one per
// chatter). The repeat must still recognise that its first try landed,
// after a plain reconnect and after the server restarted from disk.
func TestLostReplyRepeatAfterAnotherPublish(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			testLostReplyRepeatAfterAnotherPublish(t, restart)
		})
	}
}

func testLostReplyRepeatAfterAnotherPublish(t *testing.T, restart bool) {
	srv := testenv.NATS(t)
	cut := testenv.CutReplies(t, srv.Server.Addr().String())
	// Holding the reconnect lets the other publisher go between the lost
	// answer and the repeat every time, not only when the timing allows.
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	nc, err := nats.Connect("nats://"+cut.Addr(), nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(int) time.Duration { <-release; return 0 }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unblock(); nc.Close() })
	a, err := natsbroker.New(t.Context(), natsbroker.Options{Client: nc, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b, err := natsbroker.New(t.Context(), natsbroker.Options{URL: srv.URL(), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	first, err := a.Publish(ctx, "ch", []byte(`"first"`))
	if err != nil {
		t.Fatal(err)
	}
	cut.Arm(`"from a"`)
	type result struct {
		p   realtime.Publication
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := a.Publish(ctx, "ch", []byte(`"from a"`))
		done <- result{p, err}
	}()
	testenv.Eventually(t, 10*time.Second, func() error {
		if cut.Cuts() != 1 {
			return errors.New("the answer to a's publish is not lost yet")
		}
		return nil
	})
	if restart {
		srv.Restart()
		testenv.Eventually(t, 10*time.Second, b.Healthy)
	}
	other, err := b.Publish(ctx, "ch", []byte(`"from b"`))
	if err != nil {
		t.Fatal(err)
	}
	unblock()
	r := <-done
	if r.err != nil {
		t.Fatalf("Publish with a lost answer: %v", r.err)
	}
	h, err := b.History(ctx, "ch", first.Offset, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range h.Publications {
		got = append(got, fmt.Sprintf("%d:%s", p.Offset, p.Data))
	}
	want := []string{fmt.Sprintf("%d:%s", r.p.Offset, `"from a"`), fmt.Sprintf("%d:%s", other.Offset, `"from b"`)}
	if !slices.Equal(got, want) {
		t.Fatalf("history after the lost answer: %v, want %v (a's message once, at the offset Publish returned)", got, want)
	}
	if r.p.Prev != first.Offset {
		t.Fatalf("a's message has Prev %d, want %d", r.p.Prev, first.Offset)
	}
}
