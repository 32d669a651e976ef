//go:build unix

package sim

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// BenchmarkSimulate runs each architecture once at one scale and reports
// the CPU seconds it took (both cores' worth: arrivals are drawn on the
// second), the largest live heap and the requests simulated. The scale is
// UNSTUCK_SIM_SCALE, USERS/INSTANCES, 100000/100 by default so `make
// bench` stays short, and the simulated duration UNSTUCK_SIM_DURATION
// (60s). BENCHMARKS.md's figure is
//
//	UNSTUCK_SIM_SCALE=10000000/10000 go test -run '^$' -bench Simulate -benchtime 1x ./internal/experiment/sim/
func BenchmarkSimulate(b *testing.B) {
	users, instances := 100_000, 100
	if s := os.Getenv("UNSTUCK_SIM_SCALE"); s != "" {
		if _, err := fmt.Sscanf(s, "%d/%d", &users, &instances); err != nil {
			b.Fatalf("UNSTUCK_SIM_SCALE=%q: want USERS/INSTANCES", s)
		}
	}
	duration := time.Minute
	if s := os.Getenv("UNSTUCK_SIM_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("UNSTUCK_SIM_DURATION=%q: want a duration like 60s", s)
		}
		duration = d
	}
	for _, a := range model.Archs {
		b.Run(fmt.Sprintf("%s/users=%d/instances=%d/duration=%v", a.Name, users, instances, duration), func(b *testing.B) {
			for range b.N {
				p := model.Default()
				p.Users, p.Instances, p.Duration = users, instances, duration
				runtime.GC()
				var peak uint64
				var ms runtime.MemStats
				cpu0 := cpuSeconds()
				start := time.Now()
				last := 0.0
				res, err := simulate(context.Background(), &p, a, 2e7, func(now float64) {
					// The live heap, after a collection, every simulated
					// half minute (the collections are in the CPU time).
					if now-last >= 30 {
						last = now
						runtime.GC()
						runtime.ReadMemStats(&ms)
						peak = max(peak, ms.HeapAlloc)
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(cpuSeconds()-cpu0, "cpu-s")
				b.ReportMetric(time.Since(start).Seconds(), "wall-s")
				b.ReportMetric(float64(peak)/(1<<20), "live-heap-MiB")
				b.ReportMetric(rowFrom(res, a).RequestsPerS*p.Duration.Seconds(), "requests")
			}
		})
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
