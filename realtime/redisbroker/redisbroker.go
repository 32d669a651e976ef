// Package redisbroker is a realtime.Broker and realtime.PresenceStore on
// Redis or Redis Cluster, through rueidis.
//
// A Lua script assigns each message its channel's next offset, appends it
// to the channel's stream and PUBLISHes it, all atomically, so the live
// stream and the history agree and Pub/Sub order is offset order. Keys use
// a {channel} hash tag so a channel's keys share a Redis Cluster slot.
// Presence entries carry their expiry by the Redis clock.
//
// # Reconnects
//
// A call whose connection died under it (a restarted server, a pooled
// connection that was already dead) is sent again on a fresh connection,
// within the call's timeout, because each is safe to repeat: History and
// Presence read (their scripts only start an epoch or drop expired
// entries, which a repeat finds done); SetPresence and RemovePresence set
// and delete fields; Publish stores an id chosen before the call with the
// message, and a repeat looks for it among the channel's newest
// HistorySize messages before appending, so a message is stored and sent
// once (a channel that got more than HistorySize other messages in the
// milliseconds between could see it twice); one that runs out of tries or
// time after a try went unanswered says so with realtime.ErrMaybePublished.
// Subscribe and Unsubscribe use the Pub/Sub connection that Run
// re-establishes; they fail while it is down, and the Hub subscribes again
// when Run reports the reconnect.
package redisbroker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/retry"
	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
	"github.com/unstuck-dev/unstuck/realtime"
)

// Options configures a Broker: give URL or Client, not both. Every other
// field's zero value is a sensible default.
type Options struct {
	// URL names the Redis server or Cluster:
	// redis://[:PASSWORD@]HOST:PORT[/DB], rediss:// for TLS,
	// ?addr=HOST:PORT for more cluster seeds. The broker opens its own
	// client, and Close closes it.
	URL string
	// Client is a ready rueidis client that the caller keeps owning:
	// Close leaves it open. The broker dedicates one of its connections
	// to Pub/Sub.
	Client rueidis.Client
	// Prefix starts every key and Pub/Sub channel; "rt" if empty.
	Prefix string
	// HistorySize bounds each channel's stream (XADD MAXLEN); 100 if 0.
	HistorySize int
	// HistoryTTL bounds the age of history entries (XTRIM MINID) and
	// expires an idle channel's stream; 5 minutes if 0.
	HistoryTTL time.Duration
	// MetaTTL keeps an idle channel's offset and epoch; when it lapses the
	// next message starts a new epoch. 24 hours if 0 (at least HistoryTTL).
	MetaTTL time.Duration
	// Timeout bounds each Redis call; 5 seconds if 0.
	Timeout time.Duration
}

// Broker is a realtime.Broker and realtime.PresenceStore over Redis.
type Broker struct {
	cfg     Options
	own     bool // Close closes cfg.Client
	healthy atomic.Bool

	mu       sync.Mutex
	channels map[string]struct{}
	dc       rueidis.DedicatedClient // nil while disconnected
}

var (
	_ realtime.Broker        = (*Broker)(nil)
	_ realtime.PresenceStore = (*Broker)(nil)
)

// New returns a broker on cfg.Client, or on a client of its own
// connected to cfg.URL (checked within ctx); call Run (the Hub does).
func New(ctx context.Context, cfg Options) (*Broker, error) {
	if err := connect.Either(cfg.URL, cfg.Client != nil); err != nil {
		return nil, fmt.Errorf("redisbroker: %w", err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "rt"
	}
	if cfg.HistorySize <= 0 {
		cfg.HistorySize = 100
	}
	if cfg.HistoryTTL <= 0 {
		cfg.HistoryTTL = 5 * time.Minute
	}
	if cfg.MetaTTL <= 0 {
		cfg.MetaTTL = 24 * time.Hour
	}
	cfg.MetaTTL = max(cfg.MetaTTL, cfg.HistoryTTL)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	b := &Broker{cfg: cfg, channels: map[string]struct{}{}}
	if cfg.URL != "" {
		c, err := connect.Redis(ctx, cfg.URL, connect.RedisOptions{})
		if err != nil {
			return nil, fmt.Errorf("redisbroker: %w", err)
		}
		b.cfg.Client, b.own = c, true
	}
	return b, nil
}

// Close closes the client the broker opened from Options.URL; a client
// given as Options.Client stays open. Stop Run first.
func (b *Broker) Close() error {
	if b.own {
		b.cfg.Client.Close()
	}
	return nil
}

func (b *Broker) metaKey(ch string) string     { return b.cfg.Prefix + ":{" + ch + "}:m" }
func (b *Broker) streamKey(ch string) string   { return b.cfg.Prefix + ":{" + ch + "}:s" }
func (b *Broker) presenceKey(ch string) string { return b.cfg.Prefix + ":{" + ch + "}:p" }
func (b *Broker) pubsubName(ch string) string  { return b.cfg.Prefix + ":ps:" + ch }

// newEpoch is random so that an epoch reborn after a data loss can never
// equal the one clients remember.
func newEpoch() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ensureEpoch: a channel's meta starts (or restarts, after loss) with a
// fresh epoch; a stream left without meta belongs to the lost epoch.
const redisEnsureEpoch = `
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 't', 0)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
`

// Stream IDs are <ms>-<offset>: time-ordered so XTRIM MINID can bound age,
// and carrying the offset so history needs no extra field. Field i is the
// publish call's id: a repeat (ARGV[8] = "1") that finds it answers with
// that message's offset instead of storing it again.
var redisPublish = rueidis.NewLuaScript(redisEnsureEpoch + `
if ARGV[8] == '1' then
  for _, e in ipairs(redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[4])) do
    local f = e[2]
    for j = 1, #f - 1, 2 do
      if f[j] == 'i' and f[j+1] == ARGV[7] then
        return {tonumber(string.match(e[1], '%-(%d+)$')), epoch}
      end
    end
  end
end
local off = redis.call('HINCRBY', KEYS[1], 'o', 1)
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('HGET', KEYS[1], 't'))
if ms < last then ms = last end
redis.call('HSET', KEYS[1], 't', ms)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], ms .. '-' .. off, 'd', ARGV[3], 'i', ARGV[7])
redis.call('XTRIM', KEYS[2], 'MINID', '~', (ms - tonumber(ARGV[5])) .. '-0')
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[6], off .. ' ' .. epoch .. ' ' .. ARGV[3])
return {off, epoch}
`)

// History reads the top and the entries after `since` in one script, so
// they describe the same moment.
var redisHistory = rueidis.NewLuaScript(redisEnsureEpoch + `
local top = tonumber(redis.call('HGET', KEYS[1], 'o'))
local since = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local count = top - since
if count <= 0 or limit <= 0 or count > limit then
  return {top, epoch, {}}
end
local now = redis.call('TIME')
local minms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[5])
local entries = redis.call('XREVRANGE', KEYS[2], '+', minms .. '-0', 'COUNT', count)
return {top, epoch, entries}
`)

// Publish implements realtime.Broker.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte) (realtime.Publication, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	keys := []string{b.metaKey(channel), b.streamKey(channel)}
	args := []string{newEpoch(), strconv.FormatInt(int64(b.cfg.MetaTTL/time.Second), 10), string(data),
		strconv.Itoa(b.cfg.HistorySize), strconv.FormatInt(b.cfg.HistoryTTL.Milliseconds(), 10),
		b.pubsubName(channel), newEpoch(), "0"}
	var res []rueidis.RedisMessage
	// A try that failed without an answer may have run the script. But
	// rueidis answers a command on a connection that died earlier with
	// that connection's error (EOF) without sending it, the same error as
	// an answer lost in flight: while the backplane is known down since
	// before the call, such a failure is taken as not sent, so local
	// delivery goes on through an outage.
	wasUp := b.Healthy() == nil
	unsure := false
	err := retry.Repeat(ctx, func(ctx context.Context, repeat bool) (err error) {
		if repeat {
			args[7] = "1"
		}
		res, err = redisPublish.Exec(ctx, b.cfg.Client, keys, args).ToArray()
		if _, answered := rueidis.IsRedisErr(err); err != nil && wasUp && !answered && !retry.NotSent(err) {
			unsure = true
		}
		return err
	})
	if err != nil {
		err = b.wrap("publish", err)
		if unsure {
			err = fmt.Errorf("%w (%w)", err, realtime.ErrMaybePublished)
		}
		return realtime.Publication{}, err
	}
	if len(res) != 2 {
		return realtime.Publication{}, fmt.Errorf("redisbroker: publish: unexpected reply of %d items", len(res))
	}
	off, err1 := res[0].AsInt64()
	epoch, err2 := res[1].ToString()
	if err := errors.Join(err1, err2); err != nil {
		return realtime.Publication{}, fmt.Errorf("redisbroker: publish reply: %w", err)
	}
	return realtime.Publication{Offset: uint64(off), Prev: uint64(off) - 1, Epoch: epoch, Data: data}, nil
}

// History implements realtime.Broker.
func (b *Broker) History(ctx context.Context, channel string, since uint64, limit int) (realtime.History, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	res, err := retry.Value(ctx, func(ctx context.Context) ([]rueidis.RedisMessage, error) {
		return redisHistory.Exec(ctx, b.cfg.Client,
			[]string{b.metaKey(channel), b.streamKey(channel)},
			[]string{newEpoch(), strconv.FormatInt(int64(b.cfg.MetaTTL/time.Second), 10),
				strconv.FormatUint(since, 10), strconv.Itoa(limit),
				strconv.FormatInt(b.cfg.HistoryTTL.Milliseconds(), 10)}).ToArray()
	})
	if err != nil {
		return realtime.History{}, b.wrap("history", err)
	}
	if len(res) != 3 {
		return realtime.History{}, fmt.Errorf("redisbroker: history: unexpected reply of %d items", len(res))
	}
	top, err1 := res[0].AsInt64()
	epoch, err2 := res[1].ToString()
	entries, err3 := res[2].ToArray()
	if err := errors.Join(err1, err2, err3); err != nil {
		return realtime.History{}, fmt.Errorf("redisbroker: history reply: %w", err)
	}
	h := realtime.History{Top: realtime.Position{Offset: uint64(top), Epoch: epoch}}
	// XREVRANGE is newest first.
	for i := len(entries) - 1; i >= 0; i-- {
		e, err := entries[i].ToArray()
		if err != nil || len(e) != 2 {
			return realtime.History{}, fmt.Errorf("redisbroker: history entry: %v", err)
		}
		id, _ := e[0].ToString()
		_, seq, _ := strings.Cut(id, "-")
		off, perr := strconv.ParseUint(seq, 10, 64)
		fields, ferr := e[1].AsStrSlice()
		if perr != nil || ferr != nil || len(fields) < 2 || fields[0] != "d" {
			return realtime.History{}, fmt.Errorf("redisbroker: history entry %q malformed", id)
		}
		h.Publications = append(h.Publications, realtime.Publication{Offset: off, Prev: off - 1, Epoch: epoch, Data: []byte(fields[1])})
	}
	want := uint64(0)
	if uint64(top) > since {
		want = uint64(top) - since
	}
	h.Complete = uint64(len(h.Publications)) == want && (want == 0 || h.Publications[0].Offset == since+1) && since <= uint64(top)
	return h, nil
}

// Subscribe implements realtime.Broker.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	b.mu.Lock()
	b.channels[channel] = struct{}{}
	dc := b.dc
	b.mu.Unlock()
	if dc == nil {
		b.forget(channel)
		return fmt.Errorf("%w: redis pub/sub not connected", realtime.ErrBackplaneUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	if err := dc.Do(ctx, dc.B().Subscribe().Channel(b.pubsubName(channel)).Build()).Error(); err != nil {
		b.forget(channel)
		return b.wrap("subscribe", err)
	}
	return nil
}

func (b *Broker) forget(channel string) {
	b.mu.Lock()
	delete(b.channels, channel)
	b.mu.Unlock()
}

// Unsubscribe implements realtime.Broker.
func (b *Broker) Unsubscribe(ctx context.Context, channel string) error {
	b.mu.Lock()
	delete(b.channels, channel)
	dc := b.dc
	b.mu.Unlock()
	if dc == nil {
		return nil // nothing to undo: a reconnect will not resubscribe it
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	return b.wrap("unsubscribe", dc.Do(ctx, dc.B().Unsubscribe().Channel(b.pubsubName(channel)).Build()).Error())
}

// Healthy implements realtime.Broker.
func (b *Broker) Healthy() error {
	if !b.healthy.Load() {
		return fmt.Errorf("%w: redis pub/sub connection down", realtime.ErrBackplaneUnavailable)
	}
	return nil
}

// Run implements realtime.Broker: it holds a dedicated Pub/Sub connection, and after
// losing it reconnects with capped backoff and resubscribes every channel
// before telling the hub, which then fills the gap from history.
func (b *Broker) Run(ctx context.Context, h realtime.BrokerHandler) error {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		connected, err := b.runOnce(ctx, h)
		b.healthy.Store(false)
		if ctx.Err() != nil {
			break
		}
		if connected {
			backoff = 50 * time.Millisecond
		}
		_ = err // the state is reported through Healthy
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	return nil
}

func (b *Broker) runOnce(ctx context.Context, h realtime.BrokerHandler) (bool, error) {
	dc, release := b.cfg.Client.Dedicate()
	defer release()
	prefix := b.pubsubName("")
	lost := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: func(m rueidis.PubSubMessage) {
		ch, ok := strings.CutPrefix(m.Channel, prefix)
		if !ok {
			return
		}
		offS, rest, ok1 := strings.Cut(m.Message, " ")
		epoch, data, ok2 := strings.Cut(rest, " ")
		off, err := strconv.ParseUint(offS, 10, 64)
		if !ok1 || !ok2 || err != nil {
			return // not ours; nothing else publishes with our prefix
		}
		h.HandlePublication(ch, realtime.Publication{Offset: off, Prev: off - 1, Epoch: epoch, Data: []byte(data)})
	}})
	b.mu.Lock()
	chans := make([]string, 0, len(b.channels))
	for ch := range b.channels {
		chans = append(chans, b.pubsubName(ch))
	}
	b.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	var err error
	if len(chans) > 0 {
		err = dc.Do(sctx, dc.B().Subscribe().Channel(chans...).Build()).Error()
	} else {
		err = dc.Do(sctx, dc.B().Ping().Build()).Error()
	}
	cancel()
	if err != nil {
		return false, err
	}
	b.mu.Lock()
	// Channels added while we subscribed the snapshot went to a nil dc and
	// failed; the hub retries them. Publish the connection now.
	b.dc = dc
	b.mu.Unlock()
	b.healthy.Store(true)
	h.Reconnected()
	defer func() {
		b.mu.Lock()
		b.dc = nil
		b.mu.Unlock()
	}()
	select {
	case err := <-lost:
		return true, err
	case <-ctx.Done():
		dc.Close()
		return true, ctx.Err()
	}
}

func (b *Broker) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := rueidis.IsRedisErr(err); ok {
		return fmt.Errorf("redisbroker: %s: %w", op, err)
	}
	return fmt.Errorf("%w: redis %s: %v", realtime.ErrBackplaneUnavailable, op, err)
}
