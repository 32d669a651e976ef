// Package metrics collects what the experiment's users observe (every
// request and every loss, by phase and over time) and turns it, together
// with what the runner measured of the processes, into the figures of
// results.json: latency percentiles from HDR histograms, throughput,
// errors by status, losses, load per instance, imbalance and the time a
// new instance takes to carry its fair share.
package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/unstuck-dev/unstuck/internal/experiment/workload"
)

// Span is one phase of the timeline, as offsets from the start.
type Span struct {
	Name       string
	Start, End time.Duration
}

// Bucket is the width of the per-instance load series.
const Bucket = 250 * time.Millisecond

// Latencies are recorded in microseconds from 1 µs to 5 minutes: a request
// scheduled behind a long outage still fits.
const (
	minLatencyUS = 1
	maxLatencyUS = int64(5 * time.Minute / time.Microsecond)
)

func newHist(digits int) *hdrhistogram.Histogram {
	return hdrhistogram.New(minLatencyUS, maxLatencyUS, digits)
}

// Collector is a workload.Recorder keeping everything the figures need.
// Every request costs one short critical section.
type Collector struct {
	start  time.Time
	phases []Span
	end    time.Duration

	mu        sync.Mutex
	instIndex map[string]int
	instNames []string
	load      [][]int64 // [bucket][instance] answered requests
	seconds   []second
	perPhase  []*phaseAcc

	// Live counters for the progress display.
	requests, errors, losses atomic.Int64
}

// second is what the latency-over-time series keeps per second.
type second struct {
	hist   *hdrhistogram.Histogram
	errors int64
}

type phaseAcc struct {
	hist     *hdrhistogram.Histogram
	requests int64
	streams  int64
	answered int64
	errors   int64
	byStatus map[string]int64
	losses   [workload.NumLosses]int64
	perInst  map[string]int64
}

var _ workload.Recorder = (*Collector)(nil)

// NewCollector starts collecting for a run that starts at start, with the
// given phases; events after the last phase count in the last one.
func NewCollector(start time.Time, phases []Span) *Collector {
	c := &Collector{start: start, phases: phases, instIndex: map[string]int{}}
	for range phases {
		c.perPhase = append(c.perPhase, &phaseAcc{hist: newHist(3), byStatus: map[string]int64{}, perInst: map[string]int64{}})
	}
	if len(phases) > 0 {
		c.end = phases[len(phases)-1].End
	}
	return c
}

// phaseAt returns the index of the phase at offset d.
func (c *Collector) phaseAt(d time.Duration) int {
	for i, p := range c.phases {
		if d < p.End {
			return i
		}
	}
	return len(c.phases) - 1
}

// Request implements workload.Recorder.
func (c *Collector) Request(r workload.Request) {
	c.requests.Add(1)
	failed := r.Failed()
	if failed {
		c.errors.Add(1)
	}
	sched := max(r.Scheduled.Sub(c.start), 0)
	done := max(r.Done.Sub(c.start), 0)
	latency := r.Done.Sub(r.Scheduled).Microseconds()
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.perPhase[c.phaseAt(sched)]
	p.requests++
	if r.Stream {
		p.streams++
	}
	switch {
	case r.Status == 0 && r.Err == "":
		p.byStatus["error"]++
	case r.Status == 0:
		p.byStatus[r.Err]++
	case r.Status >= 400:
		p.byStatus[strconv.Itoa(r.Status)]++
	}
	if failed {
		p.errors++
	} else {
		p.answered++
	}
	if r.Instance != "" && !failed {
		p.perInst[r.Instance]++
		b := int(done / Bucket)
		for len(c.load) <= b {
			c.load = append(c.load, make([]int64, len(c.instNames)))
		}
		j, ok := c.instIndex[r.Instance]
		if !ok {
			j = len(c.instNames)
			c.instIndex[r.Instance] = j
			c.instNames = append(c.instNames, r.Instance)
		}
		for len(c.load[b]) <= j {
			c.load[b] = append(c.load[b], 0)
		}
		c.load[b][j]++
	}
	s := int(sched / time.Second)
	for len(c.seconds) <= s {
		c.seconds = append(c.seconds, second{hist: newHist(2)})
	}
	if failed {
		c.seconds[s].errors++
	}
	if !r.Stream {
		latency = min(max(latency, minLatencyUS), maxLatencyUS)
		_ = p.hist.RecordValue(latency)
		_ = c.seconds[s].hist.RecordValue(latency)
	}
}

// Loss implements workload.Recorder.
func (c *Collector) Loss(kind workload.Loss, n int, at time.Time) {
	if kind != workload.UploadsUnfinished && kind != workload.StaleReads {
		c.losses.Add(int64(n))
	}
	c.mu.Lock()
	c.perPhase[c.phaseAt(max(at.Sub(c.start), 0))].losses[kind] += int64(n)
	c.mu.Unlock()
}

// Live is what the progress display shows.
type Live struct {
	Requests, Errors, Losses int64
	// RPS is the requests answered in the last full second.
	RPS float64
}

// Live returns the counters so far.
func (c *Collector) Live(now time.Time) Live {
	l := Live{Requests: c.requests.Load(), Errors: c.errors.Load(), Losses: c.losses.Load()}
	last := int(now.Sub(c.start)/Bucket) - 1 // the last complete bucket
	per := int(time.Second / Bucket)
	c.mu.Lock()
	for b := last - per + 1; b <= last; b++ {
		if b >= 0 && b < len(c.load) {
			for _, n := range c.load[b] {
				l.RPS += float64(n)
			}
		}
	}
	c.mu.Unlock()
	return l
}
