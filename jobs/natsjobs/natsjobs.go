// Package natsjobs is the NATS JetStream backend of package jobs: payloads
// in an Object Store, job records in a Key-Value bucket (revisions give the
// compare-and-set), and the queue in a work-queue stream whose durable pull
// consumers redeliver a job when its worker stops acknowledging it.
//
//	backend, err := natsjobs.New(ctx, natsjobs.Options{URL: "nats://127.0.0.1:4222"})
//	defer backend.Close()
//	m, err := jobs.New(jobs.Config{Backend: backend})
//
// # Reconnects
//
// The NATS client holds requests while it reconnects, so most calls ride
// out a server restart by themselves. A call whose request or answer was
// lost all the same is sent again, within the caller's deadline, when that
// cannot apply it twice: reads, payload deletes and consumer creation;
// CreateRecord and UpdateRecord, which on a repeat recognise their own
// earlier write (the key already holds exactly their data); Enqueue,
// whose message carries an id chosen before the call, which JetStream
// deduplicates. PutPayload is not repeated: its reader is consumed, and a
// failed upload leaves nothing behind to clean up.
//
// # Clusters
//
// With Replicas > 1, records are read from the status bucket's leader
// (internal/jsread), so a worker on another instance always sees the
// record just written, and payloads are read chunk by chunk from the
// payload stream's leader: the Object Store's own reader runs a consumer
// that may sit on a replica not yet holding the last chunks, and stops
// early.
package natsjobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unstuck-dev/unstuck/internal/jsread"
	"github.com/unstuck-dev/unstuck/internal/retry"
	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
	"github.com/unstuck-dev/unstuck/jobs"
)

// Options configures the backend: give URL or Client, not both. Every
// other field's zero value is a sensible default.
type Options struct {
	// URL names the NATS server, nats://[USER:PASSWORD@]HOST:PORT. The
	// backend opens its own connection, which reconnects after an
	// outage, and Close closes it.
	URL string
	// Client is a NATS connection that the caller keeps owning: Close
	// leaves it open.
	Client *nats.Conn

	// Name prefixes the stream, buckets and subjects, so that several
	// independent job systems can share one NATS account. Default "jobs".
	// Letters, digits, - and _ only.
	Name string
	// VisibilityTimeout is the consumers' AckWait: a claimed job whose
	// worker neither finishes nor heartbeats within it goes to another
	// worker. Default 30s. Every instance must use the same value: the
	// consumer is shared, and each instance writes its configuration.
	VisibilityTimeout time.Duration
	// Retention is how long a job record (and, as a safety net, a
	// payload) is kept after its last change. Default 7 days.
	Retention time.Duration
	// Replicas of the stream and buckets in a NATS cluster. Default 1.
	Replicas int
}

// Backend implements jobs.Backend over JetStream.
type Backend struct {
	nc      *nats.Conn
	own     bool // Close closes nc
	js      jetstream.JetStream
	cfg     Options
	kv      jetstream.KeyValue
	records *jsread.KV // reads of kv that see every acknowledged write
	obs     jetstream.ObjectStore
	objects jetstream.Stream // the Object Store's own stream
	payload *jsread.Stream   // reads of objects, likewise
	stream  jetstream.Stream
	subject string

	mu        sync.Mutex
	consumers map[string]jetstream.Consumer
}

var _ jobs.Backend = (*Backend)(nil)

// New creates (or updates to cfg) the stream and buckets on cfg.Client,
// or on a connection of its own to cfg.URL.
func New(ctx context.Context, cfg Options) (*Backend, error) {
	if err := connect.Either(cfg.URL, cfg.Client != nil); err != nil {
		return nil, fmt.Errorf("natsjobs: %w", err)
	}
	if cfg.Name == "" {
		cfg.Name = "jobs"
	}
	if !validName(cfg.Name) {
		return nil, fmt.Errorf("natsjobs: Options.Name %q: use letters, digits, - and _", cfg.Name)
	}
	if cfg.VisibilityTimeout <= 0 {
		cfg.VisibilityTimeout = 30 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	b := &Backend{nc: cfg.Client, cfg: cfg, subject: cfg.Name + ".queue", consumers: map[string]jetstream.Consumer{}}
	if cfg.URL != "" {
		nc, err := connect.NATS(ctx, cfg.URL, "unstuck jobs")
		if err != nil {
			return nil, fmt.Errorf("natsjobs: %w", err)
		}
		b.nc, b.own = nc, true
	}
	if err := b.setUp(ctx); err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}

// Close closes the connection the backend opened from Options.URL; a
// connection given as Options.Client stays open. Stop the jobs.Manager
// first.
func (b *Backend) Close() error {
	if b.own {
		b.nc.Close()
	}
	return nil
}

// setUp creates or updates the stream and buckets.
func (b *Backend) setUp(ctx context.Context) error {
	cfg := b.cfg
	var err error
	if b.js, err = jetstream.New(b.nc); err != nil {
		return fmt.Errorf("natsjobs: %w", err)
	}
	// Each create waits out a cluster that cannot place the replicas yet.
	b.kv, err = retry.Create(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: cfg.Name + "_status", Description: "job status records",
			History: 1, TTL: cfg.Retention, Replicas: cfg.Replicas, Storage: jetstream.FileStorage,
		})
	})
	if err != nil {
		return fmt.Errorf("natsjobs: status bucket: %w", err)
	}
	if b.records, err = jsread.OpenKV(ctx, b.js, cfg.Name+"_status"); err != nil {
		return fmt.Errorf("natsjobs: status bucket: %w", err)
	}
	b.obs, err = retry.Create(ctx, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return b.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: cfg.Name + "_payloads", Description: "job payloads",
			TTL: cfg.Retention, Replicas: cfg.Replicas, Storage: jetstream.FileStorage,
		})
	})
	if err != nil {
		return fmt.Errorf("natsjobs: payload bucket: %w", err)
	}
	// The Object Store keeps a deleted object's metadata as a tombstone;
	// DeletePayload purges it through the bucket's stream so that finished
	// jobs leave nothing behind.
	b.objects, err = b.js.Stream(ctx, "OBJ_"+cfg.Name+"_payloads")
	if err != nil {
		return fmt.Errorf("natsjobs: payload stream: %w", err)
	}
	b.payload = jsread.Wrap(b.js, b.objects)
	b.stream, err = retry.Create(ctx, func(ctx context.Context) (jetstream.Stream, error) {
		return b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: cfg.Name + "_queue", Description: "job queue",
			Subjects:  []string{b.subject + ".>"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, MaxAge: cfg.Retention,
		})
	})
	if err != nil {
		return fmt.Errorf("natsjobs: queue stream: %w", err)
	}
	return nil
}

// ObjectStore is the payload bucket, for inspection and tests.
func (b *Backend) ObjectStore() jetstream.ObjectStore { return b.obs }

// GetRecord reads a record and its KV revision.
func (b *Backend) GetRecord(ctx context.Context, id string) ([]byte, uint64, error) {
	var data []byte
	var rev uint64
	err := retry.Do(ctx, func(ctx context.Context) (err error) {
		data, rev, err = b.records.Get(ctx, id)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, jobs.ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	return data, rev, nil
}

// CreateRecord creates the key only if it does not exist.
func (b *Backend) CreateRecord(ctx context.Context, id string, data []byte) (uint64, error) {
	var rev uint64
	err := retry.Repeat(ctx, func(ctx context.Context, repeat bool) error {
		return retry.OnConn(ctx, b.nc, func(ctx context.Context) (err error) {
			rev, err = b.kv.Create(ctx, id, data)
			if repeat && errors.Is(err, jetstream.ErrKeyExists) {
				rev, err = b.ownWrite(ctx, id, data, err)
			}
			return err
		})
	})
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, jobs.ErrExists
	}
	return rev, err
}

// UpdateRecord writes only if rev is the key's last revision.
func (b *Backend) UpdateRecord(ctx context.Context, id string, data []byte, rev uint64) (uint64, error) {
	var n uint64
	err := retry.Repeat(ctx, func(ctx context.Context, repeat bool) error {
		return retry.OnConn(ctx, b.nc, func(ctx context.Context) (err error) {
			n, err = b.kv.Update(ctx, id, data, rev)
			if repeat && conflict(err) {
				n, err = b.ownWrite(ctx, id, data, err)
			}
			return err
		})
	})
	if conflict(err) {
		return 0, jobs.ErrConflict
	}
	return n, err
}

func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// ownWrite decides a repeated write that found the key changed: if the
// key holds exactly data, the earlier try landed and only its answer was
// lost (records carry their update time, so another writer's data
// differs); otherwise the conflict err stands.
func (b *Backend) ownWrite(ctx context.Context, id string, data []byte, conflict error) (uint64, error) {
	got, rev, err := b.records.Get(ctx, id)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(got, data) {
		return 0, conflict
	}
	return rev, nil
}

// WatchRecord follows the key with a KV watcher.
func (b *Backend) WatchRecord(ctx context.Context, id string) (<-chan jobs.RecordValue, error) {
	w, err := b.kv.Watch(ctx, id, jetstream.UpdatesOnly())
	if err != nil {
		return nil, err
	}
	out := make(chan jobs.RecordValue, 1)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil || e.Operation() != jetstream.KeyValuePut {
					continue
				}
				jobs.SendLatest(out, jobs.RecordValue{Data: e.Value(), Rev: e.Revision()})
			}
		}
	}()
	return out, nil
}

// VisibilityTimeout is Options.VisibilityTimeout.
func (b *Backend) VisibilityTimeout() time.Duration { return b.cfg.VisibilityTimeout }

// Enqueue publishes the job ID on the kind's subject.
func (b *Backend) Enqueue(ctx context.Context, kind, id string) error {
	if !validName(kind) {
		return fmt.Errorf("natsjobs: invalid kind %q", kind)
	}
	// The message ID is this call's, not the job's: a job is
	// legitimately queued again by Manager.Requeue, but a repeat of this
	// call after a lost answer is dropped by JetStream's deduplication.
	var token [12]byte
	_, _ = rand.Read(token[:])
	msgID := hex.EncodeToString(token[:])
	return retry.Do(ctx, func(ctx context.Context) error {
		return retry.OnConn(ctx, b.nc, func(ctx context.Context) error {
			_, err := b.js.Publish(ctx, b.subject+"."+kind, []byte(id), jetstream.WithMsgID(msgID))
			return err
		})
	})
}

// consumer returns the kind's durable consumer, created on first use. One
// consumer per kind shares the work among all instances.
func (b *Backend) consumer(ctx context.Context, kind string) (jetstream.Consumer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.consumers[kind]; ok {
		return c, nil
	}
	c, err := retry.Value(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		return b.js.CreateOrUpdateConsumer(ctx, b.stream.CachedInfo().Config.Name, b.consumerConfig(kind))
	})
	if err != nil {
		return nil, err
	}
	b.consumers[kind] = c
	return c, nil
}

func (b *Backend) consumerConfig(kind string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       kind,
		FilterSubject: b.subject + "." + kind,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.cfg.VisibilityTimeout,
		// Attempts are counted (and dead-lettered) by package jobs, which
		// also counts the attempts whose worker crashed.
		MaxDeliver:    -1,
		MaxAckPending: -1,
	}
}

// Claim pulls the next job of kind, waiting until one arrives or ctx ends.
func (b *Backend) Claim(ctx context.Context, kind, worker string) (jobs.Delivery, error) {
	if !validName(kind) {
		return nil, fmt.Errorf("natsjobs: invalid kind %q", kind)
	}
	for {
		c, err := b.consumer(ctx, kind)
		if err != nil {
			return nil, err
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msg, err := c.Next(jetstream.FetchContext(pctx))
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil {
			return &delivery{msg: msg}, nil
		}
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoMessages) {
			continue
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			b.mu.Lock()
			delete(b.consumers, kind)
			b.mu.Unlock()
		}
		return nil, err
	}
}

type delivery struct{ msg jetstream.Msg }

func (d *delivery) JobID() string { return string(d.msg.Data()) }

// Extend sends +WPI, which restarts AckWait.
func (d *delivery) Extend(ctx context.Context) error { return d.msg.InProgress() }

// Ack waits for the server's confirmation, so an acknowledged job is gone.
func (d *delivery) Ack(ctx context.Context) error { return d.msg.DoubleAck(ctx) }

// Retry naks with a delay: JetStream redelivers after it.
func (d *delivery) Retry(ctx context.Context, delay time.Duration) error {
	if delay <= 0 {
		return d.msg.Nak()
	}
	return d.msg.NakWithDelay(delay)
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
