package jobs

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"sync"
	"time"
)

// Config configures a Manager. Only Backend is required; the zero value of
// every other field is a sensible default.
type Config struct {
	// Backend is the shared store: natsjobs.New or redisjobs.New.
	Backend Backend
	// Payloads, when set, stores payloads instead of Backend, for example
	// DirPayloads on a single host.
	Payloads PayloadStore
	// Worker names this instance's workers in Status.Worker. Default:
	// hostname-pid-random, unique per process.
	Worker string
	// Concurrency is how many jobs of each registered kind this instance
	// runs at once. Default 1.
	Concurrency int
	// MaxPayloadBytes limits a submitted payload. Default 32 MiB.
	MaxPayloadBytes int64
	// MaxAttempts is how many times a job is started (crashed workers
	// included) before it is dead-lettered. Default 3.
	MaxAttempts int
	// Backoff is the delay before retry number attempt (1 for the first
	// retry). Default: 1s doubling up to 1m, with jitter.
	Backoff func(attempt int) time.Duration
	// HeartbeatInterval is how often a worker extends its claim and checks
	// for cancellation. Default: a third of the queue's visibility timeout.
	HeartbeatInterval time.Duration
	// StoreTimeout bounds each call a worker or the status and cancel
	// handlers make to the store. Default 10s.
	StoreTimeout time.Duration
	// PollInterval is how often status watchers re-read the record in case
	// a change notification was lost. Default 2s.
	PollInterval time.Duration
	// MaxEventStream bounds one SSE response, so that a job queued for
	// hours does not pin a connection (and a proxy's slot) for hours;
	// browsers' EventSource reconnects by itself. Default 10 minutes.
	MaxEventStream time.Duration
	// Logger receives worker errors. Default slog.Default().
	Logger *slog.Logger
	// OnFinish, if set, is called with the final status of each job
	// this instance's workers (or Submit, or Cancel) moved to a final
	// state: for metrics and logs. It must not block.
	OnFinish func(Status)
}

// Manager submits jobs, reports their status, and runs workers. One
// Manager per instance; every instance sharing a Backend sees every job.
type Manager struct {
	cfg      Config
	payloads PayloadStore
	records  RecordStore
	queue    Queue
	log      *slog.Logger

	mu       sync.Mutex
	handlers map[string]Handler
	running  bool

	// streamsEnd is closed by EndStreams: every event stream returns, so
	// a graceful server shutdown is not held up by streams that would
	// otherwise last MaxEventStream.
	streamsEnd     chan struct{}
	endStreamsOnce sync.Once
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Manager, error) {
	if cfg.Backend == nil {
		return nil, errors.New("jobs: Config.Backend is required")
	}
	if cfg.Payloads == nil {
		cfg.Payloads = cfg.Backend
	}
	if cfg.Worker == "" {
		host, _ := os.Hostname()
		cfg.Worker = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), newID()[:6])
	}
	cfg.Worker = truncate(cfg.Worker, maxNameBytes)
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.MaxPayloadBytes <= 0 {
		cfg.MaxPayloadBytes = 32 << 20
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = max(cfg.Backend.VisibilityTimeout()/3, 10*time.Millisecond)
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = 10 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.MaxEventStream <= 0 {
		cfg.MaxEventStream = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{
		cfg:        cfg,
		payloads:   cfg.Payloads,
		records:    cfg.Backend,
		queue:      cfg.Backend,
		log:        cfg.Logger.With("worker", cfg.Worker),
		handlers:   map[string]Handler{},
		streamsEnd: make(chan struct{}),
	}, nil
}

// EndStreams ends every event stream of EventsHandler, now and from now
// on. Call it when the server starts shutting down (for example with
// http.Server.RegisterOnShutdown): Shutdown waits for handlers to return,
// and a stream would otherwise hold it for up to MaxEventStream. Each
// client's EventSource reconnects after the stream's retry delay, to
// another instance behind the balancer, and resumes from Last-Event-ID.
func (m *Manager) EndStreams() {
	m.endStreamsOnce.Do(func() { close(m.streamsEnd) })
}

// DefaultBackoff waits 1s before the first retry and doubles up to a
// minute, randomised by up to a half so that jobs failing together (a
// downstream outage) do not retry together.
func DefaultBackoff(attempt int) time.Duration {
	d := time.Minute
	if attempt < 7 {
		d = time.Second << max(attempt-1, 0)
	}
	return d/2 + mrand.N(d/2+1)
}

// Worker is the name this Manager's workers write into Status.Worker.
func (m *Manager) Worker() string { return m.cfg.Worker }

// SubmitOptions are the optional parts of a submission.
type SubmitOptions struct {
	// Filename is shown in the status; it is not used as a path.
	Filename string
	// IdempotencyKey makes submissions repeatable: a second Submit with
	// the same kind and key returns the first job and stores nothing.
	IdempotencyKey string
	// MaxAttempts overrides Config.MaxAttempts for this job.
	MaxAttempts int
}

// Submit streams payload into shared storage (up to
// Config.MaxPayloadBytes) and queues a job of kind for any instance's
// worker. An empty payload fails with ErrEmpty and an oversized one with
// ErrTooLarge; in both cases, and on any other error, nothing is left in
// storage.
func (m *Manager) Submit(ctx context.Context, kind string, payload io.Reader, opts SubmitOptions) (Status, error) {
	if !validKind(kind) {
		return Status{}, fmt.Errorf("%w: %q (want 1-64 of A-Z a-z 0-9 - _)", ErrUnknownKind, kind)
	}
	id := newID()
	var unqueued *record // an earlier submission with this key that never made the queue
	if opts.IdempotencyKey != "" {
		sum := sha256.Sum256([]byte(kind + "\x00" + opts.IdempotencyKey))
		id = "k" + hex.EncodeToString(sum[:16])
		prev, err := m.get(ctx, id)
		switch {
		case err == nil && prev.Unqueued:
			unqueued = prev
		case err == nil:
			return prev.Status, nil
		case !errors.Is(err, ErrNotFound):
			return Status{}, err
		}
	}
	br := bufio.NewReader(payload)
	if _, err := br.Peek(1); err == io.EOF {
		return Status{}, ErrEmpty
	} else if err != nil {
		return Status{}, err
	}
	pid := newID()
	size, err := m.payloads.PutPayload(ctx, pid, br, m.cfg.MaxPayloadBytes)
	if err != nil {
		return Status{}, err
	}
	maxAttempts := m.cfg.MaxAttempts
	if opts.MaxAttempts > 0 {
		maxAttempts = opts.MaxAttempts
	}
	now := time.Now().UTC()
	rec := &record{PayloadID: pid, Status: Status{
		ID: id, Kind: kind, State: Queued, MaxAttempts: maxAttempts,
		Filename: truncate(opts.Filename, maxNameBytes), Size: size,
		CreatedAt: now, UpdatedAt: now,
	}}
	data, err := encodeRecord(rec)
	if err == nil {
		if unqueued != nil {
			rec.Status.Revision, err = m.records.UpdateRecord(ctx, id, data, unqueued.Status.Revision)
		} else {
			rec.Status.Revision, err = m.records.CreateRecord(ctx, id, data)
		}
	}
	if err != nil {
		m.deletePayload(pid)
		if errors.Is(err, ErrExists) || errors.Is(err, ErrConflict) {
			// Lost an idempotent race: the winner's job stands.
			return m.Status(ctx, id)
		}
		return Status{}, err
	}
	if err := m.queue.Enqueue(ctx, kind, id); err != nil {
		m.unqueued(context.WithoutCancel(ctx), id, err)
		return Status{}, err
	}
	return rec.Status, nil
}

// unqueued records that a job's Enqueue failed. Without a queue entry no
// worker would ever take it, so it fails at once rather than stay queued
// forever, and a Submit with the same idempotency key may replace it.
func (m *Manager) unqueued(ctx context.Context, id string, cause error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	var pid string
	_, err := m.update(ctx, id, func(r *record) error {
		if r.Status.State != Queued || r.Status.Attempt > 0 {
			return errSkip // a worker got it after all
		}
		r.Status.State, r.Unqueued = Failed, true
		r.Status.Error = truncate("could not be queued: "+cause.Error(), maxErrorBytes)
		pid, r.PayloadID = r.PayloadID, ""
		return nil
	})
	if err != nil {
		if !errors.Is(err, errSkip) {
			m.log.Error("jobs: cannot record a failed enqueue", "job", id, "err", err)
		}
		return
	}
	if pid != "" {
		m.deletePayload(pid)
	}
}

// Status reads a job's status from the shared store; ErrNotFound if no job
// has that id (or it expired).
func (m *Manager) Status(ctx context.Context, id string) (Status, error) {
	rec, err := m.get(ctx, id)
	if err != nil {
		return Status{}, err
	}
	return rec.Status, nil
}

// Cancel asks for a job to stop. A queued job is cancelled at once; a
// running one is flagged, and its worker, on whichever instance, cancels
// the handler's context within a heartbeat. Cancelling a finished job fails
// with ErrFinished.
func (m *Manager) Cancel(ctx context.Context, id string) (Status, error) {
	var pid string
	rec, err := m.update(ctx, id, func(r *record) error {
		s := &r.Status
		if s.State.Final() {
			return ErrFinished
		}
		if s.State == Queued {
			s.State = Cancelled
			pid = r.PayloadID
			r.PayloadID, r.Checkpoint = "", nil
		}
		s.CancelRequested = true
		return nil
	})
	if err != nil {
		if rec != nil {
			return rec.Status, err
		}
		return Status{}, err
	}
	if pid != "" {
		m.deletePayload(pid)
		if m.cfg.OnFinish != nil {
			m.cfg.OnFinish(rec.Status)
		}
	}
	return rec.Status, nil
}

// Watch sends the job's status now and after every change until the job
// reaches a final state (which it sends, then closes the channel) or ctx
// ends. It may skip intermediate statuses but never goes backwards.
func (m *Manager) Watch(ctx context.Context, id string) (<-chan Status, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	// Subscribe before reading, so that a change between the two is not
	// missed until the next poll.
	ctx, cancel := context.WithCancel(ctx)
	updates, err := m.records.WatchRecord(ctx, id)
	if err != nil {
		m.log.Warn("jobs: watch failed, polling instead", "job", id, "err", err)
		updates = nil
	}
	first, err := m.Status(ctx, id)
	if err != nil {
		cancel()
		return nil, err
	}
	out := make(chan Status, 1)
	out <- first
	go func() {
		defer cancel()
		defer close(out)
		last := first
		poll := time.NewTicker(m.cfg.PollInterval)
		defer poll.Stop()
		for !last.State.Final() {
			var next Status
			select {
			case <-ctx.Done():
				return
			case v, ok := <-updates:
				if !ok {
					updates = nil
					continue
				}
				rec, err := decodeRecord(v.Data)
				if err != nil {
					continue
				}
				next = rec.Status
				next.Revision = v.Rev
			case <-poll.C:
				st, err := m.Status(ctx, id)
				if errors.Is(err, ErrNotFound) {
					return // expired or deleted: nothing more will come
				}
				if err != nil {
					continue
				}
				next = st
			}
			if next.Revision <= last.Revision {
				continue
			}
			last = next
			select {
			case out <- next:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (m *Manager) get(ctx context.Context, id string) (*record, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	data, rev, err := m.records.GetRecord(ctx, id)
	if err != nil {
		return nil, err
	}
	rec, err := decodeRecord(data)
	if err != nil {
		return nil, fmt.Errorf("%w: job %s: %w", errBadRecord, id, err)
	}
	rec.Status.Revision = rev
	return rec, nil
}

// errBadRecord marks a record that exists but cannot be decoded.
var errBadRecord = errors.New("jobs: unreadable record")

// errSkip tells update that fn decided not to write.
var errSkip = errors.New("jobs: no change")

// update applies fn to the current record and writes it back with a
// compare-and-set, re-reading and re-applying on conflict. If fn returns an
// error nothing is written and update returns the record as read with that
// error.
func (m *Manager) update(ctx context.Context, id string, fn func(*record) error) (*record, error) {
	for {
		rec, err := m.get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := fn(rec); err != nil {
			return rec, err
		}
		rec.Status.UpdatedAt = time.Now().UTC()
		data, err := encodeRecord(rec)
		if err != nil {
			return nil, err
		}
		rev, err := m.records.UpdateRecord(ctx, id, data, rec.Status.Revision)
		if errors.Is(err, ErrConflict) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		rec.Status.Revision = rev
		return rec, nil
	}
}

// ErrNotRetryable: Requeue applies only to failed and dead jobs whose
// payload is still kept.
var ErrNotRetryable = errors.New("jobs: only a failed or dead job with its payload can be requeued")

// Requeue runs a failed or dead job again from the start, with a fresh
// count of attempts: the dead-letter replay, for after the cause of the
// failures was fixed. Failed and dead jobs keep their payload for the
// backend's retention; after that, or for any other state, Requeue fails
// with ErrNotRetryable.
func (m *Manager) Requeue(ctx context.Context, id string) (Status, error) {
	prev, err := m.get(ctx, id)
	if err != nil {
		return Status{}, err
	}
	if (prev.Status.State != Failed && prev.Status.State != Dead) || prev.PayloadID == "" {
		return prev.Status, ErrNotRetryable
	}
	p, err := m.payloads.OpenPayload(ctx, prev.PayloadID)
	if errors.Is(err, ErrNotFound) {
		return prev.Status, fmt.Errorf("%w: its payload expired", ErrNotRetryable)
	}
	if err != nil {
		return prev.Status, err
	}
	p.Close()
	rec, err := m.update(ctx, id, func(r *record) error {
		s := &r.Status
		if s.State != Failed && s.State != Dead || r.PayloadID != prev.PayloadID {
			return ErrNotRetryable // changed under us, by another Requeue
		}
		s.State, s.Attempt, s.Percent, s.Worker = Queued, 0, 0, ""
		s.Result, s.Error, s.CancelRequested, s.Checkpointed, s.RetryAt = nil, "", false, false, time.Time{}
		r.Checkpoint = nil
		return nil
	})
	if err != nil {
		if rec != nil {
			return rec.Status, err
		}
		return Status{}, err
	}
	if err := m.queue.Enqueue(ctx, rec.Status.Kind, id); err != nil {
		m.unqueued(context.WithoutCancel(ctx), id, err)
		return Status{}, err
	}
	return rec.Status, nil
}

// finish moves a job to a final state with set, unless it already is in
// one or (attempt > 0) another attempt has taken it over, and deletes the
// payload of a done or cancelled job. It reports whether this call wrote
// the final state.
func (m *Manager) finish(ctx context.Context, id string, attempt int, set func(*Status)) bool {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	var pid string
	rec, err := m.update(ctx, id, func(r *record) error {
		s := &r.Status
		if s.State.Final() || attempt > 0 && s.Attempt != attempt {
			return errSkip
		}
		set(s)
		s.Percent = min(max(s.Percent, 0), 100)
		if s.State == Done {
			s.Percent = 100
		}
		s.RetryAt = time.Time{}
		r.Checkpoint, s.Checkpointed = nil, false
		if s.State == Done || s.State == Cancelled {
			pid, r.PayloadID = r.PayloadID, ""
		}
		// A failed or dead job keeps its payload (until Retention), so
		// that Requeue can run it again once its cause is fixed.
		return nil
	})
	if err != nil {
		if !errors.Is(err, errSkip) {
			m.log.Error("jobs: cannot record final state", "job", id, "err", err)
		}
		return false
	}
	if pid != "" {
		m.deletePayload(pid)
	}
	if m.cfg.OnFinish != nil {
		m.cfg.OnFinish(rec.Status)
	}
	return true
}

func (m *Manager) deletePayload(pid string) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StoreTimeout)
	defer cancel()
	if err := m.payloads.DeletePayload(ctx, pid); err != nil {
		m.log.Warn("jobs: cannot delete payload", "payload", pid, "err", err)
	}
}

// newID returns 128 random bits in hex: unguessable, so a job ID in a URL
// is also its capability.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
