package sessionbench

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
	"github.com/unstuck-dev/unstuck/internal/testenv"
	rstore "github.com/unstuck-dev/unstuck/session/redisstore"
)

// BenchmarkDurability measures what redisstore.Durability costs: the same
// store on one Sentinel deployment (a primary and two replicas, all
// local) with writes acknowledged by the primary alone (async), after one
// replica confirmed them (wait1) and after both did (wait2). "latency" is
// one client's requests one after another (us/req, the time a user waits);
// "throughput" is 64 concurrent clients (req/s), as BenchmarkSessions.
func BenchmarkDurability(b *testing.B) {
	env := testenv.RedisSentinel(b)
	ctx := context.Background()
	var systems []system
	for _, d := range []struct {
		name     string
		replicas int
	}{{"async", 0}, {"wait1", 1}, {"wait2", 2}} {
		opt, err := connect.ParseSentinelURL(env.URL())
		if err != nil {
			b.Fatal(err)
		}
		opt.DisableCache = true
		c, err := rueidis.NewClient(opt)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		var n atomic.Int64
		st, err := rstore.New(ctx, rstore.Options{Client: countingClient{Client: c, n: &n},
			Durability: rstore.Durability{Replicas: d.replicas, Timeout: time.Second}})
		if err != nil {
			b.Fatal(err)
		}
		systems = append(systems, ours(d.name, st, n.Load))
	}
	// The script rotates the order from pass to pass, so that running
	// first (or last) favours no system in the medians.
	if k, err := strconv.Atoi(os.Getenv("DURABILITY_ROTATE")); err == nil && k > 0 {
		k %= len(systems)
		systems = append(systems[k:], systems[:k]...)
	}
	for _, sc := range scenarios {
		for _, sys := range systems {
			b.Run("latency/"+sc+"/"+sys.name, func(b *testing.B) { runSerial(b, sys, sc) })
		}
	}
	for _, sc := range scenarios {
		for _, sys := range systems {
			b.Run("throughput/"+sc+"/"+sys.name, func(b *testing.B) { run(b, sys, sc) })
		}
	}
}

// runSerial is one client sending its requests one after another.
func runSerial(b *testing.B, sys system, scenario string) {
	c := &client{}
	c.do(b, sys, sys.routes["setup"], nil)
	c.do(b, sys, sys.routes["read"], nil)
	h := sys.routes[scenario]
	b.ResetTimer()
	for b.Loop() {
		c.do(b, sys, h, nil)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/req")
}
