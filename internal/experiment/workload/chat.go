package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// chatChannel is the shop's one chat room (shop.ChatChannel).
const chatChannel = "chat:lobby"

// room is the ground truth of the chat: every message the server
// acknowledged, by its unique text, with when it was stamped and when its
// poster had the acknowledgement.
type room struct {
	mu   sync.Mutex
	msgs []posted
}

type posted struct {
	text string
	// at is the instance's stamp, taken just before it publishes; acked
	// is when the poster got the 201, by which time it was published.
	at, acked time.Time
}

func (r *room) add(text string, at, acked time.Time) {
	r.mu.Lock()
	r.msgs = append(r.msgs, posted{text, at, acked})
	r.mu.Unlock()
}

// owed returns the messages a user in the room from join to leave must
// receive: stamped after it joined, so published after it subscribed,
// and acknowledged before it left, so surely published while it was
// there. A message stamped before the user left but whose publishing
// took longer (a store slow to answer, or restarting) may have gone out
// after it left: it is not owed. The stamps have millisecond resolution:
// one stamped in the same millisecond as join may have been published
// just before it, so it is left out.
func (r *room) owed(join, leave time.Time) []posted {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []posted
	for _, m := range r.msgs {
		if m.at.After(join.Add(time.Millisecond)) && !m.acked.After(leave) {
			out = append(out, m)
		}
	}
	return out
}

// postChats sends the user's chat messages at the model's times, each at
// its time whatever became of the previous one (open loop), while the user
// is logged in.
func (u *user) postChats(ctx context.Context, end time.Time) {
	next := u.d.params.ChatTimes(u.m)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for seq := 0; ; seq++ {
		t, ok := next()
		at := u.d.start.Add(t)
		if !ok || !at.Before(end) || !sleepUntil(ctx, at) {
			return
		}
		if _, in := u.gen(); !in {
			continue // the chat form needs a login; the script logs in again
		}
		inflight.Go(func() { u.postChat(ctx, at, seq) })
	}
}

// postChat sends one message through the HTTP API, as the chat page does,
// and records it in the room once the server acknowledged it.
func (u *user) postChat(ctx context.Context, at time.Time, seq int) {
	gen, in := u.gen()
	text := fmt.Sprintf("m%d.%d", u.m.ID, seq)
	ex := u.doJSON(ctx, "chat_post", at, http.MethodPost, "/api/chat/messages", map[string]string{"text": text})
	switch {
	case ex.status == http.StatusCreated:
		// The instance stamps the message just before publishing it:
		// anyone subscribed by then must receive it.
		var m struct {
			TS int64 `json:"ts"`
		}
		acked := time.Now()
		stamp := acked
		if json.Unmarshal(ex.body, &m) == nil && m.TS > 0 {
			stamp = time.UnixMilli(m.TS)
		}
		u.d.room.add(text, stamp, acked)
	case ex.status == http.StatusUnauthorized && in:
		u.sessionLost(gen)
	}
}

// chatter is a user's chat tab: one WebSocket, resumed after every break
// from its last position, as realtime.js and the chat page do.
type chatter struct {
	u *user
	// live counts each message's deliveries on the WebSocket; history
	// holds those a catch-up brought.
	live    map[string]int
	history map[string]bool
	dups    int
	offset  uint64
	epoch   string
	joined  time.Time // first subscribed; zero if never
	leaveAt time.Time
}

// frame is what the hub sends; only the fields the chat needs.
type frame struct {
	Type      string          `json:"type"`
	ID        uint64          `json:"id"`
	Offset    uint64          `json:"offset"`
	Epoch     string          `json:"epoch"`
	Recovered *bool           `json:"recovered"`
	Data      json.RawMessage `json:"data"`
	Code      any             `json:"code"`
}

// run keeps the chat connected until ctx ends, reconnecting with
// full-jitter backoff.
func (c *chatter) run(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			attempt = 0
		} else {
			attempt++
		}
		backoff := time.Duration(rand.Int64N(int64(min(2*time.Second, 100*time.Millisecond<<min(attempt, 5))) + 1))
		if !sleepUntil(ctx, time.Now().Add(backoff)) {
			return
		}
	}
}

// session is one WebSocket connection: subscribe (recovering from the last
// position after a break), catch up from history, then read until it
// breaks.
func (c *chatter) session(ctx context.Context) error {
	u := c.u
	if _, in := u.gen(); !in && !u.login(ctx, time.Now(), "relogin") {
		// Logged out by the system: the chat page sends the user to the
		// login form at once; if that fails too, try again later.
		return errors.New("not logged in")
	}
	wsURL := "ws" + strings.TrimPrefix(u.d.cfg.BaseURL, "http") + "/ws"
	dialCtx, cancel := context.WithTimeout(ctx, u.d.cfg.RequestTimeout)
	rec := Request{Op: "chat_connect", Scheduled: time.Now(), Sent: time.Now(), Stream: true}
	u.overlap() // in flight, for the ledger, until the upgrade's answer is in
	ws, resp, err := websocket.Dial(dialCtx, wsURL, &websocket.DialOptions{HTTPClient: u.http})
	u.inflight.Add(-1)
	cancel()
	rec.Done = time.Now()
	if resp != nil {
		rec.Status, rec.Instance = resp.StatusCode, resp.Header.Get("X-Unstuck-Instance")
	}
	if err != nil && resp == nil {
		rec.Err = classify(err)
	}
	if ctx.Err() != nil {
		if ws != nil {
			ws.CloseNow()
		}
		return ctx.Err()
	}
	u.d.cfg.Recorder.Request(rec)
	if err != nil {
		if rec.Status == http.StatusUnauthorized {
			// The hub says 401 when the session is gone, but also when
			// the store cannot answer: the page header tells which.
			u.checkMe(ctx, time.Now(), "me_check")
		}
		return err
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	sub := map[string]any{"type": "subscribe", "id": 1, "channel": chatChannel}
	reconnect := c.epoch != ""
	if reconnect {
		sub["recover"], sub["offset"], sub["epoch"] = true, c.offset, c.epoch
	}
	b, _ := json.Marshal(sub)
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		return err
	}
	subscribed := false
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		var f frame
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		switch f.Type {
		case "message":
			c.deliver(f)
		case "subscribed":
			if f.ID == 1 && !subscribed {
				subscribed = true
				c.offset, c.epoch = f.Offset, f.Epoch
				if c.joined.IsZero() {
					c.joined = time.Now()
				} else {
					// After a break, fetch what the live stream and the
					// replay may not cover, as the chat page does.
					c.catchUp(ctx)
				}
			} else if f.Recovered != nil && !*f.Recovered {
				c.offset, c.epoch = f.Offset, f.Epoch
				c.catchUp(ctx)
			}
		case "error":
			if f.ID == 1 && !subscribed {
				return fmt.Errorf("subscribe refused: %v", f.Code)
			}
		}
	}
}

// deliver takes one live message frame.
func (c *chatter) deliver(f frame) {
	var m struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(f.Data, &m) != nil || m.Text == "" {
		return
	}
	if c.live[m.Text] > 0 {
		c.dups++
	}
	c.live[m.Text]++
	if f.Offset > c.offset {
		c.offset, c.epoch = f.Offset, f.Epoch
	}
}

// catchUp reads the room's history after the last offset seen, as the chat
// page does on every (re)connection, a few pages at most.
func (c *chatter) catchUp(ctx context.Context) {
	since := c.offset
	if since > 0 {
		since-- // the boundary message is harmless to see twice here
	}
	for range 5 {
		ex := c.u.do(ctx, "chat_history", time.Now(), http.MethodGet, "/api/chat/messages?since="+strconv.FormatUint(since, 10), nil, "")
		var h struct {
			Messages []struct {
				Offset uint64 `json:"offset"`
				Text   string `json:"text"`
			} `json:"messages"`
			Complete bool `json:"complete"`
		}
		if ex.status != http.StatusOK || json.Unmarshal(ex.body, &h) != nil {
			return
		}
		for _, m := range h.Messages {
			c.history[m.Text] = true
			since = max(since, m.Offset)
		}
		if h.Complete || len(h.Messages) == 0 {
			return
		}
	}
}

// settle counts, once the user has left the room, the messages it should
// have received and did not, and those it received twice.
func (c *chatter) settle() {
	rec := c.u.d.cfg.Recorder
	if c.dups > 0 {
		rec.Loss(MessagesDuplicated, c.dups, c.leaveAt)
	}
	if c.joined.IsZero() {
		return
	}
	for _, m := range c.u.d.room.owed(c.joined, c.leaveAt) {
		if c.live[m.text] == 0 && !c.history[m.text] {
			rec.Loss(MessagesLost, 1, m.at)
		}
	}
}
