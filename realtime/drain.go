package realtime

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/coder/websocket"
)

// drainStep is how often Shutdown closes a batch: small enough that the
// batches form a smooth ramp, large enough to keep the batch count low.
const drainStep = 50 * time.Millisecond

// Shutdown drains the hub: it refuses new connections (503, and Healthy
// fails so balancers move on), then closes the open sockets in batches
// spread evenly over Config.DrainWindow (or until ctx's deadline, if
// sooner) with close code 1012 (service restart) and a disconnect frame
// carrying a reconnect hint. Spreading the closes, plus the clients' own
// jittered backoff, turns a restart into a ramp on the other instances
// instead of a reconnect storm. It returns when every connection has ended
// and the broker has stopped, or with ctx's error.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.draining = true
	conns := make([]*conn, 0, len(h.clients))
	for c := range h.clients {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	rand.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })

	window := h.cfg.DrainWindow
	if dl, ok := ctx.Deadline(); ok {
		// Leave a tenth of the time for the last close handshakes.
		window = min(window, time.Until(dl)*9/10)
	}
	steps := max(1, int(window/drainStep))
	per := (len(conns) + steps - 1) / steps
	frame := reply{Type: FrameDisconnect, Code: int(websocket.StatusServiceRestart), Message: "server restart",
		Reconnect: ptr(true), RetryMS: h.cfg.ReconnectDelay.Milliseconds()}.encode()
	t := time.NewTicker(drainStep)
	defer t.Stop()
	var err error
	for i := 0; i < len(conns); i += per {
		for _, c := range conns[i:min(i+per, len(conns))] {
			c.closeWith(websocket.StatusServiceRestart, "server restart", frame)
		}
		if i+per >= len(conns) {
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-t.C:
		}
		if err != nil {
			break
		}
	}
	if err != nil {
		h.stop()
		return err
	}
	done := make(chan struct{})
	go func() { h.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	h.stop()
	return err
}

// Close stops the hub at once: every socket is cut and the broker stops.
// Prefer Shutdown, which spreads reconnects.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.draining = true
	h.mu.Unlock()
	h.stop()
	return nil
}

// stop cancels every connection and background goroutine and waits for the
// background ones.
func (h *Hub) stop() {
	h.stopOnce.Do(func() {
		h.cancel()
		h.bg.Wait()
	})
}
