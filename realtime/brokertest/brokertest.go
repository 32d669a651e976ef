// Package brokertest checks that a realtime.Broker keeps the guarantees
// documented on realtime.Broker, and on realtime.PresenceStore when it is
// one, in the spirit of testing/fstest. Every broker in this module runs
// it; so can a third-party one:
//
//	func TestConformance(t *testing.T) {
//		srv := startServer(t)
//		brokertest.Run(t, brokertest.Backplane{
//			Open: func(t *testing.T, historySize int) realtime.Broker { return newBroker(t, srv, historySize) },
//			Stop: srv.Kill, Start: srv.Restart,
//		})
//	}
package brokertest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/realtime"
)

// Backplane is the server under test, as the suite needs it.
type Backplane struct {
	// Open returns a new broker on the backplane, as another instance
	// would make it (with a connection of its own), keeping historySize
	// messages per channel (0: the broker's default). Brokers opened in
	// one test must share a namespace (key prefix, stream) that no other
	// test uses, and one test always asks for the same historySize.
	// Required.
	Open func(t *testing.T, historySize int) realtime.Broker
	// Stop takes the backplane down (kills its server) and Start brings
	// it back on the same address, with or without its data. Without
	// them the outage and restart tests are skipped.
	Stop, Start func()
}

// Run runs the conformance suite against brokers made by b.Open.
func Run(t *testing.T, b Backplane) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backplane)
	}{
		{"OffsetsAndHistory", testOffsetsAndHistory},
		{"LiveDeliveryInOrderAtMostOnce", testLiveDelivery},
		{"Presence", testPresence},
		{"OutageAndReconnect", testOutage},
		{"FirstCallAfterRestart", testRestart},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func data(i int) []byte { return fmt.Appendf(nil, `{"n":%d}`, i) }

// eventually polls check until it returns nil, failing the test with its
// last error after timeout.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Offsets grow, each message names its predecessor even under concurrent
// publishers on several instances, and History says exactly when it
// covers a gap.
func testOffsetsAndHistory(t *testing.T, b Backplane) {
	ctx := ctxT(t)
	brokers := []realtime.Broker{b.Open(t, 5), b.Open(t, 5), b.Open(t, 5)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []realtime.Publication
	errs := make(chan error, 60)
	for i, br := range brokers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				p, err := br.Publish(ctx, "contract", data(i*100+j))
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
	slices.SortFunc(all, func(a, b realtime.Publication) int { return cmp.Compare(a.Offset, b.Offset) })
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
	// A channel never written has a position too, and its first message
	// follows it.
	e, err := brokers[2].History(ctx, "empty", 0, 0)
	if err != nil || e.Top.Epoch == "" {
		t.Fatalf("empty channel: %+v %v", e, err)
	}
	p, err := brokers[0].Publish(ctx, "empty", data(1))
	if err != nil || p.Prev != e.Top.Offset || p.Epoch != e.Top.Epoch {
		t.Fatalf("first message %+v after position %+v (%v)", p, e.Top, err)
	}
}

// recorder is the BrokerHandler of a running broker.
type recorder struct {
	mu         sync.Mutex
	got        map[string][]realtime.Publication
	reconnects int
}

func (r *recorder) HandlePublication(channel string, p realtime.Publication) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[channel] = append(r.got[channel], p)
}

func (r *recorder) Reconnected() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reconnects++
}

func (r *recorder) received(channel string) []realtime.Publication {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[channel])
}

func (r *recorder) reconnected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reconnects
}

// start runs br until the test ends, as a hub would, and waits until it
// is healthy.
func start(t *testing.T, br realtime.Broker) *recorder {
	t.Helper()
	rec := &recorder{got: map[string][]realtime.Publication{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx, rec) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	eventually(t, 20*time.Second, br.Healthy)
	return rec
}

// waitFor waits until rec has delivered the message at offset top on
// channel, and returns what it delivered, checked: in offset order, each
// once, each as published.
func waitFor(t *testing.T, rec *recorder, channel string, top uint64, published map[uint64]realtime.Publication) []realtime.Publication {
	t.Helper()
	var got []realtime.Publication
	eventually(t, 20*time.Second, func() error {
		got = rec.received(channel)
		if len(got) == 0 || got[len(got)-1].Offset < top {
			return fmt.Errorf("%d messages delivered, not yet offset %d", len(got), top)
		}
		return nil
	})
	for i, p := range got {
		if i > 0 && p.Offset <= got[i-1].Offset {
			t.Fatalf("delivered offset %d after %d: reordered or repeated", p.Offset, got[i-1].Offset)
		}
		want, ok := published[p.Offset]
		if !ok || p.Prev != want.Prev || p.Epoch != want.Epoch || !bytes.Equal(p.Data, want.Data) {
			t.Fatalf("delivered %+v, published %+v", p, want)
		}
	}
	return got
}

// Messages reach a subscribed instance in offset order, each at most once
// and as published: all of them from one publisher, the last one at least
// from two publishing at once (whose live copies may overtake each other,
// so a broker may skip). Resubscribing does not double them.
func testLiveDelivery(t *testing.T, b Backplane) {
	ctx := ctxT(t)
	sub := b.Open(t, 0)
	rec := start(t, sub)
	const ch = "room:1"
	if err := sub.Subscribe(ctx, ch); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	pubs := []realtime.Broker{b.Open(t, 0), b.Open(t, 0)}
	published := map[uint64]realtime.Publication{}
	var top uint64
	for i := range 10 {
		p, err := pubs[0].Publish(ctx, ch, data(i))
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		published[p.Offset], top = p, p.Offset
	}
	if got := waitFor(t, rec, ch, top, published); len(got) != 10 {
		t.Fatalf("%d of 10 messages of one publisher delivered with nothing failing", len(got))
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, pub := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				p, err := pub.Publish(ctx, ch, data(100+i*100+j))
				if err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				mu.Lock()
				published[p.Offset], top = p, max(top, p.Offset)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	n := len(waitFor(t, rec, ch, top, published))

	// Unsubscribe and subscribe again: one subscription, not two.
	if err := sub.Unsubscribe(ctx, ch); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if err := sub.Subscribe(ctx, ch); err != nil {
		t.Fatalf("Subscribe again: %v", err)
	}
	for i := range 2 {
		p, err := pubs[0].Publish(ctx, ch, data(1000+i))
		if err != nil {
			t.Fatal(err)
		}
		published[p.Offset], top = p, p.Offset
	}
	// A repeat of the first would come before the second, and fail the
	// order check.
	if got := waitFor(t, rec, ch, top, published); len(got) != n+2 {
		t.Fatalf("%d messages delivered after resubscribing, want %d", len(got), n+2)
	}
}

// Presence entries set on one instance are seen on another, leave at once
// when removed, and lapse within their TTL once nobody refreshes them.
func testPresence(t *testing.T, b Backplane) {
	ctx := ctxT(t)
	a, ok := b.Open(t, 0).(realtime.PresenceStore)
	if !ok {
		t.Skip("the broker keeps no presence")
	}
	other := b.Open(t, 0).(realtime.PresenceStore)
	users := func() (map[string]string, error) {
		entries, err := other.Presence(ctx, "lobby")
		if err != nil {
			return nil, err
		}
		m := map[string]string{}
		for _, e := range entries {
			m[e.Client] = e.User
		}
		return m, nil
	}
	before := time.Now()
	if err := a.SetPresence(ctx, "lobby", []realtime.PresenceEntry{{Client: "c1", User: "alice"}, {Client: "c2", User: "bob"}}, time.Minute); err != nil {
		t.Fatalf("SetPresence: %v", err)
	}
	entries, err := other.Presence(ctx, "lobby")
	if err != nil || len(entries) != 2 {
		t.Fatalf("Presence on another instance = %+v, %v; want alice and bob", entries, err)
	}
	for _, e := range entries {
		if e.Expires < before.Add(50*time.Second).UnixMilli() {
			t.Fatalf("entry %+v expires before its TTL of a minute", e)
		}
	}
	if err := a.RemovePresence(ctx, "lobby", []string{"c2"}); err != nil {
		t.Fatalf("RemovePresence: %v", err)
	}
	if m, err := users(); err != nil || len(m) != 1 || m["c1"] != "alice" {
		t.Fatalf("after removing bob: %v, %v", m, err)
	}
	// A short TTL that nobody refreshes: the instance died.
	if err := a.SetPresence(ctx, "lobby", []realtime.PresenceEntry{{Client: "c1", User: "alice"}}, time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		m, err := users()
		if err == nil && len(m) != 0 {
			err = fmt.Errorf("entries %v outlived their TTL", m)
		}
		return err
	})
}

// While the backplane is down, brokers report it through Healthy and
// errors wrapping ErrBackplaneUnavailable; when it is back, Run restores
// every subscription before it calls Reconnected, so messages flow again
// without the hub subscribing anew.
func testOutage(t *testing.T, b Backplane) {
	if b.Stop == nil || b.Start == nil {
		t.Skip("no Stop and Start for the backplane")
	}
	ctx := ctxT(t)
	sub, pub := b.Open(t, 0), b.Open(t, 0)
	rec := start(t, sub)
	start(t, pub)
	const ch = "news"
	if err := sub.Subscribe(ctx, ch); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	p, err := pub.Publish(ctx, ch, data(0))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, rec, ch, p.Offset, map[uint64]realtime.Publication{p.Offset: p})
	reconnects := rec.reconnected()

	b.Stop()
	stopped := true
	defer func() {
		if stopped {
			b.Start() // leave the server running for the next test
		}
	}()
	for _, br := range []realtime.Broker{sub, pub} {
		eventually(t, 20*time.Second, func() error {
			if err := br.Healthy(); !errors.Is(err, realtime.ErrBackplaneUnavailable) {
				return fmt.Errorf("Healthy() = %v with the backplane down, want ErrBackplaneUnavailable", err)
			}
			return nil
		})
	}
	if _, err := pub.Publish(ctx, ch, data(-1)); !errors.Is(err, realtime.ErrBackplaneUnavailable) {
		t.Fatalf("Publish with the backplane down = %v, want ErrBackplaneUnavailable", err)
	}

	b.Start()
	stopped = false
	eventually(t, 30*time.Second, func() error {
		if rec.reconnected() == reconnects {
			return errors.New("Reconnected not called after the backplane came back")
		}
		return nil
	})
	eventually(t, 20*time.Second, func() error {
		_, err := pub.Publish(ctx, ch, data(1))
		return err
	})
	eventually(t, 20*time.Second, func() error {
		for _, p := range rec.received(ch) {
			if bytes.Equal(p.Data, data(1)) {
				return nil
			}
		}
		return errors.New("no message delivered after the reconnect: the subscription was not restored")
	})
}

// After a restart, once the broker reports itself healthy again (Run has
// reconnected), the first call of every kind succeeds: a connection that
// died with the old server must not fail a request that could have
// succeeded. A Publish is stored once.
func testRestart(t *testing.T, b Backplane) {
	if b.Stop == nil || b.Start == nil {
		t.Skip("no Stop and Start for the backplane")
	}
	ctx := ctxT(t)
	br := b.Open(t, 0)
	start(t, br)
	const ch = "restart"
	// Use every connection the broker holds before the server dies.
	if _, err := br.Publish(ctx, ch, data(0)); err != nil {
		t.Fatal(err)
	}
	if err := br.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	var published []realtime.Publication
	steps := []struct {
		name string
		call func() error
	}{
		{"Publish", func() error {
			p, err := br.Publish(ctx, ch, data(len(published)+1))
			if err == nil {
				published = append(published, p)
			}
			return err
		}},
		{"History", func() error {
			_, err := br.History(ctx, ch, 0, 10)
			return err
		}},
		{"Subscribe", func() error { return br.Subscribe(ctx, "restart-2") }},
		{"Publish again", func() error {
			p, err := br.Publish(ctx, ch, data(len(published)+1))
			if err != nil {
				return err
			}
			published = append(published, p)
			// Stored once: the message is the top, right after its
			// predecessor.
			h, err := br.History(ctx, ch, p.Prev, 10)
			if err == nil && (h.Top.Offset != p.Offset || len(h.Publications) != 1) {
				err = fmt.Errorf("history after publishing offset %d: top %d, %d messages: stored again", p.Offset, h.Top.Offset, len(h.Publications))
			}
			return err
		}},
	}
	if ps, ok := br.(realtime.PresenceStore); ok {
		entry := []realtime.PresenceEntry{{Client: "c1", User: "u1"}}
		steps = append(steps, []struct {
			name string
			call func() error
		}{
			{"SetPresence", func() error { return ps.SetPresence(ctx, ch, entry, time.Minute) }},
			{"Presence", func() error {
				_, err := ps.Presence(ctx, ch) // the server may have lost the entry
				return err
			}},
			{"RemovePresence", func() error { return ps.RemovePresence(ctx, ch, []string{"c1"}) }},
		}...)
	}
	for _, st := range steps {
		b.Stop()
		b.Start()
		// Healthy is the broker's own word that Run has reconnected; the
		// call under test is then made once.
		eventually(t, 30*time.Second, br.Healthy)
		if err := st.call(); err != nil {
			t.Fatalf("first %s after the server restarted: %v", st.name, err)
		}
	}
}
