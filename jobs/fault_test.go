package jobs_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
)

// TestManyJobsManyWorkers: with several instances competing, every job is
// handed to exactly one worker and finishes once.
func TestManyJobsManyWorkers(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			var mu sync.Mutex
			runs := map[string]int{}
			handler := func(ctx context.Context, j *jobs.Job) (any, error) {
				mu.Lock()
				runs[j.ID()]++
				mu.Unlock()
				return j.ID(), nil
			}
			web := newManager(t, s, jobs.Config{})
			for i := range 3 {
				w := newManager(t, s, jobs.Config{Worker: "w" + strconv.Itoa(i), Concurrency: 2})
				w.Handle("echo", handler)
				run(t, w)
			}
			const n = 30
			ids := make([]string, n)
			for i := range n {
				ids[i] = submit(t, web, "echo", strconv.Itoa(i)).ID
			}
			for _, id := range ids {
				st := waitState(t, web, id, jobs.Done)
				if string(st.Result) != strconv.Quote(id) {
					t.Fatalf("job %s result %s", id, st.Result)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if runs[id] != 1 {
					t.Errorf("job %s ran %d times", id, runs[id])
				}
			}
		})
	}
}

// TestRedisRestart: Redis is killed and restarted (with its AOF) while an
// instance's workers wait for jobs; they carry on, and a job submitted
// before the crash and one after both finish.
func TestRedisRestart(t *testing.T) {
	srv := testenv.Redis(t, testenv.RedisOptions{AOF: true})
	s := (&store{name: "redis", addr: srv.Addr()}).fresh()
	web := newManager(t, s, jobs.Config{})
	worker := newManager(t, s, jobs.Config{StoreTimeout: 2 * time.Second})
	release := make(chan struct{})
	worker.Handle("k", func(ctx context.Context, j *jobs.Job) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return "ok", nil
	})
	before := submit(t, web, "k", "x")
	srv.Kill()
	run(t, worker)
	srv.Restart()
	close(release)
	waitState(t, web, before.ID, jobs.Done)
	after := submit(t, web, "k", "y")
	waitState(t, web, after.ID, jobs.Done)
}

// TestNATSRestart: the same through a NATS server restart.
func TestNATSRestart(t *testing.T) {
	srv := testenv.NATS(t)
	s := (&store{name: "nats", addr: srv.URL()}).fresh()
	web := newManager(t, s, jobs.Config{})
	worker := newManager(t, s, jobs.Config{StoreTimeout: 2 * time.Second})
	worker.Handle("k", func(ctx context.Context, j *jobs.Job) (any, error) { return "ok", nil })
	before := submit(t, web, "k", "x")
	srv.Restart()
	run(t, worker)
	waitState(t, web, before.ID, jobs.Done)
	testenv.Eventually(t, 30*time.Second, func() error {
		st, err := web.Submit(context.Background(), "k", strings.NewReader("y"), jobs.SubmitOptions{IdempotencyKey: "after-restart"})
		if err != nil {
			return fmt.Errorf("submit after restart: %w", err)
		}
		cur, err := web.Status(context.Background(), st.ID)
		if err != nil {
			return err
		}
		if cur.State != jobs.Done {
			return fmt.Errorf("state %s", cur.State)
		}
		return nil
	})
}

// TestLongJobKeepsItsClaim: a job running for several visibility timeouts
// is not handed to an idle worker on another instance, because its worker
// heartbeats.
func TestLongJobKeepsItsClaim(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			s := s.fresh()
			web := newManager(t, s, jobs.Config{})
			var mu sync.Mutex
			var runs []string
			for _, name := range []string{"a", "b"} {
				// Frequent beats, so that a loaded test machine starving a
				// goroutine for most of a second does not fake a dead worker.
				w := newManager(t, s, jobs.Config{Worker: name, HeartbeatInterval: vis / 10})
				w.Handle("long", func(ctx context.Context, j *jobs.Job) (any, error) {
					mu.Lock()
					runs = append(runs, name)
					mu.Unlock()
					// The work itself takes 2.5 visibility timeouts.
					timer := time.NewTimer(vis * 5 / 2)
					defer timer.Stop()
					select {
					case <-timer.C:
						return "ok", nil
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				})
				run(t, w)
			}
			st := submit(t, web, "long", "x")
			done := waitState(t, web, st.ID, jobs.Done)
			mu.Lock()
			defer mu.Unlock()
			if len(runs) != 1 || done.Attempt != 1 {
				t.Fatalf("ran on %v, attempt %d; want one run", runs, done.Attempt)
			}
		})
	}
}
