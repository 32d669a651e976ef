package workload

import "time"

// bounds is what the server may hold for one cart line: exactly known
// after an acknowledged change, a range after a change whose answer never
// came (it may or may not have been applied).
type bounds struct{ min, max int }

// uploadState is where an upload stands in the user's ledger.
type uploadState int

const (
	uploadPending uploadState = iota
	uploadDone
	uploadLost
	uploadUnfinished
)

// ledger is what the server must hold for one user. The user's mutex
// guards it: the script, the chat connection and upload followers all
// check against it.
type ledger struct {
	// gen counts the user's sessions: a loss is counted once, by the
	// first check that sees it for the current generation.
	gen      int
	loggedIn bool
	cart     map[string]*bounds
	uploads  map[string]uploadState
}

func newLedger() ledger {
	return ledger{cart: map[string]*bounds{}, uploads: map[string]uploadState{}}
}

// cartMin is the number of items the server must hold at the least.
func (l *ledger) cartMin() int {
	n := 0
	for _, b := range l.cart {
		n += b.min
	}
	return n
}

// line returns the bounds of one cart line, creating it empty.
func (l *ledger) line(sku string) *bounds {
	b := l.cart[sku]
	if b == nil {
		b = &bounds{}
		l.cart[sku] = b
	}
	return b
}

// sessionLost is called when the server no longer knows the user's
// session generation gen. It resets the ledger to a fresh anonymous
// session and reports what went with the old one; it does nothing if
// another check already counted this loss.
func (u *user) sessionLost(gen int) {
	u.mu.Lock()
	if u.led.gen != gen || !u.led.loggedIn {
		u.mu.Unlock()
		return
	}
	items := u.led.cartMin()
	pending := 0
	for id, st := range u.led.uploads {
		if st == uploadPending {
			pending++
			u.led.uploads[id] = uploadLost
		}
	}
	u.led.gen++
	u.led.loggedIn = false
	u.led.cart = map[string]*bounds{}
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
