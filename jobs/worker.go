package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"time"
)

// Handler processes one job. It reads the payload with job.Open, reports
// progress with job.Progress, and may save checkpoints with job.Checkpoint
// so that a later attempt (after a crash) resumes from job.LastCheckpoint.
// Its result is stored as JSON in Status.Result.
//
// A job runs at least once and may run more than once (its worker may die
// after the work but before recording it), so handlers must be safe to
// repeat; the result is recorded once. A handler with effects outside the
// store uses job.ID() as their idempotency key. The handler must return soon after
// ctx is cancelled (by a user's Cancel or by shutdown). An error is
// retried with backoff until Status.MaxAttempts; wrap it with Permanent to
// fail at once.
type Handler func(ctx context.Context, job *Job) (result any, err error)

// Permanent marks err as not worth retrying: the job fails at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// ErrCancelled is the cause of a handler's context when a user cancelled
// the job (context.Cause(ctx)).
var ErrCancelled = errors.New("jobs: cancelled by user")

var (
	errLostClaim = errors.New("jobs: another worker took the job over")
	errShutdown  = errors.New("jobs: worker shutting down")
)

// Handle registers h for jobs of kind. Call it before Run.
func (m *Manager) Handle(kind string, h Handler) error {
	if !validKind(kind) {
		return fmt.Errorf("%w: %q", ErrUnknownKind, kind)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running {
		return errors.New("jobs: Handle after Run")
	}
	m.handlers[kind] = h
	return nil
}

// Run works on jobs of every registered kind, Config.Concurrency at a time
// per kind, until ctx ends. Jobs still running then are cancelled and
// handed back to the queue without counting the attempt, so they resume
// from their checkpoint on another instance. Run returns after they are
// handed back.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return errors.New("jobs: Run called twice")
	}
	m.running = true
	kinds := make(map[string]Handler, len(m.handlers))
	for k, h := range m.handlers {
		kinds[k] = h
	}
	m.mu.Unlock()
	if len(kinds) == 0 {
		return errors.New("jobs: Run with no handlers registered")
	}
	var wg sync.WaitGroup
	for kind, h := range kinds {
		for range m.cfg.Concurrency {
			wg.Go(func() { m.loop(ctx, kind, h) })
		}
	}
	wg.Wait()
	if l, ok := m.queue.(Leaver); ok {
		for kind := range kinds {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.StoreTimeout)
			if err := l.Leave(lctx, kind, m.cfg.Worker); err != nil {
				m.log.Warn("jobs: cannot leave the queue", "kind", kind, "err", err)
			}
			cancel()
		}
	}
	return nil
}

func (m *Manager) loop(ctx context.Context, kind string, h Handler) {
	failures := 0
	for ctx.Err() == nil {
		d, err := m.queue.Claim(ctx, kind, m.cfg.Worker)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// The store is unreachable: back off instead of spinning,
			// and keep trying; it may come back.
			failures++
			m.log.Warn("jobs: claim failed", "kind", kind, "err", err)
			t := time.NewTimer(min(time.Duration(failures)*100*time.Millisecond, 2*time.Second))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		failures = 0
		m.process(ctx, h, d)
	}
}

// process runs one delivery to its end: a final state, a retry, or (when
// this worker lost its claim) nothing.
func (m *Manager) process(ctx context.Context, h Handler, d Delivery) {
	id := d.JobID()
	store := context.WithoutCancel(ctx)
	sctx, scancel := context.WithTimeout(store, m.cfg.StoreTimeout)
	var final func(*Status)
	rec, err := m.update(sctx, id, func(r *record) error {
		s := &r.Status
		final = nil
		switch {
		case s.State.Final():
			return errSkip
		case s.CancelRequested:
			final = func(s *Status) { s.State = Cancelled }
		case s.Attempt >= s.MaxAttempts:
			// The last attempt's worker died without recording anything.
			msg := fmt.Sprintf("gave up after %d attempts", s.Attempt)
			if s.Error != "" {
				msg += ": " + s.Error
			} else {
				msg += ": the worker stopped responding"
			}
			final = func(s *Status) { s.State, s.Error = Dead, truncate(msg, maxErrorBytes) }
		default:
			s.Attempt++
			s.State, s.Worker, s.RetryAt = Running, m.cfg.Worker, time.Time{}
			return nil
		}
		return errSkip
	})
	scancel()
	switch {
	case errors.Is(err, ErrNotFound):
		m.ack(store, d) // its record expired or never was: nothing to do
		return
	case errors.Is(err, errSkip):
		if final != nil {
			m.finish(store, id, 0, final)
		}
		m.ack(store, d)
		return
	case errors.Is(err, errBadRecord):
		// Redelivering would fail the same way forever.
		m.log.Error("jobs: dropping job with an unreadable record", "job", id, "err", err)
		m.ack(store, d)
		return
	case err != nil:
		// Leave the delivery alone: it comes back after the visibility
		// timeout, when the store may answer again.
		m.log.Error("jobs: cannot start job", "job", id, "err", err)
		return
	}

	job := &Job{m: m, id: id, kind: rec.Status.Kind, attempt: rec.Status.Attempt,
		payloadID: rec.PayloadID, size: rec.Status.Size, filename: rec.Status.Filename,
		checkpoint: rec.Checkpoint, percent: rec.Status.Percent}
	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	job.cancel = cancel
	stopBeat := make(chan struct{})
	beatDone := make(chan struct{})
	go func() {
		defer close(beatDone)
		m.heartbeat(store, d, job, stopBeat)
	}()
	result, err := m.runHandler(jctx, h, job)
	close(stopBeat)
	<-beatDone
	cause := context.Cause(jctx)
	if ctx.Err() != nil && cause == context.Cause(ctx) {
		cause = errShutdown
	}

	switch {
	case err == nil:
		raw, merr := json.Marshal(result)
		if merr == nil && len(raw) > MaxResultBytes {
			merr = fmt.Errorf("result of %d bytes exceeds %d", len(raw), MaxResultBytes)
		}
		if merr != nil {
			m.finish(store, id, job.attempt, func(s *Status) {
				s.State, s.Error = Failed, truncate("jobs: cannot store result: "+merr.Error(), maxErrorBytes)
			})
		} else {
			// First finisher wins: a zombie attempt that completes after a
			// takeover still records the (identical) result, once.
			m.finish(store, id, 0, func(s *Status) {
				s.State, s.Result, s.Error, s.Worker = Done, raw, "", m.cfg.Worker
			})
		}
	case errors.Is(cause, errLostClaim):
		return // the new owner acks
	case errors.Is(cause, ErrCancelled):
		m.finish(store, id, job.attempt, func(s *Status) { s.State = Cancelled })
	case errors.Is(cause, errShutdown):
		m.release(store, d, job)
		return
	default:
		var perm permanentError
		msg := truncate(err.Error(), maxErrorBytes)
		if errors.As(err, &perm) {
			m.finish(store, id, job.attempt, func(s *Status) { s.State, s.Error = Failed, msg })
		} else if job.attempt >= rec.Status.MaxAttempts {
			m.finish(store, id, job.attempt, func(s *Status) {
				s.State = Dead
				s.Error = truncate(fmt.Sprintf("gave up after %d attempts: %s", job.attempt, msg), maxErrorBytes)
			})
		} else {
			m.retry(store, d, job, msg)
			return
		}
	}
	m.ack(store, d)
}

// runHandler turns a panic into an attempt's error. The stack goes to the
// log, not into the status users can read.
func (m *Manager) runHandler(ctx context.Context, h Handler, job *Job) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			m.log.Error("jobs: handler panicked", "job", job.id, "kind", job.kind, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("jobs: handler panicked: %v", p)
		}
	}()
	return h(ctx, job)
}

// heartbeat keeps the claim alive until the handler returns, even after
// its context was cancelled (a slow handler must not be presumed dead and
// run twice), and cancels the handler when a user cancels the job or
// another worker took it over. From the first beat on it watches the
// record for a prompt reaction, and it re-reads it on every beat in case a
// notification was lost.
func (m *Manager) heartbeat(store context.Context, d Delivery, job *Job, stop <-chan struct{}) {
	wctx, wcancel := context.WithCancel(store)
	defer wcancel()
	// The watch starts at the first beat: most jobs finish before it, and
	// they should not pay for a watcher (a consumer on NATS). Until then a
	// cancel waits for the first beat's re-read, as it would anyway after
	// a lost notification.
	var updates <-chan RecordValue
	watching := false
	t := time.NewTicker(m.cfg.HeartbeatInterval)
	defer t.Stop()
	check := func(r *record) {
		switch {
		case r.Status.Attempt != job.attempt || r.Status.State.Final():
			job.cancel(errLostClaim)
		case r.Status.CancelRequested:
			job.cancel(ErrCancelled)
		}
	}
	for {
		select {
		case <-stop:
			return
		case v, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			if r, err := decodeRecord(v.Data); err == nil {
				check(r)
			}
		case <-t.C:
			if !watching {
				watching = true
				if u, err := m.records.WatchRecord(wctx, job.id); err == nil {
					updates = u
				}
			}
			ctx, cancel := context.WithTimeout(store, m.cfg.StoreTimeout)
			if err := d.Extend(ctx); err != nil {
				m.log.Warn("jobs: cannot extend claim", "job", job.id, "err", err)
			}
			r, err := m.get(ctx, job.id)
			cancel()
			if errors.Is(err, ErrNotFound) {
				job.cancel(errLostClaim)
			} else if err == nil {
				check(r)
			}
		}
	}
}

// retry records the failed attempt and hands the job back to the queue
// after a backoff.
func (m *Manager) retry(store context.Context, d Delivery, job *Job, msg string) {
	ctx, cancel := context.WithTimeout(store, m.cfg.StoreTimeout)
	defer cancel()
	delay := m.cfg.Backoff(job.attempt)
	_, err := m.update(ctx, job.id, func(r *record) error {
		s := &r.Status
		if s.State.Final() || s.Attempt != job.attempt {
			return errSkip
		}
		s.State, s.Error, s.RetryAt = Queued, msg, time.Now().Add(delay).UTC()
		return nil
	})
	if err != nil {
		if !errors.Is(err, errSkip) {
			m.log.Error("jobs: cannot record retry", "job", job.id, "err", err)
		}
		return
	}
	if err := d.Retry(ctx, delay); err != nil {
		m.log.Error("jobs: cannot schedule retry", "job", job.id, "err", err)
	}
}

// release hands a job back on shutdown without counting the attempt.
func (m *Manager) release(store context.Context, d Delivery, job *Job) {
	ctx, cancel := context.WithTimeout(store, m.cfg.StoreTimeout)
	defer cancel()
	_, err := m.update(ctx, job.id, func(r *record) error {
		s := &r.Status
		if s.State.Final() || s.Attempt != job.attempt {
			return errSkip
		}
		s.State, s.Attempt = Queued, s.Attempt-1
		return nil
	})
	if err != nil {
		return
	}
	if err := d.Retry(ctx, 0); err != nil {
		m.log.Warn("jobs: cannot hand job back", "job", job.id, "err", err)
	}
}

func (m *Manager) ack(store context.Context, d Delivery) {
	ctx, cancel := context.WithTimeout(store, m.cfg.StoreTimeout)
	defer cancel()
	if err := d.Ack(ctx); err != nil {
		m.log.Warn("jobs: cannot ack", "job", d.JobID(), "err", err)
	}
}

// Job is one attempt at a job, as a Handler sees it.
type Job struct {
	m         *Manager
	id, kind  string
	attempt   int
	payloadID string
	size      int64
	filename  string
	cancel    context.CancelCauseFunc

	mu         sync.Mutex
	checkpoint []byte
	percent    int
}

// ID is the job's ID.
func (j *Job) ID() string { return j.id }

// Kind is the job's kind.
func (j *Job) Kind() string { return j.kind }

// Attempt is 1 on the first run and counts up with every retry or takeover.
func (j *Job) Attempt() int { return j.attempt }

// Size is the payload's size in bytes.
func (j *Job) Size() int64 { return j.size }

// Filename is the name given at submission, for display.
func (j *Job) Filename() string { return j.filename }

// Open streams the payload from shared storage.
func (j *Job) Open(ctx context.Context) (io.ReadCloser, error) {
	return j.m.payloads.OpenPayload(ctx, j.payloadID)
}

// LastCheckpoint is the data of the last Checkpoint, by this attempt or an
// earlier one, or nil.
func (j *Job) LastCheckpoint() []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.checkpoint
}

// Progress records pct (clamped to 0-100) in the shared status.
func (j *Job) Progress(ctx context.Context, pct int) error {
	pct = min(max(pct, 0), 100)
	j.mu.Lock()
	same := pct == j.percent
	j.percent = pct
	j.mu.Unlock()
	if same {
		return nil
	}
	return j.save(ctx, false, nil)
}

// Checkpoint durably records data (at most MaxCheckpointBytes) so that an
// attempt after a crash can resume from it. It fails, and cancels the
// handler's context, when another worker has taken the job over.
func (j *Job) Checkpoint(ctx context.Context, data []byte) error {
	if len(data) > MaxCheckpointBytes {
		return fmt.Errorf("jobs: checkpoint of %d bytes exceeds %d", len(data), MaxCheckpointBytes)
	}
	data = append([]byte(nil), data...)
	if err := j.save(ctx, true, data); err != nil {
		return err
	}
	j.mu.Lock()
	j.checkpoint = data
	j.mu.Unlock()
	return nil
}

// save writes progress (and a checkpoint) only while this attempt owns the
// job, so a worker presumed dead cannot roll the status back.
func (j *Job) save(ctx context.Context, withCheckpoint bool, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, j.m.cfg.StoreTimeout)
	defer cancel()
	j.mu.Lock()
	pct := j.percent
	j.mu.Unlock()
	_, err := j.m.update(ctx, j.id, func(r *record) error {
		s := &r.Status
		if s.Attempt != j.attempt || s.State != Running {
			return errLostClaim
		}
		s.Percent = pct
		if withCheckpoint {
			r.Checkpoint, s.Checkpointed = data, true
		}
		return nil
	})
	if errors.Is(err, errLostClaim) || errors.Is(err, ErrNotFound) {
		j.cancel(errLostClaim)
		return errLostClaim
	}
	return err
}
