package jobs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/shop/textstats"
	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
)

// sampleText is a payload whose counts are easy to check by hand.
func sampleText(lines int) string {
	var b strings.Builder
	for i := range lines {
		fmt.Fprintf(&b, "line %d has five words\n", i)
	}
	return b.String()
}

func wantStats(text string) textstats.Result {
	sum := sha256.Sum256([]byte(text))
	return textstats.Result{
		SHA256: hex.EncodeToString(sum[:]),
		Lines:  int64(strings.Count(text, "\n")),
		Words:  int64(len(strings.Fields(text))),
		Bytes:  int64(len(text)),
	}
}

func decodeStats(t testing.TB, st jobs.Status) textstats.Result {
	t.Helper()
	var r textstats.Result
	if err := json.Unmarshal(st.Result, &r); err != nil {
		t.Fatalf("result %s: %v", st.Result, err)
	}
	return r
}

// TestJobLifecycle runs the demo job end to end on each backend: submitted
// on one instance, worked on another, reported by both.
func TestJobLifecycle(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			web := newManager(t, s, jobs.Config{})
			worker := newManager(t, s, jobs.Config{Worker: "w2"})
			if err := worker.Handle(textstats.Kind, textstats.Job{Steps: 5}.Handle); err != nil {
				t.Fatal(err)
			}
			text := sampleText(500)
			st := submit(t, web, textstats.Kind, text)
			if st.State != jobs.Queued || st.Size != int64(len(text)) || st.Filename != "in.txt" {
				t.Fatalf("submitted status = %+v", st)
			}
			run(t, worker)
			done := waitState(t, web, st.ID, jobs.Done)
			got := decodeStats(t, done)
			want := wantStats(text)
			want.Attempt = 1
			if got != want {
				t.Fatalf("result = %+v, want %+v", got, want)
			}
			if done.Percent != 100 || done.Worker != "w2" || done.Attempt != 1 {
				t.Fatalf("final status = %+v", done)
			}
			other, err := worker.Status(context.Background(), st.ID)
			if err != nil || other.State != jobs.Done || other.Revision != done.Revision {
				t.Fatalf("other instance sees %+v, %v", other, err)
			}
			assertNoPayloads(t, s)
			if _, err := web.Status(context.Background(), "no-such-job"); !errors.Is(err, jobs.ErrNotFound) {
				t.Fatalf("unknown job: err = %v, want ErrNotFound", err)
			}
		})
	}
}

// TestRetriesThenDead: a job that keeps failing is retried with backoff
// and dead-lettered after MaxAttempts, with its last error in the status.
func TestRetriesThenDead(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			m := newManager(t, s, jobs.Config{MaxAttempts: 3})
			var calls atomic.Int32
			var fixed atomic.Bool
			m.Handle("flaky", func(ctx context.Context, j *jobs.Job) (any, error) {
				if fixed.Load() {
					return "fixed", nil
				}
				if n := calls.Add(1); int(n) != j.Attempt() {
					return nil, jobs.Permanent(fmt.Errorf("attempt %d on call %d", j.Attempt(), n))
				}
				return nil, errBoom
			})
			srv := httptest.NewServer(mux(m, "flaky"))
			defer srv.Close()
			st := submit(t, m, "flaky", "x")
			run(t, m)
			dead := waitState(t, m, st.ID, jobs.Dead)
			if dead.Attempt != 3 || calls.Load() != 3 || !strings.Contains(dead.Error, "gave up after 3 attempts: boom") {
				t.Fatalf("dead status = %+v after %d calls", dead, calls.Load())
			}
			// The dead letter keeps its payload, so it can be replayed once
			// the cause is fixed, with a fresh count of attempts.
			if payloadsLeft(t, s) == nil {
				t.Fatal("the dead job's payload is gone; Requeue could not run it")
			}
			fixed.Store(true)
			if code := post(t, srv.URL+"/jobs/"+st.ID+"/requeue"); code != http.StatusAccepted {
				t.Fatalf("requeue: %d", code)
			}
			done := waitState(t, m, st.ID, jobs.Done)
			if done.Attempt != 1 || string(done.Result) != `"fixed"` || done.Error != "" {
				t.Fatalf("after requeue: %+v", done)
			}
			if code := post(t, srv.URL+"/jobs/"+st.ID+"/requeue"); code != http.StatusConflict {
				t.Fatalf("requeue of a done job: %d, want 409", code)
			}
			if _, err := m.Requeue(context.Background(), st.ID); !errors.Is(err, jobs.ErrNotRetryable) {
				t.Fatalf("Requeue of a done job: %v", err)
			}
			assertNoPayloads(t, s)
		})
	}
}

// TestRetryThenDone: a transient error is retried and the job completes.
func TestRetryThenDone(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			m := newManager(t, s, jobs.Config{})
			m.Handle("once", func(ctx context.Context, j *jobs.Job) (any, error) {
				if j.Attempt() == 1 {
					return nil, errBoom
				}
				return map[string]int{"attempt": j.Attempt()}, nil
			})
			st := submit(t, m, "once", "x")
			run(t, m)
			done := waitState(t, m, st.ID, jobs.Done)
			if string(done.Result) != `{"attempt":2}` || done.Error != "" {
				t.Fatalf("status = %+v", done)
			}
		})
	}
}

// TestPermanentError fails the job at once, without retries.
func TestPermanentError(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			m := newManager(t, s, jobs.Config{})
			var calls atomic.Int32
			m.Handle("bad", func(ctx context.Context, j *jobs.Job) (any, error) {
				calls.Add(1)
				return nil, jobs.Permanent(errors.New("not a text file"))
			})
			st := submit(t, m, "bad", "x")
			run(t, m)
			failed := waitState(t, m, st.ID, jobs.Failed)
			if failed.Error != "not a text file" || calls.Load() != 1 {
				t.Fatalf("status = %+v after %d calls", failed, calls.Load())
			}
		})
	}
}

// TestCancelRunning: a user's cancel on one instance stops the handler
// running on another.
func TestCancelRunning(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			web := newManager(t, s, jobs.Config{})
			worker := newManager(t, s, jobs.Config{})
			cause := make(chan error, 1)
			worker.Handle("slow", func(ctx context.Context, j *jobs.Job) (any, error) {
				if err := j.Progress(ctx, 10); err != nil {
					return nil, err
				}
				<-ctx.Done()
				cause <- context.Cause(ctx)
				return nil, ctx.Err()
			})
			st := submit(t, web, "slow", "x")
			run(t, worker)
			testenv.Eventually(t, 20*time.Second, func() error {
				cur, err := web.Status(context.Background(), st.ID)
				if err == nil && (cur.State != jobs.Running || cur.Percent != 10) {
					err = fmt.Errorf("status %s %d%%", cur.State, cur.Percent)
				}
				return err
			})
			if _, err := web.Cancel(context.Background(), st.ID); err != nil {
				t.Fatal(err)
			}
			cancelled := waitState(t, web, st.ID, jobs.Cancelled)
			if got := <-cause; !errors.Is(got, jobs.ErrCancelled) {
				t.Fatalf("handler's context cause = %v, want ErrCancelled", got)
			}
			if _, err := web.Cancel(context.Background(), st.ID); !errors.Is(err, jobs.ErrFinished) {
				t.Fatalf("second cancel: %v, want ErrFinished", err)
			}
			if !cancelled.CancelRequested {
				t.Fatalf("status = %+v", cancelled)
			}
			assertNoPayloads(t, s)
		})
	}
}

// TestCancelQueued: a job nobody has started is cancelled at once and
// never runs.
func TestCancelQueued(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			m := newManager(t, s, jobs.Config{})
			ran := make(chan string, 2)
			m.Handle("k", func(ctx context.Context, j *jobs.Job) (any, error) {
				ran <- j.ID()
				return "ok", nil
			})
			st := submit(t, m, "k", "x")
			c, err := m.Cancel(context.Background(), st.ID)
			if err != nil || c.State != jobs.Cancelled {
				t.Fatalf("Cancel = %+v, %v", c, err)
			}
			assertNoPayloads(t, s)
			// A later job goes through the same queue: once it is done,
			// the cancelled one was passed over.
			next := submit(t, m, "k", "y")
			run(t, m)
			waitState(t, m, next.ID, jobs.Done)
			if id := <-ran; id != next.ID {
				t.Fatalf("cancelled job %s ran", id)
			}
		})
	}
}

// TestIdempotencyKey: resubmitting with the same key returns the first job
// and stores no second payload.
func TestIdempotencyKey(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			m := newManager(t, s, jobs.Config{})
			ctx := context.Background()
			opts := jobs.SubmitOptions{IdempotencyKey: "order-42"}
			a, err := m.Submit(ctx, "k", strings.NewReader("first"), opts)
			if err != nil {
				t.Fatal(err)
			}
			b, err := m.Submit(ctx, "k", strings.NewReader("second, longer"), opts)
			if err != nil {
				t.Fatal(err)
			}
			if a.ID != b.ID || b.Size != int64(len("first")) {
				t.Fatalf("second submit = %+v, want the first job %+v", b, a)
			}
			c, err := m.Submit(ctx, "other", strings.NewReader("x"), opts)
			if err != nil || c.ID == a.ID {
				t.Fatalf("same key, other kind: %+v, %v", c, err)
			}
		})
	}
}

// TestShutdownHandsBack: stopping an instance mid-job hands the job back
// without spending an attempt, and another instance resumes it.
func TestShutdownHandsBack(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			first := newManager(t, s, jobs.Config{Worker: "first"})
			started := make(chan struct{})
			first.Handle("k", func(ctx context.Context, j *jobs.Job) (any, error) {
				if err := j.Checkpoint(ctx, []byte("half")); err != nil {
					return nil, err
				}
				close(started)
				<-ctx.Done()
				return nil, ctx.Err()
			})
			st := submit(t, first, "k", "x")
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- first.Run(ctx) }()
			<-started
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			back := waitState(t, first, st.ID, jobs.Queued)
			if back.Attempt != 0 {
				t.Fatalf("attempt = %d after shutdown, want 0", back.Attempt)
			}
			second := newManager(t, s, jobs.Config{Worker: "second"})
			second.Handle("k", func(ctx context.Context, j *jobs.Job) (any, error) {
				return string(j.LastCheckpoint()), nil
			})
			run(t, second)
			fin := waitState(t, second, st.ID, jobs.Done)
			if string(fin.Result) != `"half"` || fin.Attempt != 1 || fin.Worker != "second" {
				t.Fatalf("status = %+v", fin)
			}
		})
	}
}

// TestSubmitLimits: empty and oversized payloads are refused and leave
// nothing in storage.
func TestSubmitLimits(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			m := newManager(t, s, jobs.Config{MaxPayloadBytes: 10_000})
			ctx := context.Background()
			if _, err := m.Submit(ctx, "k", strings.NewReader(""), jobs.SubmitOptions{}); !errors.Is(err, jobs.ErrEmpty) {
				t.Fatalf("empty: %v", err)
			}
			if _, err := m.Submit(ctx, "k", strings.NewReader(strings.Repeat("x", 10_001)), jobs.SubmitOptions{}); !errors.Is(err, jobs.ErrTooLarge) {
				t.Fatalf("oversized: %v", err)
			}
			if _, err := m.Submit(ctx, "bad kind", strings.NewReader("x"), jobs.SubmitOptions{}); !errors.Is(err, jobs.ErrUnknownKind) {
				t.Fatalf("bad kind: %v", err)
			}
			assertNoPayloads(t, s)
			st, err := m.Submit(ctx, "k", strings.NewReader(strings.Repeat("x", 10_000)), jobs.SubmitOptions{})
			if err != nil || st.Size != 10_000 {
				t.Fatalf("exactly at the limit: %+v, %v", st, err)
			}
		})
	}
}

// TestPanicFailsAttempt: a panicking handler costs an attempt, not the
// instance, and its stack stays out of the status users see.
func TestPanicFailsAttempt(t *testing.T) {
	s := stores(t)[1].fresh()
	m := newManager(t, s, jobs.Config{MaxAttempts: 1})
	m.Handle("oops", func(ctx context.Context, j *jobs.Job) (any, error) {
		var items []int
		return items[j.Attempt()], nil // index out of range
	})
	st := submit(t, m, "oops", "x")
	run(t, m)
	dead := waitState(t, m, st.ID, jobs.Dead)
	if !strings.Contains(dead.Error, "handler panicked: runtime error: index out of range") || strings.Contains(dead.Error, "goroutine") {
		t.Fatalf("error = %q", dead.Error)
	}
}

// TestTextStatsRefusesBinary: a binary upload fails at once with a
// readable reason instead of being retried.
func TestTextStatsRefusesBinary(t *testing.T) {
	s := stores(t)[0].fresh()
	m := newManager(t, s, jobs.Config{})
	m.Handle(textstats.Kind, textstats.Job{Steps: 3}.Handle)
	st := submit(t, m, textstats.Kind, "PNG\x00\x01\x02 header")
	run(t, m)
	failed := waitState(t, m, st.ID, jobs.Failed)
	if failed.Error != "not a text file: NUL byte at offset 3" || failed.Attempt != 1 {
		t.Fatalf("status = %+v", failed)
	}
}

// flakyQueue is a real backend whose Enqueue can be made to fail, as when
// the store fails between two calls.
type flakyQueue struct {
	jobs.Backend
	fail atomic.Bool
}

func (f *flakyQueue) Enqueue(ctx context.Context, kind, id string) error {
	if f.fail.Load() {
		return errors.New("queue unavailable")
	}
	return f.Backend.Enqueue(ctx, kind, id)
}

// TestEnqueueFailure: a job that could not be queued says so, keeps no
// payload, and a retried submission with the same idempotency key (as a
// client retrying after a 503 sends) replaces it and runs.
func TestEnqueueFailure(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			q := &flakyQueue{Backend: s.connect(t)}
			m, err := jobs.New(jobs.Config{Backend: q})
			if err != nil {
				t.Fatal(err)
			}
			m.Handle("k", func(ctx context.Context, j *jobs.Job) (any, error) { return j.Size(), nil })
			ctx := context.Background()
			opts := jobs.SubmitOptions{IdempotencyKey: "upload-1"}
			q.fail.Store(true)
			if _, err := m.Submit(ctx, "k", strings.NewReader("abc"), opts); err == nil {
				t.Fatal("Submit succeeded without a queue")
			}
			st, err := m.Submit(ctx, "k", strings.NewReader("abc"), jobs.SubmitOptions{})
			if err == nil {
				t.Fatalf("Submit succeeded without a queue: %+v", st)
			}
			assertNoPayloads(t, s)

			q.fail.Store(false)
			st, err = m.Submit(ctx, "k", strings.NewReader("abcd"), opts)
			if err != nil || st.State != jobs.Queued {
				t.Fatalf("resubmit: %+v, %v", st, err)
			}
			run(t, m)
			if done := waitState(t, m, st.ID, jobs.Done); string(done.Result) != "4" {
				t.Fatalf("status %+v", done)
			}
		})
	}
}

func post(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
