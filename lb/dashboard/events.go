package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// writeWait bounds one write to a stream: a client that stops reading is
// dropped instead of holding a slot. It also replaces the admin server's
// WriteTimeout, which would otherwise cut every stream after 30 s.
const writeWait = 10 * time.Second

// serveEvents streams updates as Server-Sent Events: the first carries
// the whole history (or what a reconnecting page missed, by Last-Event-ID),
// then one per sample, never more than one a second. Each event's id is
// "POINT.EVENT", the sequence numbers of the last history point and event
// sent.
func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) {
	if !d.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="unstuck lb admin"`)
		http.Error(w, "missing or wrong admin token", http.StatusUnauthorized)
		return
	}
	select {
	case d.streams <- struct{}{}:
		defer func() { <-d.streams }()
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many dashboard streams", http.StatusServiceUnavailable)
		return
	}
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "text/event-stream")
		return
	}
	rc := http.NewResponseController(w)
	// The server's ReadTimeout would end the request's context mid-stream;
	// a GET has no body left to read.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx in front: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	seq, evSeq := parseEventID(r.Header.Get("Last-Event-ID"))
	ctx := r.Context()
	first := true
	var last time.Time
	for {
		u, changed := d.s.since(seq, evSeq)
		if first || u.Seq != seq {
			first = false
			last = time.Now()
			if n := len(u.Events); n > 0 {
				evSeq = u.Events[n-1].Seq
			}
			seq = u.Seq
			if err := d.writeEvent(rc, w, u, last, seq, evSeq); err != nil {
				return
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-d.ctx.Done():
			return
		}
		// Samples may come faster than pages should redraw (an embedder
		// sampling often, a burst after a stall): coalesce them so a page
		// gets at most one update per minUpdate.
		if wait := minUpdate - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			case <-d.ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

// streamMessage is an update stamped with when it was sent.
type streamMessage struct {
	update
	Sent time.Time `json:"sent"`
}

func (d *Dashboard) writeEvent(rc *http.ResponseController, w http.ResponseWriter, u update, sent time.Time, seq, evSeq uint64) error {
	data, err := json.Marshal(streamMessage{update: u, Sent: sent})
	if err != nil {
		return err
	}
	_ = rc.SetWriteDeadline(time.Now().Add(writeWait))
	// JSON has no raw newlines, so one data line carries it.
	if _, err := fmt.Fprintf(w, "id: %d.%d\ndata: %s\n\n", seq, evSeq, data); err != nil {
		return err
	}
	return rc.Flush()
}

// parseEventID reads a Last-Event-ID "POINT.EVENT"; anything else starts
// the page afresh.
func parseEventID(s string) (seq, evSeq uint64) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ".")
	if !ok {
		return 0, 0
	}
	seq, err1 := strconv.ParseUint(a, 10, 64)
	evSeq, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0
	}
	return seq, evSeq
}
