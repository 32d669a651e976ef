package workload

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// saltChoices separates the user's own choices from the model's streams.
const saltChoices = 0x5e1ec7

// user is one simulated browser.
type user struct {
	d    *Driver
	m    model.User
	name string
	// http carries the user's cookie jar; its requests are bounded by
	// their contexts, not a client timeout, so the WebSocket and event
	// streams can share the jar.
	http *http.Client
	// uploadEnded is signalled each time one of its uploads ends.
	uploadEnded chan struct{}
	// rng draws what the model leaves open (which product, how many),
	// only from the goroutine that runs the script.
	rng model.Rand
	// muted: requests are not recorded (the final check).
	muted atomic.Bool
	// inflight counts the user's requests in flight (see overlap).
	inflight atomic.Int64
	// sent counts the user's requests sent so far (guarded by mu): a read
	// is clean when nothing of the user's was in flight when it left and
	// nothing else left before its answer came back, so no other answer
	// can have changed, or can still change, the state it shows.
	sent int64

	loginMu sync.Mutex // one login at a time
	mu      sync.Mutex
	led     ledger
}

func newUser(d *Driver, m model.User) *user {
	jar, _ := cookiejar.New(nil)
	return &user{
		d: d, m: m, name: "u" + strconv.FormatUint(m.ID, 10),
		http:        &http.Client{Jar: jar, Transport: d.transport},
		uploadEnded: make(chan struct{}, 1),
		rng:         model.NewRand(d.params.Seed^saltChoices, model.StreamUsers|m.ID),
		led:         newLedger(),
	}
}

// overlap counts a request going out. One that leaves while another of the
// user's is in flight makes the ledger's next shortfall an update lost to
// concurrency: each answer may carry its own copy of the state (a cookie
// holding the cart, re-issued by every write) and the last one wins. The
// caller ends it with u.inflight.Add(-1) once the answer's head (and its
// Set-Cookie) is in.
func (u *user) overlap() {
	u.mu.Lock()
	u.sent++
	if u.inflight.Add(1) > 1 {
		u.led.concurrent = true
	}
	u.mu.Unlock()
}

// gen returns the current session generation and whether it is logged in.
func (u *user) gen() (int, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.led.gen, u.led.loggedIn
}

// run plays the user's script from the model until it ends or the run
// does. The login comes first and the rest waits for it, as in a browser;
// after that every step is sent at its time whether or not earlier ones
// have been answered (open loop), so a slow system meets more concurrent
// requests, not fewer.
func (u *user) run(ctx context.Context, end time.Time) {
	script := u.d.params.NewUserScript(u.m)
	step, ok := script.Next()
	at := u.d.start.Add(step.At)
	if !ok || !at.Before(end) || !sleepUntil(ctx, at) {
		return
	}
	u.login(ctx, at, "login")

	chatCtx, stopChat := context.WithCancel(ctx)
	defer stopChat()
	var chat *chatter
	var background sync.WaitGroup
	if u.m.Chats {
		chat = &chatter{u: u, live: map[string]int{}, history: map[string]bool{}}
		background.Go(func() { chat.run(chatCtx) })
		background.Go(func() { u.postChats(chatCtx, end) })
	}

	var inflight sync.WaitGroup
	stillHere := true
	for {
		step, ok = script.Next()
		if !ok {
			stillHere = false
			break
		}
		at = u.d.start.Add(step.At)
		if !at.Before(end) || !sleepUntil(ctx, at) {
			break
		}
		if _, in := u.gen(); !in && !u.login(ctx, at, "relogin") {
			// Logged out by the system: the user logs in again before
			// going on; if even that fails, this step is skipped.
			continue
		}
		if step.Action == model.Logout {
			inflight.Wait()
			u.waitUploads(ctx, end)
			u.logout(ctx, at)
			stillHere = false
			break
		}
		sku := u.d.products[u.rng.IntN(len(u.d.products))]
		qty := 1 + u.rng.IntN(model.AddQtyMax)
		step, at := step, at // the loop moves on while this one is in flight
		inflight.Go(func() { u.perform(ctx, step, at, sku, qty) })
	}
	inflight.Wait()
	if stillHere && ctx.Err() == nil {
		u.finalCheck(ctx)
	}
	if chat != nil {
		// Messages published just before leaving are still on their way:
		// stay in the room for the grace period, then settle the account.
		chat.leaveAt = time.Now()
		sleepUntil(ctx, chat.leaveAt.Add(u.d.cfg.ChatGrace))
		stopChat()
		background.Wait()
		if ctx.Err() == nil {
			chat.settle()
		}
	}
}

// perform sends one step of the script.
func (u *user) perform(ctx context.Context, step model.Step, at time.Time, sku string, qty int) {
	switch step.Action {
	case model.Browse:
		u.checkMe(ctx, at, "browse")
	case model.AddToCart:
		if step.Concurrent {
			u.addTwoTabs(ctx, at, sku)
		} else {
			u.add(ctx, at, "cart_add", sku, qty)
		}
	case model.ViewCart:
		u.viewCart(ctx, at, "cart_view")
	case model.Upload:
		u.upload(ctx, at)
	}
}

// login logs in as the user's name; true when the server acknowledged it.
// The script and the chat tab may both find the user logged out: the
// first logs in, the other finds it done.
func (u *user) login(ctx context.Context, at time.Time, op string) bool {
	u.loginMu.Lock()
	defer u.loginMu.Unlock()
	if _, in := u.gen(); in {
		return true
	}
	ex := u.doJSON(ctx, op, at, http.MethodPost, "/api/login", map[string]string{"user": u.name})
	if ex.status != http.StatusOK {
		return false
	}
	u.mu.Lock()
	u.led.loggedIn = true
	u.mu.Unlock()
	return true
}

// logout ends the session; from then on the server must hold nothing.
func (u *user) logout(ctx context.Context, at time.Time) {
	ex := u.doJSON(ctx, "logout", at, http.MethodPost, "/api/logout", nil)
	if ex.status/100 != 2 {
		return
	}
	u.mu.Lock()
	u.led.gen++
	u.led.loggedIn = false
	u.led.cart = map[string]*line{}
	u.mu.Unlock()
}

// waitUploads lets the user's uploads finish before it logs out (a user
// waits for its file's result), at the latest until end.
func (u *user) waitUploads(ctx context.Context, end time.Time) {
	timer := time.NewTimer(time.Until(end))
	defer timer.Stop()
	for u.pendingUploads() {
		select {
		case <-u.uploadEnded:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// checkMe reads the page header (who is logged in). A 401 for a user that
// is logged in means the server lost its session. It returns true when the
// session is known to be alive.
func (u *user) checkMe(ctx context.Context, at time.Time, op string) bool {
	gen, in := u.gen()
	ex := u.do(ctx, op, at, http.MethodGet, "/api/me", nil, "")
	switch {
	case ex.status == http.StatusOK:
		return true
	case ex.status == http.StatusUnauthorized && in:
		u.sessionLost(gen)
	}
	return false
}

// cartItem is the shop's cart line.
type cartItem struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// add puts qty of a product in the cart. The server answers with the
// line's new quantity, which must include every add acknowledged before
// this one was sent.
func (u *user) add(ctx context.Context, at time.Time, op, sku string, qty int) {
	u.mu.Lock()
	gen := u.led.gen
	ln := u.led.line(sku)
	floor := ln.acked
	ln.pending += qty
	if u.led.writes > 0 {
		u.led.concurrent = true
	}
	u.led.writes++
	u.mu.Unlock()

	ex := u.doJSON(ctx, op, at, http.MethodPost, "/api/cart/items", cartItem{SKU: sku, Qty: qty})
	var got cartItem
	ok := ex.status == http.StatusOK && json.Unmarshal(ex.body, &got) == nil

	u.mu.Lock()
	if u.led.gen != gen {
		u.mu.Unlock()
		return // the session ended meanwhile; its loss is counted
	}
	u.led.writes--
	ln.pending -= qty
	if u.led.unsynced {
		u.mu.Unlock()
		return // nothing to check against until the next cart read
	}
	switch {
	case ok && got.Qty >= floor+qty:
		ln.acked += qty
		extra := got.Qty - ln.max()
		if extra > 0 {
			ln.acked += extra
		}
		u.mu.Unlock()
		if extra > 0 {
			u.d.cfg.Recorder.Loss(CartItemsExtra, extra, time.Now())
		}
	case ok:
		// Applied, but the line holds less than was acknowledged before:
		// not yet a loss. The answer may come from a copy of the state
		// another of the user's requests overwrites (a cookie), so only a
		// clean read of the cart may say what the server holds.
		ln.acked += qty
		u.mu.Unlock()
		u.viewCart(ctx, at, "cart_recheck")
	case ex.status == 0 || ex.status >= 500:
		ln.unsure += qty // maybe applied, maybe not
		u.mu.Unlock()
	default:
		u.mu.Unlock() // refused: not applied
	}
}

// addTwoTabs adds one of a product from two tabs at the same moment: two
// concurrent requests with the same cookies, each of whose answers may set
// new ones. The user expects both to count.
func (u *user) addTwoTabs(ctx context.Context, at time.Time, sku string) {
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { u.add(ctx, at, "cart_add_tab", sku, 1) })
	}
	wg.Wait()
}

// cartRead is one read of the whole cart, with the ledger's floors as they
// were when it was sent.
type cartRead struct {
	gen    int
	floors map[string]int
	have   map[string]int
	// clean: nothing else of the user's was in flight when the read left
	// or left before its answer came back; sent is u.sent just after it
	// left.
	clean bool
	sent  int64
}

// viewCart reads the whole cart and checks every line: the server must hold
// at least what was acknowledged before the read was sent, and at most what
// may have been applied by the time it answered. A shortfall counts only
// once a clean read confirms it (confirmRead): a read that raced the
// user's own requests proves nothing, and one that then comes back whole
// after a clean first read was stale (a cache behind its store), not a
// loss. Without a clean read the verdict waits for the next one.
func (u *user) viewCart(ctx context.Context, at time.Time, op string) {
	rd, ok := u.readCart(ctx, at, op)
	if !ok {
		return
	}
	short, extra := u.compareCart(rd)
	if short > 0 {
		again, ok := u.confirmRead(ctx, at)
		if !ok || again.gen != rd.gen {
			return
		}
		s2, x2 := u.compareCart(again)
		switch {
		case s2 == 0 && rd.clean:
			u.d.cfg.Recorder.Loss(StaleReads, 1, time.Now())
		case s2 > 0 && !again.clean:
			return // no clean read: no verdict yet
		}
		rd, short, extra = again, s2, x2
	}
	if short > 0 {
		u.shortfall(ctx, at, rd)
	}
	if extra > 0 {
		u.d.cfg.Recorder.Loss(CartItemsExtra, extra, time.Now())
	}
	// A line with nothing in flight is now known exactly: what was unsure
	// either was applied or was not. After a lost session the ledger
	// adopts the new session's cart as it is.
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.led.gen != rd.gen {
		return
	}
	if u.led.unsynced && u.led.writes == 0 {
		u.led.cart = map[string]*line{}
		for sku, n := range rd.have {
			u.led.line(sku).acked = n
		}
		u.led.unsynced = false
	}
	for sku, n := range rd.have {
		if ln := u.led.line(sku); ln.pending == 0 && n >= ln.acked {
			ln.acked, ln.unsure = n, 0
		}
	}
	// A clean read that nothing has followed yet settles the account of
	// concurrency: whatever overwrote what before it is now counted, and
	// a request sent from now on marks the flag afresh.
	if rd.clean && u.sent == rd.sent {
		u.led.concurrent = false
	}
}

// confirmRead waits, a request timeout at the most, until none of the
// user's requests is in flight, then reads the cart again.
func (u *user) confirmRead(ctx context.Context, at time.Time) (cartRead, bool) {
	deadline := time.Now().Add(u.d.cfg.RequestTimeout)
	for time.Now().Before(deadline) {
		u.mu.Lock()
		quiet := u.led.writes == 0 && u.inflight.Load() == 0
		u.mu.Unlock()
		if quiet || !sleepUntil(ctx, time.Now().Add(10*time.Millisecond)) {
			break
		}
	}
	return u.readCart(ctx, at, "cart_recheck")
}

// shortfall counts what a clean read found missing: either the session is
// gone (the server no longer knows the user: counted as a lost session,
// with everything it held) or, if it is alive, the items alone were lost:
// to an update that overwrote another if the user had requests in flight
// at once since the last clean read, otherwise plainly lost. The ledger
// then follows the server, so a loss counts once however many reads see
// it.
func (u *user) shortfall(ctx context.Context, at time.Time, rd cartRead) {
	if !u.checkMe(ctx, at, "me_check") {
		return // lost with the session (counted there), or the store cannot say
	}
	u.mu.Lock()
	if u.led.gen != rd.gen || u.led.unsynced {
		u.mu.Unlock()
		return
	}
	lost := 0
	for sku, floor := range rd.floors {
		ln := u.led.cart[sku]
		if ln == nil {
			continue
		}
		if d := min(floor, ln.acked) - rd.have[sku]; d > 0 {
			lost += d
			ln.acked -= d
		}
	}
	concurrent := u.led.concurrent
	u.mu.Unlock()
	if lost == 0 {
		return // another check counted it first
	}
	kind := CartItemsLost
	if concurrent {
		kind = UpdatesLost
	}
	u.d.cfg.Recorder.Loss(kind, lost, time.Now())
}

// readCart reads the cart, with the ledger's floors as they were when the
// read was sent.
func (u *user) readCart(ctx context.Context, at time.Time, op string) (cartRead, bool) {
	u.mu.Lock()
	rd := cartRead{gen: u.led.gen, floors: map[string]int{}, have: map[string]int{}}
	quiet := u.led.writes == 0 && u.inflight.Load() == 0
	rd.sent = u.sent + 1
	for sku, ln := range u.led.cart {
		rd.floors[sku] = ln.acked
	}
	u.mu.Unlock()
	ex := u.do(ctx, op, at, http.MethodGet, "/api/cart", nil, "")
	var body struct {
		Items []cartItem `json:"items"`
	}
	if ex.status != http.StatusOK || json.Unmarshal(ex.body, &body) != nil {
		return rd, false
	}
	for _, it := range body.Items {
		rd.have[it.SKU] += it.Qty
	}
	u.mu.Lock()
	rd.clean = quiet && u.sent == rd.sent
	u.mu.Unlock()
	return rd, true
}

// compareCart returns how many acknowledged items the server's cart lacks
// and how many it holds beyond what can have been applied.
func (u *user) compareCart(rd cartRead) (short, extra int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.led.gen != rd.gen || u.led.unsynced {
		return 0, 0
	}
	for sku, floor := range rd.floors {
		if n := rd.have[sku]; n < floor {
			short += floor - n
		}
	}
	for sku, n := range rd.have {
		if ln := u.led.cart[sku]; ln == nil {
			extra += n
		} else if n > ln.max() {
			extra += n - ln.max()
		}
	}
	return short, extra
}

// finalCheck is a last look, when the run ends, by a user still in the
// system: who am I, what is in my cart. Its requests are not part of the
// offered load (not recorded as requests), only what they find is.
func (u *user) finalCheck(ctx context.Context) {
	u.muted.Store(true)
	defer u.muted.Store(false)
	at := time.Now()
	if _, in := u.gen(); in && !u.checkMe(ctx, at, "final_check") {
		return
	}
	u.viewCart(ctx, at, "final_check")
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
