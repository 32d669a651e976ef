package realtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
)

// drainResult is what one simulated browser saw.
type drainResult struct {
	closeCode websocket.StatusCode
	hint      frame
	recovered bool
	resub     frame // the other hub's answer to the resubscribe
	gotAfter  bool
	err       error
}

// readFrame reads one frame with a deadline.
func readFrame(ctx context.Context, ws *websocket.Conn) (frame, error) {
	_, b, err := ws.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	var f frame
	return f, json.Unmarshal(b, &f)
}

func readUntil(ctx context.Context, ws *websocket.Conn, ok func(frame) bool) (frame, error) {
	for {
		f, err := readFrame(ctx, ws)
		if err != nil || ok(f) {
			return f, err
		}
	}
}

// drainClient behaves like realtime.js: subscribe, and on a 1012 close wait
// a uniform random delay within the server's hint (full jitter), then
// reconnect (here: to the other instance, as a balancer would send it) and
// resubscribe with its offset and epoch.
func drainClient(ctx context.Context, urlA, urlB string, ready chan<- struct{}, resubscribed chan<- struct{}, out chan<- drainResult) {
	var res drainResult
	defer func() { out <- res }()
	ws, _, err := websocket.Dial(ctx, urlA, nil)
	if err != nil {
		res.err = err
		ready <- struct{}{}
		return
	}
	defer ws.CloseNow()
	_ = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","id":1,"channel":"d"}`))
	sub, err := readUntil(ctx, ws, func(f frame) bool { return f.ID == 1 })
	ready <- struct{}{}
	if err != nil || sub.Type != realtime.FrameSubscribed {
		res.err = fmt.Errorf("subscribe: %v %+v", err, sub)
		return
	}
	res.hint, err = readUntil(ctx, ws, func(f frame) bool { return f.Type == realtime.FrameDisconnect })
	if err != nil {
		res.err = fmt.Errorf("waiting for disconnect: %w", err)
		return
	}
	_, err = readFrame(ctx, ws)
	res.closeCode = websocket.CloseStatus(err)
	t := time.NewTimer(time.Duration(rand.Int64N(res.hint.RetryMS*int64(time.Millisecond) + 1)))
	select {
	case <-t.C:
	case <-ctx.Done():
		res.err = ctx.Err()
		return
	}
	ws2, _, err := websocket.Dial(ctx, urlB, nil)
	if err != nil {
		res.err = err
		return
	}
	defer ws2.CloseNow()
	cmd := fmt.Sprintf(`{"type":"subscribe","id":1,"channel":"d","recover":true,"offset":%d,"epoch":%q}`, *sub.Offset, sub.Epoch)
	_ = ws2.Write(ctx, websocket.MessageText, []byte(cmd))
	r, err := readUntil(ctx, ws2, func(f frame) bool { return f.ID == 1 })
	resubscribed <- struct{}{}
	if err != nil {
		res.err = err
		return
	}
	res.recovered, res.resub = r.Recovered != nil && *r.Recovered, r
	m, err := readUntil(ctx, ws2, func(f frame) bool { return f.Type == realtime.FrameMessage })
	res.gotAfter = err == nil && string(m.Data) == `"after"`
}

// TestDrainSpreadsReconnects stops an instance holding 1,000 clients and
// checks they all come back on another instance, resumed, and that they
// arrive as a ramp over the drain window rather than a storm.
func TestDrainSpreadsReconnects(t *testing.T) {
	const n = 1000
	const window = 2 * time.Second
	r := testenv.Redis(t)
	mk := func() realtime.Broker { return newRedisBrokerT(t, r.Addr()) }
	var mu sync.Mutex
	var connects []time.Time
	a := startHub(t, mk(), func(c *realtime.Config) { c.DrainWindow = window; c.ReconnectDelay = 200 * time.Millisecond })
	b := startHub(t, mk(), func(c *realtime.Config) {
		c.OnConnect = func(string) { mu.Lock(); connects = append(connects, time.Now()); mu.Unlock() }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ready := make(chan struct{}, n)
	resub := make(chan struct{}, n)
	out := make(chan drainResult, n)
	sem := make(chan struct{}, 32) // dial at a pace the listener's backlog takes
	for i := range n {
		sem <- struct{}{}
		go drainClient(ctx, a.wsURL(fmt.Sprint("u", i)), b.wsURL(fmt.Sprint("u", i)), ready, resub, out)
		go func() { <-ready; <-sem }()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if c := a.Stats().Connections; c != n {
			return fmt.Errorf("%d of %d clients connected", c, n)
		}
		return nil
	})
	if _, err := a.Publish(ctx, "d", []byte(`"before"`)); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	// Shutdown spreads the closes over DrainWindow (its deadline only
	// shortens the window when it is nearer) and then waits for 1,000
	// close handshakes. How long those take is CPU time, which a loaded
	// machine under -race rations (a 12 s bound failed under stress-ng):
	// the test's own deadline bounds a hang; the ramp below is what is
	// checked.
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if resp, err := http.Get(a.srv.URL + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("drained hub health %d, want 503", resp.StatusCode)
		}
	}
	if c, err := tryDial(t, a.wsURL("late")); err == nil {
		t.Fatalf("a drained hub accepted a connection: %+v", c.hello)
	}
	for range n {
		select {
		case <-resub:
		case <-ctx.Done():
			t.Fatal("clients did not all resubscribe")
		}
	}
	if _, err := b.Publish(ctx, "d", []byte(`"after"`)); err != nil {
		t.Fatal(err)
	}
	var failed []error
	for range n {
		res := <-out
		switch {
		case res.err != nil:
			failed = append(failed, res.err)
		case res.closeCode != websocket.StatusServiceRestart:
			failed = append(failed, fmt.Errorf("close code %d, want 1012", res.closeCode))
		case res.hint.Reconnect == nil || !*res.hint.Reconnect || res.hint.RetryMS <= 0:
			failed = append(failed, fmt.Errorf("disconnect frame without a reconnect hint: %+v", res.hint))
		case !res.recovered:
			failed = append(failed, fmt.Errorf("resubscribe on the other hub not recovered: %s %v %q", res.resub.Type, res.resub.Code, res.resub.Message))
		case !res.gotAfter:
			failed = append(failed, errors.New("no message after reconnecting"))
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d clients failed, first: %v", len(failed), n, failed[0])
	}

	mu.Lock()
	times := append([]time.Time(nil), connects...)
	mu.Unlock()
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	const bucket = 100 * time.Millisecond
	counts := map[int]int{}
	early := 0
	for _, ts := range times {
		counts[int(ts.Sub(start)/bucket)]++
		if ts.Sub(start) < window/10 {
			early++
		}
	}
	peak := 0
	for _, c := range counts {
		peak = max(peak, c)
	}
	spread := times[len(times)-1].Sub(times[0])
	t.Logf("%d reconnects over %v (drain window %v): peak %d per %v = %.0f/s; mean over the window %.0f/s; %d in the first 10%% of the window",
		len(times), spread.Round(time.Millisecond), window, peak, bucket, float64(peak)/bucket.Seconds(), float64(n)/window.Seconds(), early)
	// Behaviour, not speed: a storm would land nearly all reconnects in the
	// first moments; a drain spreads them over the window.
	if early > n/2 {
		t.Fatalf("%d of %d reconnects within the first 10%% of the drain window: a storm", early, n)
	}
	if spread < window/2 {
		t.Fatalf("reconnects spread over %v, less than half the %v window", spread, window)
	}
}
