package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unstuck-dev/unstuck/internal/jsread"
	"github.com/unstuck-dev/unstuck/internal/retry"
	"github.com/unstuck-dev/unstuck/realtime"
)

// Presence in NATS: a key per present client, "c.<channel>.<client>",
// written once on join with the instance that holds it, and a key per
// instance, "i.<instance>", holding its heartbeat's expiry. Heartbeats
// rewrite only the instance key, one write per instance rather than one
// per client. A reader lists the channel's keys in one request from the
// bucket's subject index and reads them, on a cluster from the bucket's
// leader (internal/jsread: a replica may not hold a join just written); it
// drops entries whose instance's heartbeat lapsed, and purges them, so a
// dead instance's entries vanish within the TTL.
func (b *Broker) presenceKV(ctx context.Context) (jetstream.KeyValue, error) {
	b.kvMu.Lock()
	defer b.kvMu.Unlock()
	if b.kv != nil {
		return b.kv, nil
	}
	kv, err := retry.Create(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: b.cfg.PresenceBucket, Replicas: b.cfg.Replicas, Storage: jetstream.MemoryStorage,
		})
	})
	if err != nil {
		return nil, b.wrap("presence bucket", err)
	}
	read, err := jsread.OpenKV(ctx, b.js, b.cfg.PresenceBucket)
	if err != nil {
		return nil, b.wrap("presence bucket", err)
	}
	b.kv, b.kvRead = kv, read
	return kv, nil
}

// withPresence runs op on the presence bucket. The bucket is in memory, so
// a restarted server has lost it, and the broker may learn of the restart
// (Run's reconnect) only after a call: such a call re-creates the bucket,
// forgets which entries it wrote, and runs op again, rather than fail.
// Calls whose connection was lost are repeated too: each op only puts,
// purges or reads keys.
func (b *Broker) withPresence(ctx context.Context, op func(ctx context.Context, kv jetstream.KeyValue) error) error {
	return retry.Do(ctx, func(ctx context.Context) error {
		for first := true; ; first = false {
			kv, err := b.presenceKV(ctx)
			if err != nil {
				return err
			}
			err = op(ctx, kv)
			if !first || !bucketLost(err) {
				return err
			}
			b.kvMu.Lock()
			if b.kv == kv {
				b.kv = nil
				clear(b.written)
			}
			b.kvMu.Unlock()
		}
	})
}

// bucketLost: the server no longer has the bucket. Key listing reports
// it with the older nats package's error; a put or purge, which publishes
// to the bucket's subject, as no stream answering it (after nats.go's own
// retries, half a second: repeating the call on the lost bucket's handle
// would spend the caller's deadline before the bucket is made again).
func bucketLost(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		errors.Is(err, nats.ErrStreamNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

type natsPresence struct {
	User     string `json:"u"`
	Instance string `json:"i"`
}

func (b *Broker) presenceKey(channel, client string) string {
	return "c." + b.token(channel) + "." + client
}

// SetPresence implements realtime.PresenceStore.
func (b *Broker) SetPresence(ctx context.Context, channel string, entries []realtime.PresenceEntry, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	return b.wrap("presence", b.withPresence(ctx, func(ctx context.Context, kv jetstream.KeyValue) error {
		return b.setPresence(ctx, kv, channel, entries, ttl)
	}))
}

func (b *Broker) setPresence(ctx context.Context, kv jetstream.KeyValue, channel string, entries []realtime.PresenceEntry, ttl time.Duration) error {
	exp := strconv.FormatInt(time.Now().Add(ttl).UnixMilli(), 10)
	if _, err := kv.Put(ctx, "i."+b.instance, []byte(exp)); err != nil {
		return err
	}
	for _, e := range entries {
		key := b.presenceKey(channel, e.Client)
		b.kvMu.Lock()
		_, done := b.written[key]
		b.kvMu.Unlock()
		if done {
			continue
		}
		v, _ := json.Marshal(natsPresence{User: e.User, Instance: b.instance})
		if _, err := kv.Put(ctx, key, v); err != nil {
			return err
		}
		b.kvMu.Lock()
		b.written[key] = struct{}{}
		b.kvMu.Unlock()
	}
	return nil
}

// RemovePresence implements realtime.PresenceStore.
func (b *Broker) RemovePresence(ctx context.Context, channel string, clients []string) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	return b.wrap("presence", b.withPresence(ctx, func(ctx context.Context, kv jetstream.KeyValue) error {
		for _, c := range clients {
			key := b.presenceKey(channel, c)
			b.kvMu.Lock()
			delete(b.written, key)
			b.kvMu.Unlock()
			if err := kv.Purge(ctx, key); err != nil {
				return err
			}
		}
		return nil
	}))
}

// Presence implements realtime.PresenceStore.
func (b *Broker) Presence(ctx context.Context, channel string) ([]realtime.PresenceEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	var out []realtime.PresenceEntry
	err := b.withPresence(ctx, func(ctx context.Context, kv jetstream.KeyValue) (err error) {
		out, err = b.presence(ctx, kv, channel)
		return err
	})
	if err != nil {
		return nil, b.wrap("presence", err)
	}
	return out, nil
}

func (b *Broker) presence(ctx context.Context, kv jetstream.KeyValue, channel string) ([]realtime.PresenceEntry, error) {
	prefix := "c." + b.token(channel) + "."
	b.kvMu.Lock()
	read := b.kvRead // reads by the bucket's name: any handle's will do
	b.kvMu.Unlock()
	keys, err := read.Keys(ctx, prefix+"*")
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	alive := map[string]int64{}
	out := []realtime.PresenceEntry{}
	for _, k := range keys {
		v, _, err := read.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // left, or purged: the listing still names it
		}
		if err != nil {
			return nil, err
		}
		var p natsPresence
		if json.Unmarshal(v, &p) != nil {
			continue
		}
		exp, seen := alive[p.Instance]
		if !seen {
			if iv, _, err := read.Get(ctx, "i."+p.Instance); err == nil {
				exp, _ = strconv.ParseInt(string(iv), 10, 64)
			}
			alive[p.Instance] = exp
		}
		if exp <= now {
			_ = kv.Purge(ctx, k) // its instance died; best effort
			continue
		}
		out = append(out, realtime.PresenceEntry{Client: strings.TrimPrefix(k, prefix), User: p.User, Expires: exp})
	}
	return out, nil
}
