package workload

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"sync"
	"time"
)

// user is one simulated browser.
type user struct {
	d    *Driver
	spec Spec
	name string
	// http carries the user's cookie jar; its requests are bounded by
	// their contexts, not a client timeout, so the WebSocket and event
	// streams can share the jar.
	http *http.Client
	rng  *rand.Rand

	mu  sync.Mutex
	led ledger
}

func newUser(d *Driver, s Spec) *user {
	jar, _ := cookiejar.New(nil)
	return &user{
		d: d, spec: s, name: "u" + strconv.Itoa(s.ID),
		http: &http.Client{Jar: jar, Transport: d.transport},
		rng:  rand.New(rand.NewPCG(s.Seed, uint64(s.ID))),
		led:  newLedger(),
	}
}

// gen returns the current session generation and whether it is logged in.
func (u *user) gen() (int, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.led.gen, u.led.loggedIn
}

// run plays the user's script: arrive, log in, act at the user's rate
// until it leaves, then look at the cart once more (checkout), so a loss
// late in its stay is still seen. end is when the run stops acting.
func (u *user) run(ctx context.Context, end time.Time) {
	arrive := u.d.start.Add(u.spec.Arrival)
	leave := arrive.Add(u.spec.Length)
	if leave.After(end) {
		leave = end
	}
	if !sleepUntil(ctx, arrive) {
		return
	}
	var chat *chatter
	var chatDone chan struct{}
	chatCtx, stopChat := context.WithCancel(ctx)
	defer stopChat()
	u.login(ctx, arrive, "login")
	if u.spec.Chats {
		chat = &chatter{u: u, live: map[string]int{}, history: map[string]bool{}}
		chatDone = make(chan struct{})
		go func() { defer close(chatDone); chat.run(chatCtx) }()
	}
	uploaded := !u.spec.Uploads
	at := arrive
	for {
		at = at.Add(exp(u.rng, u.spec.Rate))
		if !at.Before(leave) {
			break
		}
		if !sleepUntil(ctx, at) {
			break
		}
		if _, in := u.gen(); !in {
			if !u.login(ctx, at, "relogin") {
				continue
			}
		}
		if !uploaded {
			uploaded = true
			u.upload(ctx, at)
			continue
		}
		u.act(ctx, at)
	}
	if ctx.Err() == nil {
		sleepUntil(ctx, leave)
		u.checkout(ctx, leave)
	}
	if chat != nil {
		// Messages published just before leaving are still on their way:
		// stay in the room for the grace period, then settle the account.
		chat.leaveAt = time.Now()
		sleepUntil(ctx, chat.leaveAt.Add(u.d.cfg.ChatGrace))
		stopChat()
		<-chatDone
		if ctx.Err() == nil {
			chat.settle()
		}
	}
}

// act performs one action drawn from the mix.
func (u *user) act(ctx context.Context, at time.Time) {
	m := u.d.cfg.Mix
	chat := 0.0
	if u.spec.Chats {
		chat = m.ChatPost
	}
	x := u.rng.Float64() * (m.Browse + m.CartAdd + m.CartView + chat)
	switch {
	case x < m.Browse:
		u.browse(ctx, at)
	case x < m.Browse+m.CartAdd:
		if u.spec.TwoTabs {
			u.addTwoTabs(ctx, at)
		} else {
			u.add(ctx, at)
		}
	case x < m.Browse+m.CartAdd+m.CartView:
		u.viewCart(ctx, at, "cart_view")
	default:
		u.postChat(ctx, at)
	}
}

// login logs in as the user's name; true when the server acknowledged it.
func (u *user) login(ctx context.Context, at time.Time, op string) bool {
	ex := u.doJSON(ctx, op, at, http.MethodPost, "/api/login", map[string]string{"user": u.name})
	if ex.status != http.StatusOK {
		return false
	}
	u.mu.Lock()
	u.led.loggedIn = true
	u.mu.Unlock()
	return true
}

// browse reads the catalogue and the page header (who is logged in).
func (u *user) browse(ctx context.Context, at time.Time) {
	u.do(ctx, "browse", at, http.MethodGet, "/api/products", nil, "")
	u.checkMe(ctx, at, "me")
}

// checkMe asks who is logged in; a 401 for a user that is logged in means
// the session is gone. It returns true when the session is known alive.
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

// add puts 1 to 3 of a product in the cart and checks the line's new
// quantity, which the server answers, against the ledger.
func (u *user) add(ctx context.Context, at time.Time) {
	sku := u.d.products[u.rng.IntN(len(u.d.products))]
	qty := 1 + u.rng.IntN(3)
	ex := u.doJSON(ctx, "cart_add", at, http.MethodPost, "/api/cart/items", cartItem{SKU: sku, Qty: qty})
	var got cartItem
	ok := ex.status == http.StatusOK && json.Unmarshal(ex.body, &got) == nil
	u.mu.Lock()
	b := u.led.line(sku)
	want := bounds{b.min + qty, b.max + qty}
	switch {
	case ok && got.Qty >= want.min:
		*b = bounds{got.Qty, got.Qty}
		u.mu.Unlock()
		if got.Qty > want.max {
			u.d.cfg.Recorder.Loss(CartItemsExtra, got.Qty-want.max, time.Now())
		}
	case ok:
		u.mu.Unlock()
		u.shortfall(ctx, at, sku, bounds{got.Qty, got.Qty}, want.min-got.Qty)
	case ex.status == 0 || ex.status >= 500:
		b.max += qty // maybe applied, maybe not
		u.mu.Unlock()
	default:
		u.mu.Unlock()
	}
}

// addTwoTabs adds one of a product from two tabs at the same moment: both
// requests carry the same cookies, and each answer may set new ones. The
// user expects both to count.
func (u *user) addTwoTabs(ctx context.Context, at time.Time) {
	sku := u.d.products[u.rng.IntN(len(u.d.products))]
	var exs [2]exchange
	var wg sync.WaitGroup
	for i := range exs {
		wg.Go(func() {
			exs[i] = u.doJSON(ctx, "cart_add_tab", at, http.MethodPost, "/api/cart/items", cartItem{SKU: sku, Qty: 1})
		})
	}
	wg.Wait()
	acked, unsure, top := 0, 0, -1
	for _, ex := range exs {
		var got cartItem
		switch {
		case ex.status == http.StatusOK && json.Unmarshal(ex.body, &got) == nil:
			acked++
			top = max(top, got.Qty)
		case ex.status == 0 || ex.status >= 500:
			unsure++
		}
	}
	u.mu.Lock()
	b := u.led.line(sku)
	before := *b
	if acked == 0 {
		b.max += unsure
		u.mu.Unlock()
		return
	}
	want := bounds{before.min + acked, before.max + acked + unsure}
	rec := u.d.cfg.Recorder
	switch {
	case top >= want.min:
		*b = bounds{top, top + unsure}
		u.mu.Unlock()
		if top > want.max {
			rec.Loss(CartItemsExtra, top-want.max, time.Now())
		}
	case top >= before.min:
		// Both were acknowledged, the line holds fewer: one answer
		// overwrote the other (the last writer won).
		*b = bounds{top, top + unsure}
		u.mu.Unlock()
		rec.Loss(UpdatesLost, want.min-top, time.Now())
	default:
		u.mu.Unlock()
		u.shortfall(ctx, at, sku, bounds{top, top + unsure}, want.min-top)
	}
}

// shortfall handles a cart line the server holds fewer of than it
// acknowledged. Either the session is gone (the server no longer knows the
// user: counted as a lost session with everything it held) or, if the
// session is alive, the items alone were lost. Either way the line now is
// what the server said, in the session the user continues with.
func (u *user) shortfall(ctx context.Context, at time.Time, sku string, now bounds, lost int) {
	alive := u.checkMe(ctx, at, "me_check")
	u.mu.Lock()
	*u.led.line(sku) = now
	u.mu.Unlock()
	if alive {
		u.d.cfg.Recorder.Loss(CartItemsLost, lost, time.Now())
	}
}

// viewCart reads the whole cart and checks every line against the ledger.
// A shortfall is read again once: a read that then comes back whole was
// stale (a cache behind its store), not a loss.
func (u *user) viewCart(ctx context.Context, at time.Time, op string) {
	gen, in := u.gen()
	items, ok := u.readCart(ctx, at, op)
	if !ok {
		return
	}
	rec := u.d.cfg.Recorder
	short, extra := u.compareCart(items)
	if short > 0 {
		again, ok := u.readCart(ctx, at, "cart_recheck")
		if !ok {
			return
		}
		if s, _ := u.compareCart(again); s == 0 {
			rec.Loss(StaleReads, 1, time.Now())
		}
		items = again
		short, extra = u.compareCart(again)
	}
	if short > 0 && in && !u.checkMe(ctx, at, "me_check") {
		// The session is gone (counted with what it held), or the store
		// cannot say right now.
		return
	}
	if short > 0 {
		rec.Loss(CartItemsLost, short, time.Now())
	}
	if extra > 0 {
		rec.Loss(CartItemsExtra, extra, time.Now())
	}
	if short+extra == 0 {
		return
	}
	// The ledger follows the server from here, so a loss counts once.
	u.mu.Lock()
	if u.led.gen == gen {
		u.led.cart = map[string]*bounds{}
		for _, it := range items {
			u.led.cart[it.SKU] = &bounds{it.Qty, it.Qty}
		}
	}
	u.mu.Unlock()
}

func (u *user) readCart(ctx context.Context, at time.Time, op string) ([]cartItem, bool) {
	ex := u.do(ctx, op, at, http.MethodGet, "/api/cart", nil, "")
	var body struct {
		Items []cartItem `json:"items"`
	}
	if ex.status != http.StatusOK || json.Unmarshal(ex.body, &body) != nil {
		return nil, false
	}
	return body.Items, true
}

// compareCart returns how many acknowledged items the server's cart lacks
// and how many it holds beyond what the user can have added.
func (u *user) compareCart(items []cartItem) (short, extra int) {
	have := map[string]int{}
	for _, it := range items {
		have[it.SKU] += it.Qty
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for sku, b := range u.led.cart {
		if n := have[sku]; n < b.min {
			short += b.min - n
		} else if n > b.max {
			extra += n - b.max
		}
		delete(have, sku)
	}
	for _, n := range have {
		extra += n
	}
	return short, extra
}

// checkout is the user's last look before leaving: who am I, what is in
// my cart.
func (u *user) checkout(ctx context.Context, at time.Time) {
	if _, in := u.gen(); in && !u.checkMe(ctx, at, "me") {
		return
	}
	u.viewCart(ctx, at, "checkout")
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

// exp draws an exponential interval with the given rate per second.
func exp(r *rand.Rand, rate float64) time.Duration {
	if rate <= 0 {
		return time.Duration(1<<62 - 1)
	}
	return time.Duration(r.ExpFloat64() / rate * float64(time.Second))
}
