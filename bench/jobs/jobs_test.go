// Package jobsbench measures jobs per second through each jobs backend,
// end to end: Submit (payload upload, record, enqueue), claim, the
// handler, the final compare-and-set and the ack.
//
//	go test -run '^$' -bench . -benchtime 2000x ./bench/jobs/
package jobsbench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/jobs/natsjobs"
	"github.com/unstuck-dev/unstuck/jobs/redisjobs"
)

// seq names each run's stream, buckets or keys apart.
var seq atomic.Int64

func BenchmarkJobs(b *testing.B) {
	natsSrv := testenv.NATS(b)
	redisSrv := testenv.Redis(b)
	backends := []struct {
		name string
		open func(b *testing.B) jobs.Backend
	}{
		{"nats", func(b *testing.B) jobs.Backend {
			be, err := natsjobs.New(context.Background(), natsjobs.Options{URL: natsSrv.URL(), Name: fmt.Sprintf("bench%d", seq.Add(1))})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = be.Close() })
			return be
		}},
		{"redis", func(b *testing.B) jobs.Backend {
			be, err := redisjobs.New(context.Background(), redisjobs.Options{URL: redisSrv.URL(), Prefix: fmt.Sprintf("bench%d", seq.Add(1))})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = be.Close() })
			return be
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			var done atomic.Int64
			finished := make(chan struct{})
			target := int64(b.N)
			m, err := jobs.New(jobs.Config{Backend: be.open(b), Concurrency: 8, OnFinish: func(jobs.Status) {
				if done.Add(1) == target {
					close(finished)
				}
			}})
			if err != nil {
				b.Fatal(err)
			}
			m.Handle("noop", func(ctx context.Context, j *jobs.Job) (any, error) { return nil, nil })
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan struct{})
			go func() { m.Run(ctx); close(ran) }()
			defer func() { cancel(); <-ran }()

			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			var next atomic.Int64
			for range 8 {
				wg.Go(func() {
					for next.Add(1) <= target {
						if _, err := m.Submit(ctx, "noop", strings.NewReader("payload"), jobs.SubmitOptions{}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			select {
			case <-finished:
			case <-time.After(5 * time.Minute):
				b.Fatalf("only %d of %d jobs finished", done.Load(), target)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
		})
	}
}
