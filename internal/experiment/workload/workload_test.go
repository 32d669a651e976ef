package workload_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/metrics"
	"github.com/unstuck-dev/unstuck/internal/experiment/model"
	"github.com/unstuck-dev/unstuck/internal/experiment/workload"
	"github.com/unstuck-dev/unstuck/internal/shop"
	"github.com/unstuck-dev/unstuck/internal/shop/textstats"
	"github.com/unstuck-dev/unstuck/internal/storeurl"
	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/memstore"
)

// newShop builds one shop instance as `unstuck app --sessions memory`
// does: sessions in its own memory, chat and jobs over the NATS server.
func newShop(t *testing.T, natsURL, name string) http.Handler {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	parts, err := storeurl.Open(ctx, natsURL, storeurl.Options{VisibilityTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	mem := memstore.New(memstore.Options{})
	sessions, err := session.New(session.Config{Store: mem, Cookie: session.CookieConfig{Name: "unstuck_session"}})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := realtime.New(realtime.Config{Broker: parts.Broker, Presence: parts.Presence, Authenticate: shop.Authenticate})
	if err != nil {
		t.Fatal(err)
	}
	jm, err := jobs.New(jobs.Config{Backend: parts.Jobs, Worker: name, MaxPayloadBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := jm.Handle(textstats.Kind, textstats.Job{StepDelay: 10 * time.Millisecond}.Handle); err != nil {
		t.Fatal(err)
	}
	var workers sync.WaitGroup
	workers.Go(func() { _ = jm.Run(ctx) })
	s, err := shop.New(shop.Config{Instance: name, Sessions: sessions, Jobs: jm, Hub: hub, Broker: parts.Broker, StoreKind: "memory", Sticky: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = hub.Shutdown(sctx)
		cancel()
		workers.Wait()
		_ = mem.Close()
		parts.Close()
	})
	return s
}

// swappable serves through whichever shop instance is current.
type swappable struct{ h atomic.Pointer[http.Handler] }

func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }

func params() model.Params {
	p := model.Quick()
	p.Users = 15
	p.Duration = 3 * time.Second
	p.Session.Mean = 2 * time.Second
	p.Script.Upload, p.Script.Chat, p.Script.TwoTabs = 0.3, 0.3, 0.2
	p.Timeline.StoreDowntime = 100 * time.Millisecond
	return p
}

// run plays the users against base, calling during halfway, and returns
// what they observed.
func run(t *testing.T, base string, during func()) *metrics.Collector {
	t.Helper()
	p := params()
	start := time.Now().Add(100 * time.Millisecond)
	var spans []metrics.Span
	for _, s := range p.Spans() {
		spans = append(spans, metrics.Span{Name: s.Name, Start: s.Start, End: s.End})
	}
	c := metrics.NewCollector(start, spans)
	d, err := workload.New(workload.Config{BaseURL: base, Params: p, Settle: 4 * time.Second, Recorder: c})
	if err != nil {
		t.Fatal(err)
	}
	if during != nil {
		go func() {
			time.Sleep(time.Until(start.Add(p.Duration / 2)))
			during()
		}()
	}
	if err := d.Run(context.Background(), start); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLedgersFindNothingLostOnAHealthyShop plays users against one
// healthy instance: every request is answered and nothing is lost.
func TestLedgersFindNothingLostOnAHealthyShop(t *testing.T) {
	n := testenv.NATS(t)
	srv := httptest.NewServer(newShop(t, n.URL(), "app-1"))
	defer srv.Close()
	c := run(t, srv.URL, nil)
	f, _, _ := c.Build(metrics.Input{})
	if f.Requests < 20 {
		t.Fatalf("only %d requests", f.Requests)
	}
	if f.Errors != 0 || f.SessionsLost != 0 || f.CartItemsLost != 0 || f.UpdatesLost != 0 || f.UploadsLost != 0 ||
		f.MessagesLost != 0 || f.MessagesDuplicated != 0 || f.CartItemsExtra != 0 {
		t.Fatalf("a healthy shop: %+v", f)
	}
}

// TestLedgersCountWhatACrashedInstanceTookAlong replaces the instance
// halfway by a fresh one, as a sticky balancer does when the pinned
// instance dies: every user still there finds itself logged out, with an
// empty cart.
func TestLedgersCountWhatACrashedInstanceTookAlong(t *testing.T) {
	n := testenv.NATS(t)
	var sw swappable
	first := newShop(t, n.URL(), "app-1")
	sw.h.Store(&first)
	srv := httptest.NewServer(&sw)
	defer srv.Close()
	second := newShop(t, n.URL(), "app-2")
	c := run(t, srv.URL, func() { sw.h.Store(&second) })
	f, _, _ := c.Build(metrics.Input{})
	if f.SessionsLost == 0 {
		t.Fatalf("no session lost when the instance holding them was replaced: %+v", f)
	}
	if f.CartItemsExtra != 0 || f.MessagesDuplicated != 0 {
		t.Fatalf("phantom state after a crash: %+v", f)
	}
	t.Logf("lost: %d sessions, %d cart items, %d uploads, %d messages", f.SessionsLost, f.CartItemsLost, f.UploadsLost, f.MessagesLost)
}
