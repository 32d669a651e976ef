package realtime

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// channel is the hub's state for one channel with local subscribers.
//
// Lock order: Hub.mu before channel.mu; broker Subscribe and Unsubscribe
// run under channel.mu, which keeps them serial per channel.
type channel struct {
	name string
	refs atomic.Int32 // goroutines about to lock mu; keeps the entry alive

	mu         sync.Mutex
	subs       map[*conn]*subscription
	present    map[string]PresenceEntry // local clients announced in presence
	subscribed bool                     // to the broker
	// known is set once epoch and last describe the stream: last is the
	// offset of the last message delivered here, the base for gap checks.
	known bool
	epoch string
	last  uint64
	// lastRead is the latest history read for a subscribe, reused while
	// the channel has not moved (see history).
	lastRead *historyRead
}

// historyRead is one answer of Broker.History and its question.
type historyRead struct {
	since uint64
	limit int
	hist  History
}

// history answers a subscribe's history read, from the previous read when
// it asked the same and nothing was delivered on the channel since: a
// drain sends a thousand clients resuming from the same offset to another
// instance at once, and each would otherwise make the same broker call in
// turn under ch.mu (under CPU load the last ones ran out of time). Messages
// published after the reused read reach the subscriber live, or through
// gap filling, as for any read. Callers hold ch.mu.
func (ch *channel) history(ctx context.Context, b Broker, since uint64, limit int) (History, error) {
	if r := ch.lastRead; r != nil && r.since == since && r.limit == limit &&
		ch.known && r.hist.Top == (Position{Epoch: ch.epoch, Offset: ch.last}) {
		return r.hist, nil
	}
	hist, err := b.History(ctx, ch.name, since, limit)
	if err != nil {
		return History{}, err
	}
	ch.lastRead = &historyRead{since: since, limit: limit, hist: hist}
	return hist, nil
}

// subscription is one connection's position in one channel; offset only
// grows, which makes delivery idempotent when history and live overlap.
type subscription struct {
	offset uint64
	epoch  string
}

// acquire returns the channel's entry, creating it, and pins it until
// release.
func (h *Hub) acquire(name string) *channel {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channels[name]
	if ch == nil {
		ch = &channel{name: name, subs: map[*conn]*subscription{}, present: map[string]PresenceEntry{}}
		h.channels[name] = ch
	}
	ch.refs.Add(1)
	return ch
}

// release unpins ch and, when nobody is left, leaves the broker
// subscription and forgets the channel.
func (h *Hub) release(ch *channel) {
	if ch.refs.Add(-1) > 0 {
		return
	}
	ch.mu.Lock()
	if len(ch.subs) == 0 && ch.subscribed && ch.refs.Load() == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := h.cfg.Broker.Unsubscribe(ctx, ch.name); err != nil {
			h.log.Warn("realtime: unsubscribe failed", "channel", ch.name, "err", err)
		}
		cancel()
		ch.subscribed, ch.known = false, false
	}
	ch.mu.Unlock()
	h.mu.Lock()
	ch.mu.Lock()
	if ch.refs.Load() == 0 && len(ch.subs) == 0 && !ch.subscribed && h.channels[ch.name] == ch {
		delete(h.channels, ch.name)
	}
	ch.mu.Unlock()
	h.mu.Unlock()
}

func (h *Hub) lookup(name string) *channel {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.channels[name]
}

func (h *Hub) handlePublication(name string, p Publication) {
	ch := h.lookup(name)
	if ch == nil {
		return
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if !ch.subscribed || !ch.known {
		return // a subscribe in progress reads the top from history
	}
	switch {
	case p.Epoch != ch.epoch:
		// The history this channel's subscribers hold positions in is
		// gone: tell them, rather than mix offsets of two epochs.
		h.resetLocked(ch, Position{Offset: p.Offset, Epoch: p.Epoch})
	case p.Offset <= ch.last:
		// Already delivered (from history, after a gap or a subscribe).
	case p.Prev != ch.last:
		h.fillLocked(ch, &p)
	default:
		h.fanoutLocked(ch, p)
		ch.last = p.Offset
		ch.lastRead = nil // stale now; holds up to HistoryLimit messages
	}
}

// fillLocked closes a gap between ch.last and the live message p (or the
// current top when p is nil, after a reconnect) from history, or, when
// history cannot, tells every subscriber it lost messages.
func (h *Hub) fillLocked(ch *channel, p *Publication) {
	ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
	hist, err := h.cfg.Broker.History(ctx, ch.name, ch.last, h.cfg.HistoryLimit)
	cancel()
	if err != nil {
		if p != nil {
			// Unknown what was skipped: an explicit reset beats a silent gap.
			h.resetLocked(ch, Position{Offset: p.Offset, Epoch: p.Epoch})
		} else {
			h.log.Warn("realtime: resync history failed", "channel", ch.name, "err", err)
			h.signalResync()
		}
		return
	}
	if hist.Top.Epoch != ch.epoch || !hist.Complete {
		h.resetLocked(ch, hist.Top)
		return
	}
	if len(hist.Publications) > 0 {
		h.gapsFilled.Add(1)
	}
	for _, q := range hist.Publications {
		h.fanoutLocked(ch, q)
	}
	ch.last = max(ch.last, hist.Top.Offset)
}

// signalResync retries a failed resync after a pause, off the caller's
// goroutine.
func (h *Hub) signalResync() {
	go func() {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-h.ctx.Done():
		case <-t.C:
			(*brokerHandler)(h).Reconnected()
		}
	}()
}

func (h *Hub) fanoutLocked(ch *channel, p Publication) {
	var frame []byte
	for c, sub := range ch.subs {
		if p.Offset <= sub.offset || p.Epoch != sub.epoch {
			continue
		}
		if frame == nil {
			frame = encodeMessage(ch.name, p)
		}
		sub.offset = p.Offset
		c.send(frame)
	}
}

// resetLocked moves the channel to pos and tells each subscriber, with a
// subscribed frame saying recovered:false, that it missed messages it
// cannot get back: the app should reload the channel's state.
func (h *Hub) resetLocked(ch *channel, pos Position) {
	ch.epoch, ch.last, ch.known = pos.Epoch, pos.Offset, true
	if len(ch.subs) > 0 {
		h.resets.Add(1)
	}
	frame := reply{Type: FrameSubscribed, Channel: ch.name, Offset: ptr(pos.Offset), Epoch: pos.Epoch, Recovered: ptr(false)}.encode()
	for c, sub := range ch.subs {
		sub.offset, sub.epoch = pos.Offset, pos.Epoch
		c.send(frame)
	}
}

// deliverLocal hands a message that could not reach the backplane to this
// instance's subscribers, without an offset: it is not in history.
func (h *Hub) deliverLocal(name string, data []byte) {
	ch := h.lookup(name)
	if ch == nil {
		return
	}
	b := make([]byte, 0, 48+len(name)+len(data))
	b = append(b, `{"type":"message","channel":`...)
	b = appendJSONString(b, name)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	b = append(b, '}')
	ch.mu.Lock()
	for c := range ch.subs {
		c.send(b)
	}
	ch.mu.Unlock()
}

// subscribeResult is what a subscribe tells the client.
type subscribeResult struct {
	top       Position
	recovered bool
	code, msg string // set on failure
}

// subscribe adds c to the channel after replaying what it missed since
// (epoch, since) when recover is set.
func (h *Hub) subscribe(c *conn, name string, recover bool, since uint64, epoch string, presence bool) subscribeResult {
	ch := h.acquire(name)
	defer h.release(ch)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if _, dup := ch.subs[c]; dup {
		return subscribeResult{code: ErrCodeBadRequest, msg: "already subscribed"}
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if !ch.subscribed {
		if err := h.cfg.Broker.Subscribe(ctx, name); err != nil {
			return subscribeResult{code: ErrCodeUnavailable, msg: err.Error()}
		}
		ch.subscribed = true
	}
	limit := 0
	if recover {
		limit = h.cfg.HistoryLimit
	} else {
		since = 0
	}
	// Read under ch.mu: no live message is delivered here meanwhile, so
	// the replay and the live stream meet without a hole.
	hist, err := ch.history(ctx, h.cfg.Broker, since, limit)
	if err != nil {
		return subscribeResult{code: ErrCodeUnavailable, msg: err.Error()}
	}
	if !ch.known {
		ch.epoch, ch.last, ch.known = hist.Top.Epoch, hist.Top.Offset, true
	} else if hist.Top.Epoch != ch.epoch {
		h.resetLocked(ch, hist.Top)
	}
	return h.addSubscriberLocked(c, ch, presence, hist.Top, recover && epoch == hist.Top.Epoch && hist.Complete, hist.Publications)
}

// addSubscriberLocked replays missed (when recovered) and adds c to ch at
// position top.
func (h *Hub) addSubscriberLocked(c *conn, ch *channel, presence bool, top Position, recovered bool, missed []Publication) subscribeResult {
	if recovered {
		for _, p := range missed {
			c.send(encodeMessage(ch.name, p))
		}
	}
	ch.subs[c] = &subscription{offset: top.Offset, epoch: top.Epoch}
	if presence && h.presence != nil {
		ch.present[c.id] = PresenceEntry{Client: c.id, User: c.user}
	}
	c.subs[ch.name] = ch
	return subscribeResult{top: top, recovered: recovered}
}

// unsubscribe removes c from the channel and from its presence.
func (h *Hub) unsubscribe(c *conn, name string) bool {
	ch := h.acquire(name)
	defer h.release(ch)
	ch.mu.Lock()
	_, ok := ch.subs[c]
	delete(ch.subs, c)
	_, wasPresent := ch.present[c.id]
	delete(ch.present, c.id)
	ch.mu.Unlock()
	delete(c.subs, name)
	// After Close (h.ctx done) the instance behaves as if it had died:
	// its entries lapse with their TTL, the path every crash takes.
	if wasPresent && h.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := h.presence.RemovePresence(ctx, name, []string{c.id}); err != nil {
			h.log.Warn("realtime: presence removal failed; the entry expires with its TTL", "channel", name, "err", err)
		}
		cancel()
	}
	return ok
}
