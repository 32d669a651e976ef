package realtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// conn is one client connection. Its reader goroutine lives as long as the
// socket; a writer and a command worker exist only while they have work,
// so an idle connection costs one small goroutine.
type conn struct {
	hub  *Hub
	ws   *websocket.Conn
	id   string
	user string
	ctx  context.Context

	// subs is touched only by the command worker (one at a time), then by
	// serve after stopCommands.
	subs map[string]*channel

	mu       sync.Mutex
	queue    [][]byte
	queued   int // bytes in queue
	writing  bool
	closing  bool // no more frames accepted
	closeErr closeReason

	cmds      [][]byte // frames waiting for the command worker
	handling  bool
	cmdClosed bool
	cmdWG     sync.WaitGroup
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
	if m := h.cfg.Limits.MaxConnections; m > 0 && h.Stats().Connections >= m {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "realtime: instance full; reconnect to another", http.StatusServiceUnavailable)
		return
	}
	user, err := h.cfg.Authenticate(r)
	if err != nil || user == "" {
		http.Error(w, "realtime: unauthenticated", http.StatusUnauthorized)
		return
	}
	ws, err := websocket.Accept(smallBuffers{w}, r, &websocket.AcceptOptions{OriginPatterns: h.cfg.OriginPatterns})
	if err != nil {
		return // Accept has answered the client
	}
	ws.SetReadLimit(h.cfg.Limits.MessageSize)
	ctx, cancel := context.WithCancel(h.ctx)
	c := &conn{hub: h, ws: ws, id: randomID(), user: user, ctx: ctx, subs: map[string]*channel{}}
	h.mu.Lock()
	if h.draining {
		h.mu.Unlock()
		cancel()
		ws.Close(websocket.StatusServiceRestart, "draining")
		return
	}
	if m := h.cfg.Limits.MaxConnections; m > 0 && len(h.clients) >= m {
		h.mu.Unlock()
		cancel()
		ws.Close(websocket.StatusTryAgainLater, "instance full")
		return
	}
	h.clients[c] = struct{}{}
	h.conns.Add(1)
	h.mu.Unlock()
	h.accepted.Add(1)
	// Serve from a fresh goroutine and let the HTTP handler return: the
	// server then drops its own buffers and deep handler stack, which
	// would otherwise stay pinned for the socket's life (about a third of
	// an idle connection's memory).
	go c.serve(cancel)
}

func (c *conn) serve(cancel context.CancelFunc) {
	h := c.hub
	defer cancel()
	defer func() {
		h.mu.Lock()
		delete(h.clients, c)
		h.mu.Unlock()
		h.conns.Done()
	}()
	if h.cfg.OnConnect != nil {
		h.cfg.OnConnect(c.user)
	}
	c.send(reply{Type: FrameConnected, Client: c.id, User: c.user, PingMS: h.cfg.PingInterval.Milliseconds()}.encode())
	c.readLoop()
	cancel() // aborts a command waiting on the broker
	c.stopCommands()
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
	closing := false
	for {
		ctx, cancel := context.WithTimeout(c.ctx, idle)
		typ, data, err := c.ws.Read(ctx)
		cancel()
		if err != nil {
			c.ws.CloseNow()
			return
		}
		if closing {
			continue // until the close handshake ends the read
		}
		if !bucket.allow(time.Now()) {
			overruns++
			if overruns > l.Burst {
				h.log.Info("realtime: closing a client over its rate limit", "user", c.user, "client", c.id)
				c.stopCommands() // their replies go out before the close
				c.closeWith(CloseRateLimited, "rate limit exceeded", nil)
				closing = true
				continue
			}
			c.send(errorFrame(commandID(data), ErrCodeRateLimited, "too many commands; slow down"))
			continue
		}
		overruns = 0
		if typ != websocket.MessageText {
			c.send(errorFrame(0, ErrCodeBadRequest, "frames are JSON text messages"))
			continue
		}
		c.enqueueCommand(data)
	}
}

// enqueueCommand hands a frame to the command worker, which, like the
// writer, exists only while there is work: decoding and broker calls grow
// a goroutine's stack, and the reader's stack stays small for the whole
// life of an idle connection.
func (c *conn) enqueueCommand(data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmdClosed {
		return
	}
	if len(c.cmds) >= 2*c.hub.cfg.Limits.Burst {
		c.mu.Unlock()
		c.send(errorFrame(commandID(data), ErrCodeRateLimited, "too many commands in flight; slow down"))
		c.mu.Lock()
		return
	}
	c.cmds = append(c.cmds, data)
	if !c.handling {
		c.handling = true
		c.cmdWG.Add(1)
		go c.commandLoop()
	}
}

func (c *conn) commandLoop() {
	defer c.cmdWG.Done()
	for {
		c.mu.Lock()
		if len(c.cmds) == 0 {
			c.handling = false
			c.cmds = nil
			c.mu.Unlock()
			return
		}
		data := c.cmds[0]
		c.cmds[0] = nil
		c.cmds = c.cmds[1:]
		c.mu.Unlock()
		cmd, err := DecodeCommand(data, int(c.hub.cfg.Limits.MessageSize))
		if err != nil {
			c.send(errorFrame(0, ErrCodeBadRequest, err.Error()))
			continue
		}
		c.handle(cmd)
	}
}

// commandID extracts only the id of a refused command, so the client can
// match the refusal to its request and retry it.
func commandID(data []byte) uint64 {
	var v struct {
		ID uint64 `json:"id"`
	}
	_ = json.Unmarshal(data, &v)
	return v.ID
}

// stopCommands refuses further commands and waits until the queued ones
// are handled (quickly, once the connection's context is cancelled).
func (c *conn) stopCommands() {
	c.mu.Lock()
	c.cmdClosed = true
	c.mu.Unlock()
	c.cmdWG.Wait()
}

// smallBuffers hands coder/websocket 2 KiB buffers instead of net/http's
// 4 KiB ones: frames larger than a buffer bypass it anyway, and at 5,000
// idle sockets the difference is 20 MB.
type smallBuffers struct{ http.ResponseWriter }

const socketBuffer = 2 << 10

func (s smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("realtime: the ResponseWriter cannot be hijacked")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	r := brw.Reader
	if r.Buffered() == 0 { // otherwise it holds bytes the client already sent
		r = bufio.NewReaderSize(nc, socketBuffer)
	}
	return nc, bufio.NewReadWriter(r, bufio.NewWriterSize(nc, socketBuffer)), nil
}

func (s smallBuffers) Unwrap() http.ResponseWriter { return s.ResponseWriter }

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
		if cmd.Presence && h.presence != nil {
			// Joined before the reply, so the client sees itself present.
			ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
			err := h.presence.SetPresence(ctx, cmd.Channel, []PresenceEntry{{Client: c.id, User: c.user}}, h.cfg.PresenceTTL)
			cancel()
			if err != nil {
				h.log.Warn("realtime: presence join failed; the heartbeat retries", "channel", cmd.Channel, "err", err)
			}
		}
		c.send(r.encode())
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
			c.send(reply{Type: FrameError, ID: cmd.ID, Code: ErrCodeUnavailable, Message: err.Error(), Local: deliveredLocally(err)}.encode())
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

var errForbidden = errors.New("only its user may subscribe to a user channel")

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
		c.hub.log.Info("realtime: closing a slow consumer", "user", c.user, "client", c.id, "queued_frames", len(c.queue), "queued_bytes", c.queued)
		c.closing = true
		c.queue, c.queued = nil, 0
		c.hub.slow.Add(1)
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
