// Package natsbroker is a realtime.Broker and realtime.PresenceStore on
// NATS.
//
// History is one JetStream stream whose subjects are one per channel, so a
// message's offset is its stream sequence: increasing per channel but not
// contiguous. Publish therefore records the channel's previous sequence as
// Prev, made atomic by JetStream's expected-last-subject-sequence check (a
// concurrent publisher on another instance makes it retry). Live fan-out
// is a core NATS message sent after the store, carrying offset and Prev.
// Presence lives in a key-value bucket.
//
// # Reconnects
//
// The NATS client holds requests while it reconnects, and Run re-creates
// the stream and the presence bucket once it is back. A presence call
// that finds the in-memory bucket gone with a restarted server (before
// Run has seen the reconnect) re-creates it and runs again, and presence
// calls whose connection was lost are repeated: they only put, purge and
// read keys. A Publish whose request or answer was lost is repeated as
// well: each message carries an id the call chose before sending it as
// its Nats-Msg-Id, and JetStream answers a repeat of a stored message
// with the stored one's sequence instead of storing it again, however
// many other messages landed on the channel in between (the stream keeps
// the ids for a window longer than a Publish call, and rebuilds them from
// disk after a restart).
package natsbroker

import (
	"cmp"
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unstuck-dev/unstuck/internal/jsread"
	"github.com/unstuck-dev/unstuck/internal/retry"
	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
	"github.com/unstuck-dev/unstuck/realtime"
)

// Options configures a Broker: give URL or Client, not both. Every other
// field's zero value is a sensible default.
type Options struct {
	// URL names the NATS server, nats://[USER:PASSWORD@]HOST:PORT. The
	// broker opens its own connection, which reconnects after an outage,
	// and Close closes it.
	URL string
	// Client is a NATS connection that the caller keeps owning: Close
	// leaves it open. Connect with nats.MaxReconnects(-1) so an outage
	// is ridden out.
	Client *nats.Conn
	// Stream names the JetStream stream holding history; "REALTIME" if
	// empty. Prefix starts its subjects; "rt" if empty.
	Stream string
	Prefix string
	// HistorySize bounds each channel's history (MaxMsgsPerSubject); 100
	// if 0. HistoryTTL bounds its age (MaxAge); 5 minutes if 0.
	HistorySize int
	HistoryTTL  time.Duration
	// Replicas of the stream and presence bucket in a cluster; 1 if 0.
	Replicas int
	// Memory keeps history in memory rather than on disk.
	Memory bool
	// PresenceBucket names the key-value bucket of presence entries;
	// "realtime_presence" if empty.
	PresenceBucket string
	// Timeout bounds each NATS call; 5 seconds if 0.
	Timeout time.Duration
}

// Broker is a realtime.Broker and realtime.PresenceStore over NATS.
type Broker struct {
	cfg Options
	own bool // Close closes cfg.Client
	js  jetstream.JetStream
	// history reads the stream, through its leader when it is replicated
	// (a replica may not hold the newest message yet); replaced by Run
	// after a reconnect.
	history atomic.Pointer[jsread.Stream]
	epoch   atomic.Value // string: the stream's creation time
	msgs    chan *nats.Msg

	mu   sync.Mutex
	subs map[string]*nats.Subscription
	last map[string]uint64 // cached last sequence per channel subject

	pubLocks [64]sync.Mutex // serialize this instance's publishers per channel

	kvMu     sync.Mutex
	kv       jetstream.KeyValue
	kvRead   *jsread.KV          // reads of kv from its leader when replicated
	instance string              // names this broker's presence heartbeat
	written  map[string]struct{} // presence keys this instance has stored
}

var (
	_ realtime.Broker        = (*Broker)(nil)
	_ realtime.PresenceStore = (*Broker)(nil)
)

// New creates or updates the history stream on cfg.Client, or on a
// connection of its own to cfg.URL, and returns the broker; call Run (the
// Hub does).
func New(ctx context.Context, cfg Options) (*Broker, error) {
	if err := connect.Either(cfg.URL, cfg.Client != nil); err != nil {
		return nil, fmt.Errorf("natsbroker: %w", err)
	}
	cfg.Stream = cmp.Or(cfg.Stream, "REALTIME")
	cfg.Prefix = cmp.Or(cfg.Prefix, "rt")
	cfg.HistorySize = cmp.Or(cfg.HistorySize, 100)
	cfg.HistoryTTL = cmp.Or(cfg.HistoryTTL, 5*time.Minute)
	cfg.Replicas = cmp.Or(cfg.Replicas, 1)
	cfg.PresenceBucket = cmp.Or(cfg.PresenceBucket, "realtime_presence")
	cfg.Timeout = cmp.Or(cfg.Timeout, 5*time.Second)
	own := false
	if cfg.URL != "" {
		nc, err := connect.NATS(ctx, cfg.URL, "unstuck realtime broker")
		if err != nil {
			return nil, fmt.Errorf("natsbroker: %w", err)
		}
		cfg.Client, own = nc, true
	}
	b := &Broker{cfg: cfg, own: own, msgs: make(chan *nats.Msg, 8192),
		subs: map[string]*nats.Subscription{}, last: map[string]uint64{},
		instance: rand.Text(), written: map[string]struct{}{}}
	js, err := jetstream.New(cfg.Client)
	if err == nil {
		b.js = js
		err = b.ensureStream(ctx)
	}
	if err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("natsbroker: %w", err)
	}
	return b, nil
}

// Close closes the connection the broker opened from Options.URL; a
// connection given as Options.Client stays open. Stop Run first.
func (b *Broker) Close() error {
	if b.own {
		b.cfg.Client.Close()
	}
	return nil
}

func (b *Broker) ensureStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	storage := jetstream.FileStorage
	if b.cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	cfg := jetstream.StreamConfig{
		Name:              b.cfg.Stream,
		Subjects:          []string{b.cfg.Prefix + ".h.>"},
		MaxMsgsPerSubject: int64(b.cfg.HistorySize),
		MaxAge:            b.cfg.HistoryTTL,
		Storage:           storage,
		Replicas:          b.cfg.Replicas,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
		Duplicates:        b.dedupWindow(),
	}
	s, err := retry.Create(ctx, func(ctx context.Context) (jetstream.Stream, error) {
		return b.js.CreateOrUpdateStream(ctx, cfg)
	})
	if err != nil {
		return fmt.Errorf("%w: jetstream stream %s: %v", realtime.ErrBackplaneUnavailable, b.cfg.Stream, err)
	}
	b.history.Store(jsread.Wrap(b.js, s))
	b.epoch.Store(strconv.FormatInt(s.CachedInfo().Created.UnixNano(), 36))
	return nil
}

// dedupWindow is how long the stream remembers a message's id: every
// repeat of a Publish comes within its Timeout, so a minute is plenty
// while keeping the server's table of ids small (the server's default is
// two minutes). The server refuses a window longer than the history's age.
func (b *Broker) dedupWindow() time.Duration {
	return min(b.cfg.HistoryTTL, max(time.Minute, 2*b.cfg.Timeout))
}

func (b *Broker) token(ch string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(ch))
}
func (b *Broker) histSubject(ch string) string { return b.cfg.Prefix + ".h." + b.token(ch) }
func (b *Broker) liveSubject(ch string) string { return b.cfg.Prefix + ".l." + b.token(ch) }
func (b *Broker) currentEpoch() string         { return b.epoch.Load().(string) }

const prevHeader = "Rt-Prev"

func (b *Broker) lastSeq(ctx context.Context, subj string) (uint64, error) {
	m, err := b.lastMsg(ctx, subj)
	if m == nil {
		return 0, err
	}
	return m.Sequence, nil
}

// lastMsg is the channel's newest stored message, nil for none.
func (b *Broker) lastMsg(ctx context.Context, subj string) (*jetstream.RawStreamMsg, error) {
	m, err := retry.Value(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return b.history.Load().Last(ctx, subj)
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, b.wrap("last message", err)
	}
	return m, nil
}

// Publish implements realtime.Broker.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte) (realtime.Publication, error) {
	// Fail fast while disconnected: nats.go would buffer the message and
	// the publisher would wait the whole timeout for an ack.
	if err := b.Healthy(); err != nil {
		return realtime.Publication{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	subj := b.histSubject(channel)
	lk := &b.pubLocks[fnv32(channel)%uint32(len(b.pubLocks))]
	lk.Lock()
	defer lk.Unlock()
	// The id makes every try after the first safe: the stream stores one
	// message per id.
	id := rand.Text()
	var p realtime.Publication
	unsure := false // a try was sent and not answered
	err := retry.Do(ctx, func(ctx context.Context) error {
		return retry.OnConn(ctx, b.cfg.Client, func(ctx context.Context) (err error) {
			p, err = b.publish(ctx, channel, subj, data, id, &unsure)
			return err
		})
	})
	if err != nil && !errors.Is(err, realtime.ErrBackplaneUnavailable) {
		err = b.wrap("publish", err)
	}
	if err != nil && unsure {
		// Whatever failed last, the unanswered try may have been stored
		// (or be stored yet: the client sends what it buffered while
		// reconnecting).
		err = fmt.Errorf("%w (%w)", err, realtime.ErrMaybePublished)
	}
	return p, err
}

// publish is one try of Publish. An earlier try whose answer was lost
// may have stored the message: the stream then answers this one as a
// duplicate of it.
func (b *Broker) publish(ctx context.Context, channel, subj string, data []byte, id string, unsure *bool) (realtime.Publication, error) {
	b.mu.Lock()
	prev, cached := b.last[subj]
	b.mu.Unlock()
	// A compare-and-set loop: a conflict means another instance won the
	// slot, so each retry makes progress; the context bounds it. The
	// stream checks the expected sequence before the id, so a repeat
	// whose earlier try landed first learns the current last sequence
	// like any other publisher, and is then recognised by its id.
	for {
		if !cached {
			var err error
			if prev, err = b.lastSeq(ctx, subj); err != nil {
				return realtime.Publication{}, err
			}
		}
		msg := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
		msg.Header.Set(prevHeader, strconv.FormatUint(prev, 10))
		ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(prev), jetstream.WithMsgID(id))
		if err != nil {
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
				apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) && ctx.Err() == nil {
				cached = false // another instance published first
				continue
			}
			if !errors.As(err, &apiErr) && !retry.NotSent(err) {
				*unsure = true
			}
			b.mu.Lock()
			delete(b.last, subj)
			b.mu.Unlock()
			return realtime.Publication{}, err
		}
		if ack.Duplicate {
			// Stored by an earlier try, maybe with other messages after
			// it: its own Prev is in its header, and the channel's last
			// sequence is unknown here.
			return b.stored(ctx, channel, subj, ack.Sequence, data)
		}
		return b.published(channel, subj, realtime.Publication{Offset: ack.Sequence, Prev: prev, Epoch: b.currentEpoch(), Data: data}), nil
	}
}

// stored answers a Publish whose message an earlier try stored at seq,
// and sends the live copy that try could not: receivers drop it if they
// already have it from history.
func (b *Broker) stored(ctx context.Context, channel, subj string, seq uint64, data []byte) (realtime.Publication, error) {
	m, err := b.history.Load().Next(ctx, seq, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) || err == nil && m.Sequence != seq {
		// Trimmed already (a full history, or its age): nobody can be
		// given it any more, but the call did publish it.
		return realtime.Publication{Offset: seq, Epoch: b.currentEpoch(), Data: data}, nil
	}
	if err != nil {
		return realtime.Publication{}, err
	}
	prev, _ := strconv.ParseUint(m.Header.Get(prevHeader), 10, 64)
	p := realtime.Publication{Offset: seq, Prev: prev, Epoch: b.currentEpoch(), Data: data}
	b.mu.Lock()
	delete(b.last, subj)
	b.mu.Unlock()
	b.sendLive(channel, p)
	return p, nil
}

// published records p as the channel's newest message and sends its live
// copy.
func (b *Broker) published(channel, subj string, p realtime.Publication) realtime.Publication {
	b.mu.Lock()
	b.last[subj] = p.Offset
	if len(b.last) > 100_000 { // a bounded cache; a miss costs one lookup
		clear(b.last)
	}
	b.mu.Unlock()
	b.sendLive(channel, p)
	return p
}

// sendLive sends p's live copy to the channel's subscribers.
func (b *Broker) sendLive(channel string, p realtime.Publication) {
	live := make([]byte, 0, 48+len(p.Data))
	live = strconv.AppendUint(live, p.Offset, 10)
	live = append(live, ' ')
	live = strconv.AppendUint(live, p.Prev, 10)
	live = append(live, ' ')
	live = append(live, p.Epoch...)
	live = append(live, ' ')
	live = append(live, p.Data...)
	// Stored is what counts: a lost live copy is a gap receivers fill
	// from history.
	_ = b.cfg.Client.Publish(b.liveSubject(channel), live)
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// History implements realtime.Broker. It walks the channel's subject one
// message per read (direct gets, or the leader's on a replicated stream):
// gaps are short, and a full replay is bounded by limit.
func (b *Broker) History(ctx context.Context, channel string, since uint64, limit int) (realtime.History, error) {
	if err := b.Healthy(); err != nil {
		return realtime.History{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	subj := b.histSubject(channel)
	top, err := b.lastSeq(ctx, subj)
	if err != nil {
		return realtime.History{}, err
	}
	h := realtime.History{Top: realtime.Position{Offset: top, Epoch: b.currentEpoch()}}
	if since == top {
		h.Complete = true
		return h, nil
	}
	if since > top || limit <= 0 {
		return h, nil
	}
	seq := since + 1
	for len(h.Publications) < limit {
		m, err := b.history.Load().Next(ctx, seq, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return realtime.History{}, b.wrap("history", err)
		}
		prev, _ := strconv.ParseUint(m.Header.Get(prevHeader), 10, 64)
		if len(h.Publications) == 0 && prev != since {
			return h, nil // trimmed: the message after `since` is gone
		}
		h.Publications = append(h.Publications, realtime.Publication{Offset: m.Sequence, Prev: prev, Epoch: h.Top.Epoch, Data: m.Data})
		if m.Sequence >= top {
			h.Complete = true
			break
		}
		seq = m.Sequence + 1
	}
	return h, nil
}

// Subscribe implements realtime.Broker. Flushing makes the server hold the interest
// before the hub reads the channel's top, so nothing falls in between.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	sub, err := b.cfg.Client.ChanSubscribe(b.liveSubject(channel), b.msgs)
	if err != nil {
		return b.wrap("subscribe", err)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	if err := b.cfg.Client.FlushWithContext(ctx); err != nil {
		_ = sub.Unsubscribe()
		return b.wrap("subscribe", err)
	}
	b.mu.Lock()
	if old := b.subs[channel]; old != nil {
		_ = old.Unsubscribe()
	}
	b.subs[channel] = sub
	b.mu.Unlock()
	return nil
}

// Unsubscribe implements realtime.Broker.
func (b *Broker) Unsubscribe(_ context.Context, channel string) error {
	b.mu.Lock()
	sub := b.subs[channel]
	delete(b.subs, channel)
	b.mu.Unlock()
	if sub == nil {
		return nil
	}
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return b.wrap("unsubscribe", err)
	}
	return nil
}

// Healthy implements realtime.Broker.
func (b *Broker) Healthy() error {
	if s := b.cfg.Client.Status(); s != nats.CONNECTED {
		return fmt.Errorf("%w: nats connection %v", realtime.ErrBackplaneUnavailable, s)
	}
	return nil
}

// Run implements realtime.Broker. nats.go restores subscriptions itself on
// reconnect; Run then re-reads the stream's epoch (a stream recreated
// empty has a new one) and tells the hub to fill the gap.
func (b *Broker) Run(ctx context.Context, h realtime.BrokerHandler) error {
	status := b.cfg.Client.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED)
	defer b.cfg.Client.RemoveStatusListener(status)
	live := b.cfg.Prefix + ".l."
	// delivered is the last position Run handed on per channel. Two
	// instances publishing at once send their live copies on different
	// connections, so a copy can arrive after a later one; it is dropped,
	// a skip the hub fills from history, never a reorder.
	delivered := map[string]realtime.Position{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-status:
			if s != nats.CONNECTED {
				continue
			}
			if err := b.ensureStream(ctx); err != nil {
				continue // Healthy tells; the next status change retries
			}
			b.mu.Lock()
			clear(b.last)
			b.mu.Unlock()
			b.kvMu.Lock()
			clear(b.written) // a restarted server may have lost them
			b.kv = nil
			b.kvMu.Unlock()
			clear(delivered) // the stream may be new, its offsets restarted
			h.Reconnected()
		case m := <-b.msgs:
			tok, ok := strings.CutPrefix(m.Subject, live)
			name, err := base64.RawURLEncoding.DecodeString(tok)
			if !ok || err != nil {
				continue
			}
			offS, rest, ok1 := strings.Cut(string(m.Data), " ")
			prevS, rest, ok2 := strings.Cut(rest, " ")
			epoch, data, ok3 := strings.Cut(rest, " ")
			off, err1 := strconv.ParseUint(offS, 10, 64)
			prev, err2 := strconv.ParseUint(prevS, 10, 64)
			if !ok1 || !ok2 || !ok3 || err1 != nil || err2 != nil {
				continue
			}
			ch := string(name)
			if last, ok := delivered[ch]; ok && last.Epoch == epoch && off <= last.Offset {
				continue
			}
			if len(delivered) > 100_000 { // bounded; forgetting costs at most a reorder the hub drops
				clear(delivered)
			}
			delivered[ch] = realtime.Position{Offset: off, Epoch: epoch}
			h.HandlePublication(ch, realtime.Publication{Offset: off, Prev: prev, Epoch: epoch, Data: []byte(data)})
		}
	}
}

func (b *Broker) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return fmt.Errorf("natsbroker: %s: %w", op, err)
	}
	return fmt.Errorf("%w: nats %s: %v", realtime.ErrBackplaneUnavailable, op, err)
}
