package workload

import "time"

// line is what the server may hold of one cart line. Requests of one user
// overlap (the load is open-loop), so the ledger keeps what is certain
// apart from what is on its way.
type line struct {
	// acked: adds the server acknowledged; it must hold at least these.
	acked int
	// pending: adds sent and not answered yet.
	pending int
	// unsure: adds that failed without an answer; maybe applied.
	unsure int
}

func (l *line) max() int { return l.acked + l.pending + l.unsure }

// uploadState is where an upload stands in the user's ledger.
type uploadState int

const (
	uploadPending uploadState = iota
	uploadDone
	uploadLost
	uploadUnfinished
)

// ledger is what the server must hold for one user. The user's mutex
// guards it: the script's requests, the chat connection and the upload
// follower all check against it.
type ledger struct {
	// gen counts the user's sessions. A check compares the generation it
	// started in with the current one, so an answer from a session that
	// has ended meanwhile is ignored and a loss is counted once.
	gen      int
	loggedIn bool
	cart     map[string]*line
	uploads  map[string]uploadState
	// writes counts cart writes in flight; concurrent records that one
	// was sent while another was in flight since the last full check: a
	// shortfall then is an update lost to concurrency.
	writes     int
	concurrent bool
	// unsynced: the server lost the session, and what the session the
	// user continues with holds (adds that landed in it after the loss)
	// is unknown until the next cart read, which the ledger then adopts.
	unsynced bool
}

func newLedger() ledger {
	return ledger{cart: map[string]*line{}, uploads: map[string]uploadState{}}
}

// line returns one cart line, creating it empty.
func (l *ledger) line(sku string) *line {
	ln := l.cart[sku]
	if ln == nil {
		ln = &line{}
		l.cart[sku] = ln
	}
	return ln
}

// acked is the number of items the server must hold at the least.
func (l *ledger) acked() int {
	n := 0
	for _, ln := range l.cart {
		n += ln.acked
	}
	return n
}

// sessionLost is called when the server no longer knows the user's session
// of generation gen. It counts the loss with what went with the session and
// starts a new, anonymous generation; a later call for the same generation
// does nothing.
func (u *user) sessionLost(gen int) {
	u.mu.Lock()
	if u.led.gen != gen || !u.led.loggedIn {
		u.mu.Unlock()
		return
	}
	items := u.led.acked()
	pending := 0
	for id, st := range u.led.uploads {
		if st == uploadPending {
			pending++
			u.led.uploads[id] = uploadLost
		}
	}
	u.led.gen++
	u.led.loggedIn = false
	u.led.cart = map[string]*line{}
	u.led.writes, u.led.concurrent = 0, false
	u.led.unsynced = true
	u.mu.Unlock()
	now := time.Now()
	rec := u.d.cfg.Recorder
	rec.Loss(SessionLost, 1, now)
	if items > 0 {
		rec.Loss(CartItemsLost, items, now)
	}
	if pending > 0 {
		rec.Loss(UploadsLost, pending, now)
	}
}

// finishUpload records an upload's end; only the first end counts.
func (u *user) finishUpload(id string, ok bool) {
	u.mu.Lock()
	st, known := u.led.uploads[id]
	if known && st == uploadPending {
		if ok {
			u.led.uploads[id] = uploadDone
		} else {
			u.led.uploads[id] = uploadLost
		}
	}
	u.mu.Unlock()
	if known && st == uploadPending && !ok {
		u.d.cfg.Recorder.Loss(UploadsLost, 1, time.Now())
	}
}

// pendingUploads reports whether an upload of the user is still running.
func (u *user) pendingUploads() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, st := range u.led.uploads {
		if st == uploadPending {
			return true
		}
	}
	return false
}

// unfinishedUploads marks the user's pending uploads as unfinished at the
// end of the run and returns how many there were.
func (u *user) unfinishedUploads() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for id, st := range u.led.uploads {
		if st == uploadPending {
			n++
			u.led.uploads[id] = uploadUnfinished
		}
	}
	return n
}
