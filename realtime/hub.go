package realtime

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Op names what a client wants to do with a channel, for Config.Authorize.
type Op string

// The operations a client can ask for.
const (
	OpSubscribe Op = "subscribe"
	OpPublish   Op = "publish"
	OpPresence  Op = "presence"
)

// Config configures a Hub. Broker and Authenticate are required; every
// other field has a useful zero value.
type Config struct {
	// Broker carries messages between instances and keeps history.
	Broker Broker
	// Presence stores who is in each channel; if nil and Broker is also a
	// PresenceStore (both provided brokers are), Broker is used.
	Presence PresenceStore
	// Authenticate returns the user of a WebSocket handshake, or an error
	// to refuse it with 401. Plug the app's session lookup or
	// TokenAuth.Authenticate in here.
	Authenticate func(r *http.Request) (userID string, err error)
	// Authorize, if set, decides every subscribe, publish and presence
	// request on top of the built-in rule that only user u may subscribe
	// to (or ask the presence of) "$user:u". Without it clients may
	// subscribe and publish to any other channel, and never publish to a
	// user channel.
	Authorize func(ctx context.Context, userID string, op Op, channel string) error
	// OriginPatterns lists cross-origin hosts allowed to connect (see
	// websocket.AcceptOptions); same-origin always is.
	OriginPatterns []string
	// Limits bound what one connection may cost.
	Limits Limits
	// HistoryLimit caps the messages replayed to one subscriber or used to
	// fill one gap; a longer gap is reported as recovered:false. 100 if 0.
	HistoryLimit int
	// PresenceTTL is how long a presence entry outlives its instance's last
	// heartbeat (sent every TTL/3): the bound on a dead instance's ghosts.
	// 30 seconds if 0.
	PresenceTTL time.Duration
	// DrainWindow is the time over which Shutdown spreads closing sockets;
	// 10 seconds if 0.
	DrainWindow time.Duration
	// ReconnectDelay is the retry hint sent with a drain close: clients
	// wait a random delay in [0, ReconnectDelay). 1 second if 0.
	ReconnectDelay time.Duration
	// PingInterval is how often clients are asked to ping; a connection
	// silent for three intervals is closed. 25 seconds if 0.
	PingInterval time.Duration
	// PositionCheck is how often the hub compares each channel's top
	// offset in the broker with what it delivered, to catch a lost last
	// message that no later message would reveal. 5 seconds if 0;
	// negative turns it off.
	PositionCheck time.Duration
	// Logger receives operational events; nothing is logged if nil.
	Logger *slog.Logger
	// OnConnect, if set, is called after each accepted connection (for
	// metrics; must not block).
	OnConnect func(userID string)
}

// Limits bound the resources of one connection. Zero fields take the
// defaults shown.
type Limits struct {
	// MessageSize is the largest frame a client may send (64 KiB); a
	// larger one closes the connection with 1009 (message too big).
	MessageSize int64
	// SendQueue is how many frames may wait for a slow client (1024), and
	// SendQueueBytes how many bytes (4 MiB). Beyond either, the client is
	// closed with CloseSlowConsumer rather than slowing anyone else.
	SendQueue      int
	SendQueueBytes int
	// Rate is the sustained commands per second a client may send (50) and
	// Burst how many at once (300: more than MaxSubscriptions, so a client
	// resubscribing everything after a reconnect is never refused).
	// Commands over the rate are answered with rate_limited errors
	// carrying their id; a client that keeps going is closed with
	// CloseRateLimited.
	Rate  float64
	Burst int
	// MaxSubscriptions per connection (256).
	MaxSubscriptions int
	// MaxConnections per hub; beyond it handshakes get 503 so the balancer
	// tries another instance. 0 means no limit.
	MaxConnections int
	// WriteTimeout bounds writing one batch of frames (10 s).
	WriteTimeout time.Duration
}

// WebSocket close codes the hub uses besides the standard ones (1009
// message too big, 1012 service restart).
const (
	CloseSlowConsumer = 4008
	CloseRateLimited  = 4029
)

// Hub serves WebSocket clients on one instance and connects them, through
// its Broker, to the clients of every other instance. Mount it on every
// instance; any client may connect to any of them.
type Hub struct {
	cfg      Config
	presence PresenceStore
	log      *slog.Logger
	instance string

	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup // broker, heartbeat and resync goroutines
	conns  sync.WaitGroup // connection handlers

	mu       sync.RWMutex
	channels map[string]*channel
	clients  map[*conn]struct{}
	draining bool

	resync     chan struct{}
	accepted   atomic.Int64
	slow       atomic.Int64
	gapsFilled atomic.Int64
	resets     atomic.Int64
	stopOnce   sync.Once
}

// New starts a hub: it runs the broker and the presence heartbeat until
// Shutdown or Close.
func New(cfg Config) (*Hub, error) {
	if cfg.Broker == nil {
		return nil, errors.New("realtime: Config.Broker is required")
	}
	if cfg.Authenticate == nil {
		return nil, errors.New("realtime: Config.Authenticate is required (use TokenAuth or the app's session)")
	}
	l := &cfg.Limits
	l.MessageSize = orDefault(l.MessageSize, 64<<10)
	l.SendQueue = orDefault(l.SendQueue, 1024)
	l.SendQueueBytes = orDefault(l.SendQueueBytes, 4<<20)
	l.Rate = orDefault(l.Rate, 50)
	l.Burst = orDefault(l.Burst, 300)
	l.MaxSubscriptions = orDefault(l.MaxSubscriptions, 256)
	l.WriteTimeout = orDefault(l.WriteTimeout, 10*time.Second)
	cfg.HistoryLimit = orDefault(cfg.HistoryLimit, 100)
	cfg.PresenceTTL = orDefault(cfg.PresenceTTL, 30*time.Second)
	cfg.DrainWindow = orDefault(cfg.DrainWindow, 10*time.Second)
	cfg.ReconnectDelay = orDefault(cfg.ReconnectDelay, time.Second)
	cfg.PingInterval = orDefault(cfg.PingInterval, 25*time.Second)
	cfg.PositionCheck = orDefault(cfg.PositionCheck, 5*time.Second)
	h := &Hub{
		cfg:      cfg,
		presence: cfg.Presence,
		log:      cfg.Logger,
		instance: randomID(),
		channels: map[string]*channel{},
		clients:  map[*conn]struct{}{},
		resync:   make(chan struct{}, 1),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.presence == nil {
		h.presence, _ = cfg.Broker.(PresenceStore)
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.bg.Add(4)
	go func() { defer h.bg.Done(); h.positionLoop() }()
	go func() { defer h.bg.Done(); _ = cfg.Broker.Run(h.ctx, (*brokerHandler)(h)) }()
	go func() { defer h.bg.Done(); h.resyncLoop() }()
	go func() { defer h.bg.Done(); h.heartbeatLoop() }()
	return h, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Healthy returns nil while the hub can reach the other instances: an
// instance whose backplane is down still serves its own clients, but a load
// balancer should prefer the others. A draining hub is unhealthy too.
func (h *Hub) Healthy() error {
	h.mu.RLock()
	draining := h.draining
	h.mu.RUnlock()
	if draining {
		return errors.New("realtime: hub is draining")
	}
	return h.cfg.Broker.Healthy()
}

// HealthHandler answers 200 "ok" or 503 with the reason, for load balancer
// health checks.
func (h *Hub) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := h.Healthy(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// ServeHTTP upgrades WebSocket handshakes. GET requests for a path ending
// in "/realtime.js" get the JavaScript client and "/healthz" the health
// check, so mounting the hub under one prefix serves all three.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/realtime.js"):
		ClientJS().ServeHTTP(w, r)
		return
	case strings.HasSuffix(r.URL.Path, "/healthz"):
		h.HealthHandler().ServeHTTP(w, r)
		return
	}
	h.serveWS(w, r)
}

// Publish sends data (a JSON value) to every subscriber of channel on every
// instance and returns its place in the channel's history. When the
// backplane is down the message still reaches this instance's subscribers,
// without an offset, and the error wraps ErrBackplaneUnavailable; unless
// it also wraps ErrMaybePublished: then the message was sent and may have
// been stored, and it reaches subscribers from history if it was.
func (h *Hub) Publish(ctx context.Context, channel string, data []byte) (Publication, error) {
	if err := ValidChannel(channel); err != nil {
		return Publication{}, fmt.Errorf("realtime: %w", err)
	}
	if !json.Valid(data) {
		return Publication{}, errors.New("realtime: data must be valid JSON")
	}
	if int64(len(data)) > h.cfg.Limits.MessageSize {
		return Publication{}, fmt.Errorf("realtime: data of %d bytes exceeds the %d-byte message limit", len(data), h.cfg.Limits.MessageSize)
	}
	p, err := h.cfg.Broker.Publish(ctx, channel, data)
	if deliveredLocally(err) {
		h.deliverLocal(channel, data)
		return Publication{}, fmt.Errorf("%w (delivered to this instance's subscribers only)", err)
	}
	return p, err
}

// deliveredLocally reports whether Publish handed a message that failed
// with err to this instance's subscribers: only one surely not stored, as
// history would deliver a stored one again.
func deliveredLocally(err error) bool {
	return errors.Is(err, ErrBackplaneUnavailable) && !errors.Is(err, ErrMaybePublished)
}

// PublishToUser sends data to every connection of userID on every instance
// that subscribed to the user's channel (the JavaScript client does so on
// connect).
func (h *Hub) PublishToUser(ctx context.Context, userID string, data []byte) (Publication, error) {
	return h.Publish(ctx, UserChannelPrefix+userID, data)
}

// Presence lists who is in channel across instances.
func (h *Hub) Presence(ctx context.Context, channel string) ([]PresenceEntry, error) {
	if h.presence == nil {
		return nil, errors.New("realtime: no presence store configured")
	}
	return h.presence.Presence(ctx, channel)
}

// Stats is a snapshot of a hub's load.
type Stats struct {
	Connections int
	Channels    int
	// Accepted counts connections accepted since New.
	Accepted int64
	// SlowConsumers counts connections closed because their send queue
	// overflowed.
	SlowConsumers int64
	// GapsFilled counts losses in the live stream repaired from history;
	// Resets counts the times subscribers had to be told recovered:false.
	GapsFilled int64
	Resets     int64
}

// Stats returns the hub's current load.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return Stats{Connections: len(h.clients), Channels: len(h.channels), Accepted: h.accepted.Load(), SlowConsumers: h.slow.Load(),
		GapsFilled: h.gapsFilled.Load(), Resets: h.resets.Load()}
}

// brokerHandler keeps HandlePublication off the Hub's exported API.
type brokerHandler Hub

func (b *brokerHandler) HandlePublication(channel string, p Publication) {
	(*Hub)(b).handlePublication(channel, p)
}

func (b *brokerHandler) Reconnected() {
	select {
	case (*Hub)(b).resync <- struct{}{}:
	default: // a resync is already pending and will cover this one
	}
}

// resyncLoop fills, after each backplane reconnect, what every channel
// missed meanwhile, and restores presence entries the backplane may have
// lost. It runs apart from the broker so history reads never stall live
// delivery.
func (h *Hub) resyncLoop() {
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.resync:
		}
		for _, ch := range h.snapshotChannels() {
			ch.mu.Lock()
			if ch.subscribed && ch.known {
				h.fillLocked(ch, nil)
			}
			ch.mu.Unlock()
		}
		h.heartbeat()
	}
}

// positionLoop catches the one loss gap detection cannot see: the last
// message of a burst, after which nothing arrives to expose the hole.
func (h *Hub) positionLoop() {
	if h.cfg.PositionCheck < 0 {
		return
	}
	t := time.NewTicker(h.cfg.PositionCheck)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		for _, ch := range h.snapshotChannels() {
			ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
			ch.mu.Lock()
			if ch.subscribed && ch.known {
				// limit 0 reads only the top: one cheap call per channel.
				hist, err := h.cfg.Broker.History(ctx, ch.name, ch.last, 0)
				if err == nil && (hist.Top.Offset != ch.last || hist.Top.Epoch != ch.epoch) {
					h.fillLocked(ch, nil)
				}
			}
			ch.mu.Unlock()
			cancel()
		}
	}
}

func (h *Hub) heartbeatLoop() {
	t := time.NewTicker(h.cfg.PresenceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
			h.heartbeat()
		}
	}
}

// heartbeat refreshes this instance's presence entries, one call per
// channel, so they outlive the TTL only while the instance lives.
func (h *Hub) heartbeat() {
	if h.presence == nil {
		return
	}
	for _, ch := range h.snapshotChannels() {
		ch.mu.Lock()
		entries := make([]PresenceEntry, 0, len(ch.present))
		for _, e := range ch.present {
			entries = append(entries, e)
		}
		ch.mu.Unlock()
		if len(entries) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		if err := h.presence.SetPresence(ctx, ch.name, entries, h.cfg.PresenceTTL); err != nil {
			h.log.Warn("realtime: presence heartbeat failed", "channel", ch.name, "err", err)
		}
		cancel()
	}
}

func (h *Hub) snapshotChannels() []*channel {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*channel, 0, len(h.channels))
	for _, ch := range h.channels {
		out = append(out, ch)
	}
	return out
}
