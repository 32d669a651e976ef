// Package redisjobs is the Redis backend of package jobs: payloads as lists
// of bounded chunks, job records in hashes updated by compare-and-set
// scripts (with a pub/sub notice per change), and per-kind queues in
// Streams consumer groups, where XAUTOCLAIM hands a job whose worker went
// silent for the visibility timeout to another worker.
//
// Keys carry hash tags ({id}, {kind}) so that every script touches one
// slot, which keeps the backend usable on Redis Cluster.
//
// # Reconnects
//
// A request whose connection died (a restarted server, a pooled
// connection that was already dead) is sent again on a fresh one, within
// the caller's deadline, because every call is safe to repeat: reads;
// record writes, which are compare-and-set on the revision and recognise
// their own earlier application (the same data at the next revision);
// payload chunks, appended only at the list length they expect; Enqueue,
// keyed by a token chosen before the call and remembered for a minute, so
// a repeat never queues the job twice; Extend, Ack and Retry, which act
// only on a delivery still pending; and Claim, whose lost delivery is not
// lost but handed out again after the visibility timeout.
//
//	backend, err := redisjobs.New(ctx, redisjobs.Options{URL: "redis://127.0.0.1:6379"})
//	defer backend.Close()
//	m, err := jobs.New(jobs.Config{Backend: backend})
package redisjobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/replicawait"
	"github.com/unstuck-dev/unstuck/internal/retry"
	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
	"github.com/unstuck-dev/unstuck/jobs"
)

// Options configures the backend: give URL or Client, not both. Every
// other field's zero value is a sensible default.
type Options struct {
	// URL names the Redis server or Cluster:
	// redis://[:PASSWORD@]HOST:PORT[/DB], rediss:// for TLS,
	// ?addr=HOST:PORT for more cluster seeds. The backend opens its own
	// client, and Close closes it.
	URL string
	// Client is a ready rueidis client that the caller keeps owning:
	// Close leaves it open.
	Client rueidis.Client

	// Prefix starts every key. Default "jobs".
	Prefix string
	// VisibilityTimeout is how long a claimed job may go without a
	// heartbeat before another worker claims it. Default 30s.
	VisibilityTimeout time.Duration
	// Retention is how long a job record (and, as a safety net, a
	// payload) is kept after its last change. Default 7 days.
	Retention time.Duration
	// ChunkSize is the size of each payload chunk, so that no single
	// command moves a large value and stalls Redis. Default 256 KiB.
	ChunkSize int
	// StaleConsumerAfter: when a worker leaves, consumers of the group
	// idle this long and holding no jobs (workers of processes that
	// crashed) are deleted too. Live workers poll every second. Default
	// 1 hour.
	StaleConsumerAfter time.Duration

	// Durability makes job records and queue entries wait for replicas
	// before a write is acknowledged, so a failover cannot lose a job the
	// caller was told exists. Off by default.
	Durability Durability
}

// group is the consumer group every instance's workers join.
const group = "workers"

// uploadTTL expires the chunks of an upload whose instance died mid-way.
const uploadTTL = time.Hour

// enqueueTTL is how long an Enqueue's token is remembered: far longer
// than the repeats of one call (retry.Attempts within its deadline).
const enqueueTTL = time.Minute

// Backend implements jobs.Backend over Redis.
type Backend struct {
	c    rueidis.Client
	own  bool // Close closes c
	cfg  Options
	wait replicawait.Policy

	mu      sync.Mutex
	groups  map[string]bool   // kinds whose consumer group exists
	cursors map[string]string // XAUTOCLAIM cursor per kind
}

var _ jobs.Backend = (*Backend)(nil)

// New returns a backend on cfg.Client, or on a client of its own
// connected to cfg.URL (checked within ctx); it creates keys lazily.
func New(ctx context.Context, cfg Options) (*Backend, error) {
	if err := connect.Either(cfg.URL, cfg.Client != nil); err != nil {
		return nil, fmt.Errorf("redisjobs: %w", err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "jobs"
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("redisjobs: Options.Prefix %q must not contain braces", cfg.Prefix)
	}
	if cfg.VisibilityTimeout <= 0 {
		cfg.VisibilityTimeout = 30 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 256 << 10
	}
	if cfg.StaleConsumerAfter <= 0 {
		cfg.StaleConsumerAfter = time.Hour
	}
	b := &Backend{c: cfg.Client, cfg: cfg, groups: map[string]bool{}, cursors: map[string]string{},
		wait: replicawait.Policy{Replicas: cfg.Durability.Replicas, Timeout: cfg.Durability.Timeout}}
	if cfg.URL != "" {
		c, err := connect.Redis(ctx, cfg.URL, connect.RedisOptions{})
		if err != nil {
			return nil, fmt.Errorf("redisjobs: %w", err)
		}
		b.c, b.own = c, true
	}
	return b, nil
}

// Close closes the client the backend opened from Options.URL; a client
// given as Options.Client stays open. Stop the jobs.Manager first.
func (b *Backend) Close() error {
	if b.own {
		b.c.Close()
	}
	return nil
}

func (b *Backend) statusKey(id string) string  { return b.cfg.Prefix + ":status:{" + id + "}" }
func (b *Backend) payloadKey(id string) string { return b.cfg.Prefix + ":payload:{" + id + "}" }
func (b *Backend) queueKey(kind string) string { return b.cfg.Prefix + ":queue:{" + kind + "}" }
func (b *Backend) delayKey(kind string) string { return b.cfg.Prefix + ":delayed:{" + kind + "}" }
func (b *Backend) enqueueKey(kind, token string) string {
	return b.cfg.Prefix + ":enqueued:{" + kind + "}:" + token
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

var (
	// createScript and updateScript, repeated (ARGV[4] = "1") after a
	// lost reply, recognise their own write: the same data at the
	// revision they would have written.
	createScript = replicawait.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[3] == '1' then
    local cur = redis.call('HMGET', KEYS[1], 'rec', 'rev')
    if cur[1] == ARGV[1] and cur[2] == '1' then return 1 end
  end
  return -1
end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'rev', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[1], '1:' .. ARGV[1])
return 1`)
	updateScript = replicawait.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'rev')
if not cur then return -2 end
if cur ~= ARGV[2] then
  if ARGV[4] == '1' and tonumber(cur) == tonumber(ARGV[2]) + 1 and redis.call('HGET', KEYS[1], 'rec') == ARGV[1] then
    return tonumber(cur)
  end
  return -1
end
local n = tonumber(cur) + 1
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'rev', n)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', KEYS[1], n .. ':' .. ARGV[1])
return n`)
)

// GetRecord reads the hash's record and revision.
func (b *Backend) GetRecord(ctx context.Context, id string) ([]byte, uint64, error) {
	vals, err := retry.Value(ctx, func(ctx context.Context) ([]rueidis.RedisMessage, error) {
		return b.c.Do(ctx, b.c.B().Hmget().Key(b.statusKey(id)).Field("rec", "rev").Build()).ToArray()
	})
	if err != nil {
		return nil, 0, err
	}
	if len(vals) != 2 || vals[0].IsNil() || vals[1].IsNil() {
		return nil, 0, jobs.ErrNotFound
	}
	data, err := vals[0].AsBytes()
	if err != nil {
		return nil, 0, err
	}
	rev, err := vals[1].AsUint64()
	if err != nil {
		return nil, 0, fmt.Errorf("redisjobs: bad revision in %s: %w", b.statusKey(id), err)
	}
	return data, rev, nil
}

// CreateRecord creates the hash at revision 1 unless it exists.
func (b *Backend) CreateRecord(ctx context.Context, id string, data []byte) (uint64, error) {
	var n int64
	err := retry.Repeat(ctx, func(ctx context.Context, repeat bool) error {
		res, err := b.wait.Exec(ctx, b.c, createScript, []string{b.statusKey(id)},
			[]string{string(data), ms(b.cfg.Retention), flag(repeat)})
		if err != nil {
			return err
		}
		n, err = res.AsInt64()
		return err
	})
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, jobs.ErrExists
	}
	return 1, nil
}

// UpdateRecord writes the record if rev is current, bumps the revision,
// renews the expiry and publishes the new value.
func (b *Backend) UpdateRecord(ctx context.Context, id string, data []byte, rev uint64) (uint64, error) {
	var n int64
	err := retry.Repeat(ctx, func(ctx context.Context, repeat bool) error {
		res, err := b.wait.Exec(ctx, b.c, updateScript, []string{b.statusKey(id)},
			[]string{string(data), strconv.FormatUint(rev, 10), ms(b.cfg.Retention), flag(repeat)})
		if err != nil {
			return err
		}
		n, err = res.AsInt64()
		return err
	})
	switch {
	case err != nil:
		return 0, err
	case n == -2:
		return 0, jobs.ErrNotFound
	case n < 0:
		return 0, jobs.ErrConflict
	}
	return uint64(n), nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// WatchRecord subscribes to the record's channel. Redis pub/sub drops
// messages while disconnected; the channel then closes and jobs.Manager
// falls back to re-reading.
func (b *Backend) WatchRecord(ctx context.Context, id string) (<-chan jobs.RecordValue, error) {
	out := make(chan jobs.RecordValue, 1)
	go func() {
		defer close(out)
		_ = b.c.Receive(ctx, b.c.B().Subscribe().Channel(b.statusKey(id)).Build(), func(m rueidis.PubSubMessage) {
			if v, ok := parseNotice(m.Message); ok {
				jobs.SendLatest(out, v)
			}
		})
	}()
	return out, nil
}

// parseNotice decodes "REV:DATA" as published by the scripts. Anyone who
// can publish to the channel can send anything, so it is checked.
func parseNotice(msg string) (jobs.RecordValue, bool) {
	revStr, data, ok := strings.Cut(msg, ":")
	if !ok || revStr == "" || len(revStr) > 20 {
		return jobs.RecordValue{}, false
	}
	rev, err := strconv.ParseUint(revStr, 10, 64)
	if err != nil || rev == 0 {
		return jobs.RecordValue{}, false
	}
	return jobs.RecordValue{Data: []byte(data), Rev: rev}, true
}

// VisibilityTimeout is Options.VisibilityTimeout.
func (b *Backend) VisibilityTimeout() time.Duration { return b.cfg.VisibilityTimeout }

// ensureGroup creates the kind's stream and consumer group once. Reading
// from "0" makes jobs queued before the group existed visible.
func (b *Backend) ensureGroup(ctx context.Context, kind string) error {
	b.mu.Lock()
	ok := b.groups[kind]
	b.mu.Unlock()
	if ok {
		return nil
	}
	err := retry.Do(ctx, func(ctx context.Context) error {
		err := b.c.Do(ctx, b.c.B().XgroupCreate().Key(b.queueKey(kind)).Group(group).Id("0").Mkstream().Build()).Error()
		if err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.groups[kind] = true
	b.mu.Unlock()
	return nil
}

func (b *Backend) forgetGroup(kind string, err error) {
	if err != nil && strings.Contains(err.Error(), "NOGROUP") {
		b.mu.Lock()
		delete(b.groups, kind)
		b.mu.Unlock()
	}
}

// Enqueue adds the job ID to the kind's stream, once: the call's token,
// chosen before it is sent, makes a repeat after a lost reply a no-op.
func (b *Backend) Enqueue(ctx context.Context, kind, id string) error {
	if err := b.ensureGroup(ctx, kind); err != nil {
		return err
	}
	keys := []string{b.queueKey(kind), b.enqueueKey(kind, newToken())}
	return retry.Do(ctx, func(ctx context.Context) error {
		_, err := b.wait.Exec(ctx, b.c, enqueueScript, keys, []string{id, ms(enqueueTTL)})
		return err
	})
}

func newToken() string {
	var t [12]byte
	_, _ = rand.Read(t[:])
	return hex.EncodeToString(t[:])
}

var enqueueScript = replicawait.NewScript(`
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[1])
end
return 1`)

var (
	// promoteScript moves retries whose delay has passed back into the
	// stream and returns the milliseconds until the next one is due (-1:
	// none). It uses the server's clock, so instances' clocks may differ.
	promoteScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(ids) do
  redis.call('XADD', KEYS[2], '*', 'id', id)
  redis.call('ZREM', KEYS[1], id)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return -1 end
return math.max(tonumber(nxt[2]) - now, 0)`)
	// retryScript schedules the job again and removes this delivery, in
	// one step so the job is never in neither place.
	// A repeat finds the delivery no longer pending and does nothing, so
	// the job is never scheduled twice.
	retryScript = rueidis.NewLuaScript(`
if redis.call('XACK', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[2])
return 1`)
	// extendScript resets the entry's idle time only while this consumer
	// still owns it; XCLAIM alone would steal it back from a new owner.
	extendScript = rueidis.NewLuaScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1`)
	// leaveScript deletes a consumer only if it holds no pending entry:
	// XGROUP DELCONSUMER would drop those entries, and their jobs with them.
	leaveScript = rueidis.NewLuaScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1`)
	ackScript = rueidis.NewLuaScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1`)
)

// Claim takes, in order: a delayed retry that is due, a job whose claimer
// has been silent for the visibility timeout (XAUTOCLAIM), or a new job
// (XREADGROUP, blocking up to a second at a time until ctx ends).
func (b *Backend) Claim(ctx context.Context, kind, worker string) (jobs.Delivery, error) {
	stream := b.queueKey(kind)
	block := min(time.Second, b.cfg.VisibilityTimeout)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := b.ensureGroup(ctx, kind); err != nil {
			return nil, err
		}
		wait := block
		due, err := retry.Value(ctx, func(ctx context.Context) (int64, error) {
			return promoteScript.Exec(ctx, b.c, []string{b.delayKey(kind), stream}, nil).AsInt64()
		})
		if err != nil {
			return nil, err
		}
		if due >= 0 {
			// Wake up for the next retry instead of blocking past it.
			wait = max(min(wait, time.Duration(due)*time.Millisecond), time.Millisecond)
		}
		d, err := b.autoclaim(ctx, kind, worker)
		if d != nil || err != nil {
			b.forgetGroup(kind, err)
			return d, err
		}
		streams, err := retry.Value(ctx, func(ctx context.Context) (map[string][]rueidis.XRangeEntry, error) {
			return b.c.Do(ctx, b.c.B().Xreadgroup().Group(group, worker).Count(1).Block(wait.Milliseconds()).
				Streams().Key(stream).Id(">").Build()).AsXRead()
		})
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			b.forgetGroup(kind, err)
			return nil, err
		}
		for _, e := range streams[stream] {
			if d := b.delivery(ctx, kind, worker, e); d != nil {
				return d, nil
			}
		}
	}
}

func (b *Backend) autoclaim(ctx context.Context, kind, worker string) (jobs.Delivery, error) {
	b.mu.Lock()
	cursor := b.cursors[kind]
	b.mu.Unlock()
	if cursor == "" {
		cursor = "0-0"
	}
	arr, err := retry.Value(ctx, func(ctx context.Context) ([]rueidis.RedisMessage, error) {
		return b.c.Do(ctx, b.c.B().Xautoclaim().Key(b.queueKey(kind)).Group(group).Consumer(worker).
			MinIdleTime(ms(b.cfg.VisibilityTimeout)).Start(cursor).Count(1).Build()).ToArray()
	})
	if err != nil {
		return nil, err
	}
	if len(arr) < 2 {
		return nil, errors.New("redisjobs: unexpected XAUTOCLAIM reply")
	}
	next, err := arr[0].ToString()
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.cursors[kind] = next
	b.mu.Unlock()
	entries, err := arr[1].AsXRange()
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if d := b.delivery(ctx, kind, worker, e); d != nil {
			return d, nil
		}
	}
	return nil, nil
}

// delivery wraps a stream entry; an entry without a valid job ID (written
// by something else) is dropped rather than handed out forever.
func (b *Backend) delivery(ctx context.Context, kind, worker string, e rueidis.XRangeEntry) jobs.Delivery {
	d := &delivery{b: b, kind: kind, worker: worker, entry: e.ID, id: e.FieldValues["id"]}
	if d.id == "" || strings.ContainsAny(d.id, "{}:") {
		_ = d.Ack(ctx)
		return nil
	}
	return d
}

type delivery struct {
	b            *Backend
	kind, worker string
	entry, id    string
}

func (d *delivery) JobID() string { return d.id }

func (d *delivery) Extend(ctx context.Context) error {
	n, err := retry.Value(ctx, func(ctx context.Context) (int64, error) {
		return extendScript.Exec(ctx, d.b.c, []string{d.b.queueKey(d.kind)}, []string{group, d.entry, d.worker}).AsInt64()
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("redisjobs: delivery %s of job %s: %w", d.entry, d.id, jobs.ErrConflict)
	}
	return nil
}

func (d *delivery) Ack(ctx context.Context) error {
	return retry.Do(ctx, func(ctx context.Context) error {
		return ackScript.Exec(ctx, d.b.c, []string{d.b.queueKey(d.kind)}, []string{group, d.entry}).Error()
	})
}

func (d *delivery) Retry(ctx context.Context, delay time.Duration) error {
	return retry.Do(ctx, func(ctx context.Context) error {
		return retryScript.Exec(ctx, d.b.c, []string{d.b.delayKey(d.kind), d.b.queueKey(d.kind)},
			[]string{group, d.entry, d.id, ms(max(delay, 0))}).Error()
	})
}

var _ jobs.Leaver = (*Backend)(nil)

// Leave deletes this worker's consumer from the kind's group unless it
// still holds a job, and prunes consumers left by crashed processes.
func (b *Backend) Leave(ctx context.Context, kind, worker string) error {
	stream := b.queueKey(kind)
	leave := func(name string) error {
		return retry.Do(ctx, func(ctx context.Context) error {
			return leaveScript.Exec(ctx, b.c, []string{stream}, []string{group, name}).Error()
		})
	}
	if err := leave(worker); err != nil {
		return err
	}
	infos, err := retry.Value(ctx, func(ctx context.Context) ([]rueidis.RedisMessage, error) {
		return b.c.Do(ctx, b.c.B().XinfoConsumers().Key(stream).Group(group).Build()).ToArray()
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		m, err := info.AsMap()
		if err != nil {
			return err
		}
		nameMsg, pendingMsg, idleMsg := m["name"], m["pending"], m["idle"]
		name, _ := nameMsg.ToString()
		pending, _ := pendingMsg.AsInt64()
		idle, _ := idleMsg.AsInt64()
		if name == "" || pending > 0 || time.Duration(idle)*time.Millisecond < b.cfg.StaleConsumerAfter {
			continue
		}
		if err := leave(name); err != nil {
			return err
		}
	}
	return nil
}
