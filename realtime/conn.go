package realtime

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// conn is one client connection. Its reader runs in the HTTP handler's
// goroutine; a writer goroutine exists only while frames are queued, so an
// idle connection costs one goroutine.
type conn struct {
	hub  *Hub
	ws   *websocket.Conn
	id   string
	user string
	ctx  context.Context

	// subs is touched only by the reader goroutine.
	subs map[string]*channel

	mu       sync.Mutex
	queue    [][]byte
	queued   int // bytes in queue
	writing  bool
	closing  bool // no more frames accepted
	closeErr closeReason
}

type closeReason struct {
	code   websocket.StatusCode
	reason string
}

func (h *Hub) serveWS(w http.ResponseWriter, r *http.Request) {
	h.mu.RLock()
	draining := h.draining
	h.mu.RUnlock()
	if draining {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "realtime: instance is draining; reconnect to another", http.StatusServiceUnavailable)
		return
	}
	user, err := h.cfg.Authenticate(r)
	if err != nil || user == "" {
		http.Error(w, "realtime: unauthenticated", http.StatusUnauthorized)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: h.cfg.OriginPatterns})
	if err != nil {
		return // Accept has answered the client
	}
	ws.SetReadLimit(h.cfg.Limits.MessageSize)
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	c := &conn{hub: h, ws: ws, id: randomID(), user: user, ctx: ctx, subs: map[string]*channel{}}
	h.mu.Lock()
	if h.draining {
		h.mu.Unlock()
		ws.Close(websocket.StatusServiceRestart, "draining")
		return
	}
	h.clients[c] = struct{}{}
	h.conns.Add(1)
	h.mu.Unlock()
	h.accepted.Add(1)
	defer func() {
		h.mu.Lock()
		delete(h.clients, c)
		h.mu.Unlock()
		h.conns.Done()
	}()
	if h.cfg.OnConnect != nil {
		h.cfg.OnConnect(user)
	}
	c.send(reply{Type: FrameConnected, Client: c.id, User: user, PingMS: h.cfg.PingInterval.Milliseconds()}.encode())
	c.readLoop()
	for name := range c.subs {
		h.unsubscribe(c, name)
	}
}

func (c *conn) readLoop() {
	h := c.hub
	l := h.cfg.Limits
	bucket := tokenBucket{rate: l.Rate, burst: float64(l.Burst), tokens: float64(l.Burst), last: time.Now()}
	idle := 3 * h.cfg.PingInterval
	overruns := 0
	for {
		ctx, cancel := context.WithTimeout(c.ctx, idle)
		typ, data, err := c.ws.Read(ctx)
		cancel()
		if err != nil {
			c.ws.CloseNow()
			return
		}
		if !bucket.allow(time.Now()) {
			overruns++
			if overruns > l.Burst {
				c.closeWith(CloseRateLimited, "rate limit exceeded", nil)
				return
			}
			c.send(errorFrame(0, ErrCodeRateLimited, "too many commands; slow down"))
			continue
		}
		overruns = 0
		if typ != websocket.MessageText {
			c.send(errorFrame(0, ErrCodeBadRequest, "frames are JSON text messages"))
			continue
		}
		cmd, err := DecodeCommand(data, int(l.MessageSize))
		if err != nil {
			c.send(errorFrame(0, ErrCodeBadRequest, err.Error()))
			continue
		}
		c.handle(cmd)
	}
}

func (c *conn) handle(cmd Command) {
	h := c.hub
	switch cmd.Type {
	case CmdPing:
		c.send(reply{Type: FramePong, ID: cmd.ID}.encode())
	case CmdSubscribe:
		if err := c.authorize(OpSubscribe, cmd.Channel); err != nil {
			c.send(errorFrame(cmd.ID, ErrCodeForbidden, err.Error()))
			return
		}
		if _, dup := c.subs[cmd.Channel]; dup {
			c.send(errorFrame(cmd.ID, ErrCodeBadRequest, "already subscribed to "+cmd.Channel))
			return
		}
		if len(c.subs) >= h.cfg.Limits.MaxSubscriptions {
			c.send(errorFrame(cmd.ID, ErrCodeBadRequest, "too many subscriptions"))
			return
		}
		res := h.subscribe(c, cmd.Channel, cmd.Recover, cmd.Offset, cmd.Epoch, cmd.Presence)
		if res.code != "" {
			c.send(errorFrame(cmd.ID, res.code, res.msg))
			return
		}
		r := reply{Type: FrameSubscribed, ID: cmd.ID, Channel: cmd.Channel, Offset: ptr(res.top.Offset), Epoch: res.top.Epoch}
		if cmd.Recover {
			r.Recovered = ptr(res.recovered)
		}
		c.send(r.encode())
		if cmd.Presence && h.presence != nil {
			ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
			err := h.presence.SetPresence(ctx, cmd.Channel, []PresenceEntry{{Client: c.id, User: c.user}}, h.cfg.PresenceTTL)
			cancel()
			if err != nil {
				h.log.Warn("realtime: presence join failed; the heartbeat retries", "channel", cmd.Channel, "err", err)
			}
		}
	case CmdUnsubscribe:
		if _, ok := c.subs[cmd.Channel]; !ok {
			c.send(errorFrame(cmd.ID, ErrCodeNotFound, "not subscribed to "+cmd.Channel))
			return
		}
		h.unsubscribe(c, cmd.Channel)
		c.send(reply{Type: FrameUnsubscribed, ID: cmd.ID, Channel: cmd.Channel}.encode())
	case CmdPublish:
		if err := c.authorize(OpPublish, cmd.Channel); err != nil {
			c.send(errorFrame(cmd.ID, ErrCodeForbidden, err.Error()))
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		p, err := h.Publish(ctx, cmd.Channel, cmd.Data)
		cancel()
		switch {
		case errors.Is(err, ErrBackplaneUnavailable):
			c.send(reply{Type: FrameError, ID: cmd.ID, Code: ErrCodeUnavailable, Message: err.Error(), Local: true}.encode())
		case err != nil:
			c.send(errorFrame(cmd.ID, ErrCodeInternal, err.Error()))
		default:
			c.send(reply{Type: FramePublished, ID: cmd.ID, Channel: cmd.Channel, Offset: ptr(p.Offset), Epoch: p.Epoch}.encode())
		}
	case CmdPresence:
		if err := c.authorize(OpPresence, cmd.Channel); err != nil {
			c.send(errorFrame(cmd.ID, ErrCodeForbidden, err.Error()))
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		entries, err := h.Presence(ctx, cmd.Channel)
		cancel()
		if err != nil {
			c.send(errorFrame(cmd.ID, ErrCodeUnavailable, err.Error()))
			return
		}
		if entries == nil {
			entries = []PresenceEntry{}
		}
		c.send(reply{Type: FramePresence, ID: cmd.ID, Channel: cmd.Channel, Clients: entries}.encode())
	}
}

var errForbidden = errors.New("not allowed")

func (c *conn) authorize(op Op, channel string) error {
	if user, ok := cutUserChannel(channel); ok {
		if op == OpPublish && c.hub.cfg.Authorize == nil {
			return errors.New("clients may not publish to user channels")
		}
		if op != OpPublish && user != c.user {
			return errForbidden
		}
	}
	if a := c.hub.cfg.Authorize; a != nil {
		return a(c.ctx, c.user, op, channel)
	}
	return nil
}

func cutUserChannel(ch string) (string, bool) {
	if len(ch) > len(UserChannelPrefix) && ch[:len(UserChannelPrefix)] == UserChannelPrefix {
		return ch[len(UserChannelPrefix):], true
	}
	return "", false
}

// send queues a frame without ever blocking: a client whose queue is full
// is too slow to keep up and is disconnected, so it costs others nothing.
func (c *conn) send(frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	l := c.hub.cfg.Limits
	if len(c.queue) >= l.SendQueue || c.queued+len(frame) > l.SendQueueBytes {
		c.closing = true
		c.queue, c.queued = nil, 0
		go func() {
			// The writer may be stuck on this very client; closing the
			// socket unblocks it.
			c.ws.Close(CloseSlowConsumer, "slow consumer: send queue full")
		}()
		return
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.startWriterLocked()
}

func (c *conn) startWriterLocked() {
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
}

// closeWith sends frame (if any) after everything queued, then closes the
// socket with code.
func (c *conn) closeWith(code websocket.StatusCode, reason string, frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	if frame != nil {
		c.queue = append(c.queue, frame)
	}
	c.closing = true
	c.closeErr = closeReason{code, reason}
	c.startWriterLocked()
}

func (c *conn) writeLoop() {
	wt := c.hub.cfg.Limits.WriteTimeout
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue, c.queued = nil, 0
		if len(batch) == 0 {
			c.writing = false
			closeErr := c.closeErr
			c.closeErr = closeReason{}
			c.mu.Unlock()
			if closeErr.code != 0 {
				c.ws.Close(closeErr.code, closeErr.reason)
			}
			return
		}
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(c.ctx, wt)
		for _, f := range batch {
			if err := c.ws.Write(ctx, websocket.MessageText, f); err != nil {
				cancel()
				c.mu.Lock()
				c.closing, c.writing, c.queue = true, false, nil
				c.mu.Unlock()
				c.ws.CloseNow()
				return
			}
		}
		cancel()
	}
}

// tokenBucket is the per-connection command rate limit; only the reader
// goroutine uses it.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func (b *tokenBucket) allow(now time.Time) bool {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
