package jobs_test

import (
	"context"
	"testing"

	"github.com/unstuck-dev/unstuck/internal/shop/textstats"
	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
)

// TestRedisCluster: every script touches keys of one hash slot, so the
// Redis backend works on a cluster: a job runs, reports progress through
// a watcher on another instance, and a running job is cancelled.
func TestRedisCluster(t *testing.T) {
	cluster := testenv.RedisCluster(t, 3)
	s := (&store{name: "redis", addr: cluster.Addrs()[0], nodes: cluster.Addrs()}).fresh()
	web := newManager(t, s, jobs.Config{})
	worker := newManager(t, s, jobs.Config{Concurrency: 2})
	worker.Handle(textstats.Kind, textstats.Job{Steps: 4}.Handle)
	blocked := make(chan struct{}, 1)
	worker.Handle("wait", func(ctx context.Context, j *jobs.Job) (any, error) {
		blocked <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})

	text := sampleText(1000)
	st := submit(t, web, textstats.Kind, text)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates, err := web.Watch(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	run(t, worker)
	var last jobs.Status
	for u := range updates {
		if u.Revision < last.Revision || u.Percent < last.Percent {
			t.Fatalf("went backwards: %+v after %+v", u, last)
		}
		last = u
	}
	if last.State != jobs.Done || decodeStats(t, last).SHA256 != wantStats(text).SHA256 {
		t.Fatalf("final %+v", last)
	}

	w := submit(t, web, "wait", "x")
	<-blocked
	if _, err := web.Cancel(context.Background(), w.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, web, w.ID, jobs.Cancelled)
	if keys := scanKeys(t, s, s.prefix+":status:*"); len(keys) != 2 {
		t.Fatalf("status keys on the cluster: %v, want the 2 jobs'", keys)
	}
	assertNoPayloads(t, s)
}
