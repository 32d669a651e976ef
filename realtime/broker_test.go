package realtime

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// The Broker contract, checked on both implementations: offsets grow, each
// message names its predecessor even under concurrent publishers on
// several instances, and History says exactly when it covers a gap.
func TestBrokerContract(t *testing.T) {
	run := func(t *testing.T, mk func() Broker) {
		ctx := context.Background()
		brokers := []Broker{mk(), mk(), mk()}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var all []Publication
		errs := make(chan error, 60)
		for i, b := range brokers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 20 {
					p, err := b.Publish(ctx, "contract", data(i*100+j))
					if err != nil {
						errs <- err
						continue
					}
					mu.Lock()
					all = append(all, p)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Concurrent publishers on three instances still form one chain.
		slices.SortFunc(all, func(a, b Publication) int { return cmp.Compare(a.Offset, b.Offset) })
		for i := 1; i < len(all); i++ {
			if all[i].Prev != all[i-1].Offset || all[i].Epoch != all[0].Epoch {
				t.Fatalf("chain broken at %d: %+v after %+v", i, all[i], all[i-1])
			}
		}
		pubs := all[len(all)-5:] // what a history of size 5 keeps
		h, err := brokers[0].History(ctx, "contract", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if h.Complete || h.Top.Offset != pubs[4].Offset || h.Top.Epoch != pubs[4].Epoch {
			t.Fatalf("history from 0 after trimming: complete=%v top=%+v, want incomplete at %d", h.Complete, h.Top, pubs[4].Offset)
		}
		// From the oldest kept message's predecessor: complete.
		h2, err := brokers[1].History(ctx, "contract", pubs[0].Prev, 100)
		if err != nil {
			t.Fatal(err)
		}
		if !h2.Complete || len(h2.Publications) != 5 {
			t.Fatalf("gap inside history: complete=%v, %d messages", h2.Complete, len(h2.Publications))
		}
		// Beyond the limit: incomplete.
		if h3, _ := brokers[1].History(ctx, "contract", pubs[0].Prev, 3); h3.Complete {
			t.Fatal("history over the limit reported complete")
		}
		for i, p := range h2.Publications {
			if p.Offset != pubs[i].Offset || string(p.Data) != string(pubs[i].Data) {
				t.Fatalf("history[%d] = %+v, published %+v", i, p, pubs[i])
			}
		}
		// At the top: complete and empty.
		if h4, _ := brokers[2].History(ctx, "contract", h.Top.Offset, 100); !h4.Complete || len(h4.Publications) != 0 {
			t.Fatalf("at the top: %+v", h4)
		}
		// A channel never written has a position too, and its first
		// message follows it.
		e, err := brokers[2].History(ctx, "empty", 0, 0)
		if err != nil || e.Top.Epoch == "" {
			t.Fatalf("empty channel: %+v %v", e, err)
		}
		p, err := brokers[0].Publish(ctx, "empty", data(1))
		if err != nil || p.Prev != e.Top.Offset || p.Epoch != e.Top.Epoch {
			t.Fatalf("first message %+v after position %+v (%v)", p, e.Top, err)
		}
	}
	t.Run("redis", func(t *testing.T) {
		r := testenv.Redis(t)
		run(t, func() Broker {
			return newRedisBrokerT(t, r.Addr(), func(c *RedisConfig) { c.HistorySize = 5 })
		})
	})
	t.Run("nats", func(t *testing.T) {
		n := testenv.NATS(t)
		run(t, func() Broker {
			return newNATSBrokerT(t, n.URL(), func(c *NATSConfig) { c.HistorySize = 5 })
		})
	})
}
