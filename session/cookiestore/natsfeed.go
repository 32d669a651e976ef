package cookiestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unstuck-dev/unstuck/internal/retry"
)

// natsFeed carries revocations through a JetStream key-value bucket: one
// entry per revoked session ("s.<id>") or user ("u.<hash>"), each with a
// per-message TTL at its until, so the bucket holds only live revocations
// and a starting instance loads exactly those. A watch on the bucket (an
// ordered consumer, which re-creates itself after a reconnect or a gap)
// brings new ones at once; confirm compares the bucket's last sequence
// with what this instance has seen and reads any difference directly.
type natsFeed struct {
	nc       *nats.Conn
	own      bool
	js       jetstream.JetStream
	bucket   string
	subject  string // "$KV.<bucket>."
	replicas int
	logger   *slog.Logger

	mu       sync.Mutex
	cursor   uint64 // every message up to this stream sequence is in the set
	watched  uint64 // the highest sequence the watch has brought (or loaded)
	prevHead uint64 // the bucket's last sequence at the previous confirm
	lagging  int    // consecutive confirms at which the watch had not brought prevHead
	watcher  jetstream.KeyWatcher
	stalled  chan error // the watch's broken channel, for confirm to restart it
	stopped  chan struct{}
	status   chan nats.Status // reconnects, while a watch runs
}

func newNATSFeed(nc *nats.Conn, own bool, o Options) (*natsFeed, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		if own {
			nc.Close()
		}
		return nil, fmt.Errorf("cookiestore: %w", err)
	}
	return &natsFeed{nc: nc, own: own, js: js, bucket: o.Name, subject: "$KV." + o.Name + ".", replicas: o.Replicas, logger: o.Logger}, nil
}

func (f *natsFeed) kv(ctx context.Context) (jetstream.KeyValue, error) {
	// Created (or found) on every start, so a server that lost the bucket
	// gets it back.
	cfg := jetstream.KeyValueConfig{
		Bucket:      f.bucket,
		Description: "unstuck cookie-session revocations",
		History:     1,
		Replicas:    f.replicas,
		// Needed for per-key TTLs; markers live briefly.
		LimitMarkerTTL: time.Second,
	}
	return retry.Create(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return f.js.CreateOrUpdateKeyValue(ctx, cfg)
	})
}

// publish is repeated after a lost connection: a revocation is a put of
// its key, and applying it twice changes nothing.
func (f *natsFeed) publish(ctx context.Context, e entry) error {
	ttl := time.Until(time.UnixMilli(e.until)).Truncate(time.Second) + time.Second
	return retry.Do(ctx, func(ctx context.Context) error {
		return retry.OnConn(ctx, f.nc, func(ctx context.Context) error {
			_, err := f.js.PublishMsg(ctx, &nats.Msg{Subject: f.subject + e.name(), Data: []byte(e.value())}, jetstream.WithMsgTTL(max(ttl, time.Second)))
			return err
		})
	})
}

// start opens the bucket, loads every live entry through a new watch and
// keeps applying what the watch brings. A connection change while it runs
// aborts it (a request sent just before a server restart is never
// answered; waiting for its timeout would leave the instance deaf for
// seconds), and the Store starts again.
func (f *natsFeed) start(parent context.Context, s *set) (<-chan error, error) {
	if !f.nc.IsConnected() {
		return nil, errors.New("cookiestore: NATS not connected")
	}
	ctx, cancel := context.WithTimeout(parent, 30*time.Second)
	defer cancel()
	changed := f.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CONNECTED)
	defer f.nc.RemoveStatusListener(changed)
	go func() {
		select {
		case <-changed:
			cancel()
		case <-ctx.Done():
		}
	}()
	kv, err := f.kv(ctx)
	if err != nil {
		return nil, err
	}
	head, err := f.head(ctx)
	if err != nil {
		return nil, err
	}
	// The watch outlives start: its own context is the Store's.
	w, err := kv.WatchAll(parent)
	if err != nil {
		return nil, err
	}
	// The initial values end with a nil entry.
	seen := uint64(0)
	for loading := true; loading; {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("cookiestore: revocation watch closed while loading")
			}
			if e == nil {
				loading = false
				break
			}
			f.applyEntry(s, e.Key(), e.Value(), e.Operation())
			seen = max(seen, e.Revision())
		case <-ctx.Done():
			_ = w.Stop()
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	if head < f.cursor {
		f.logger.Error("cookiestore: the NATS revocation bucket went back in time: the server lost data (use file storage and replicas); revocations held in memory are kept", "bucket", f.bucket, "had", f.cursor, "now", head)
	}
	// Everything up to head was in the bucket when the watch began, and
	// the watch delivered the last value of every key.
	f.cursor = max(head, seen)
	f.watched, f.prevHead, f.lagging = f.cursor, 0, 0
	f.watcher, f.stalled, f.stopped = w, make(chan error, 1), make(chan struct{})
	broken, stopped := f.stalled, f.stopped
	// The watch's consumer would notice a reconnect only after missing
	// heartbeats (seconds); a fresh watch after each reconnect loads and
	// follows at once. StatusChanged adds a listener without taking the
	// caller's own handlers.
	f.status = f.nc.StatusChanged(nats.CONNECTED)
	status := f.status
	f.mu.Unlock()
	go func() {
		if _, ok := <-status; ok {
			f.restart(errors.New("cookiestore: NATS reconnected; reloading revocations"))
		}
	}()
	go func() {
		defer close(stopped)
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			f.applyEntry(s, e.Key(), e.Value(), e.Operation())
			f.mu.Lock()
			f.cursor = max(f.cursor, e.Revision())
			f.watched = max(f.watched, e.Revision())
			f.mu.Unlock()
		}
		select {
		case broken <- errors.New("cookiestore: revocation watch closed"):
		default:
		}
	}()
	return broken, nil
}

func (f *natsFeed) applyEntry(s *set, key string, value []byte, op jetstream.KeyValueOp) {
	if op != jetstream.KeyValuePut {
		return // deletes and TTL markers: the entry's own until governs
	}
	if e, ok := parseEntry(key, string(value)); ok {
		s.apply(e)
	}
}

func (f *natsFeed) head(ctx context.Context) (uint64, error) {
	stream, err := f.js.Stream(ctx, "KV_"+f.bucket)
	if err != nil {
		return 0, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// confirm catches up from the stream itself when the bucket's last
// sequence is ahead of what this instance has seen (messages in flight, or
// missed). A watch that has still not brought what the bucket held at the
// previous confirm, twice in a row, is stuck: it is restarted (a fresh
// load), not trusted.
func (f *natsFeed) confirm(ctx context.Context, s *set) error {
	// The cursor before the head: the watch may move it past the head
	// read meanwhile, which is not the bucket going back in time.
	f.mu.Lock()
	cur := f.cursor
	f.mu.Unlock()
	head, err := f.head(ctx)
	if err != nil {
		return err
	}
	if head < cur {
		f.restart(errors.New("cookiestore: revocation bucket went back in time"))
		return errors.New("cookiestore: revocation bucket went back in time; reloading")
	}
	if head > cur {
		if _, err := f.read(ctx, s, cur+1, head); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.cursor = max(f.cursor, head)
	if f.watched < f.prevHead {
		f.lagging++
	} else {
		f.lagging = 0
	}
	f.prevHead = head
	stuck := f.lagging >= 2
	f.mu.Unlock()
	if stuck {
		f.restart(errStalled)
	}
	return nil
}

// read applies the stream's messages from sequence from through to, with a
// short-lived ordered consumer, and returns how many it found.
func (f *natsFeed) read(ctx context.Context, s *set, from, to uint64) (int, error) {
	cons, err := f.js.OrderedConsumer(ctx, "KV_"+f.bucket, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return 0, err
	}
	found := 0
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return found, err
		}
		n, last, pending := 0, uint64(0), uint64(0)
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			last, pending = meta.Sequence.Stream, meta.NumPending
			op := jetstream.KeyValuePut
			if msg.Headers().Get("KV-Operation") != "" || msg.Headers().Get(jetstream.MarkerReasonHeader) != "" {
				op = jetstream.KeyValueDelete
			}
			f.applyEntry(s, strings.TrimPrefix(msg.Subject(), f.subject), msg.Data(), op)
			found++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return found, err
		}
		if n == 0 || pending == 0 || last >= to {
			return found, nil
		}
	}
}

// restart makes the Store stop and start the watch.
func (f *natsFeed) restart(err error) {
	f.mu.Lock()
	ch := f.stalled
	f.mu.Unlock()
	if ch != nil {
		select {
		case ch <- err:
		default:
		}
	}
}

func (f *natsFeed) stop() {
	f.mu.Lock()
	w, stopped, status := f.watcher, f.stopped, f.status
	f.watcher, f.stalled, f.stopped, f.status = nil, nil, nil, nil
	f.mu.Unlock()
	if status != nil {
		f.nc.RemoveStatusListener(status)
	}
	if w != nil {
		_ = w.Stop()
		<-stopped
	}
}

func (f *natsFeed) close() {
	if f.own {
		f.nc.Close()
	}
}
