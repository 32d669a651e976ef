package metrics

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
	"github.com/unstuck-dev/unstuck/internal/experiment/report"
	"github.com/unstuck-dev/unstuck/internal/experiment/workload"
)

// Rotation is an instance entering or leaving the balancer's rotation (up
// and not draining), as the runner saw it.
type Rotation struct {
	At       time.Duration
	Instance string
	In       bool
}

// Resources are what the runner measured of the processes during one
// phase; nil when it could not.
type Resources struct {
	// CPUSeconds is the app instances' CPU time (user + system).
	CPUSeconds *float64
	// StoreOps is the operations the shared store served.
	StoreOps *float64
}

// Input is what the runner knows beyond the users' observations.
type Input struct {
	Rotations []Rotation
	// ScaleOut is the instance that joined in the scale_out phase.
	ScaleOut string
	// Resources by phase name.
	Resources map[string]Resources
}

// grid is the load series with who was in rotation when.
type grid struct {
	names []string
	load  [][]int64 // [bucket][instance]
	inRot [][]bool  // [bucket][instance]
}

// Build computes the figures of the whole run, of each phase, and the
// series for the charts.
func (c *Collector) Build(in Input) (total report.Figures, phases map[string]*report.Figures, series report.Series) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.grid(in.Rotations)
	phases = map[string]*report.Figures{}
	totalHist := newHist(3)
	total = report.Figures{ErrorsByStatus: map[string]int64{}, RequestsPerInstance: map[string]int64{}}
	var cpu, ops float64
	cpuKnown, opsKnown := true, true
	for i, span := range c.phases {
		acc := c.perPhase[i]
		f := acc.figures(span.End - span.Start)
		b0, b1 := bucketOf(span.Start), bucketOf(span.End)
		f.ImbalanceMaxOverMean, f.ImbalanceCV, f.ImbalanceNoiseFloor, f.ImbalanceNoiseP95 = g.imbalance(b0, b1)
		res := in.Resources[span.Name]
		f.CPUMsPerRequest = perRequest(res.CPUSeconds, 1000, acc.answered)
		f.StoreRoundTripsPerRequest = perRequest(res.StoreOps, 1, acc.answered)
		if res.CPUSeconds != nil {
			cpu += *res.CPUSeconds
		} else {
			cpuKnown = false
		}
		if res.StoreOps != nil {
			ops += *res.StoreOps
		} else {
			opsKnown = false
		}
		phases[span.Name] = f
		totalHist.Merge(acc.hist)
		addCounts(&total, f)
	}
	total.DurationS = c.end.Seconds()
	total.ThroughputRPS = float64(sumAnswered(c.perPhase)) / c.end.Seconds()
	total.P50ms, total.P99ms, total.P999ms, total.MaxMs = percentiles(totalHist)
	// The headline imbalance is the steady phase's (the model's
	// definition): later phases are judged by their own figures.
	if st := phases[model.Steady]; st != nil {
		total.ImbalanceMaxOverMean, total.ImbalanceCV = st.ImbalanceMaxOverMean, st.ImbalanceCV
		total.ImbalanceNoiseFloor, total.ImbalanceNoiseP95 = st.ImbalanceNoiseFloor, st.ImbalanceNoiseP95
	}
	if cpuKnown {
		total.CPUMsPerRequest = perRequest(&cpu, 1000, sumAnswered(c.perPhase))
	}
	if opsKnown {
		total.StoreRoundTripsPerRequest = perRequest(&ops, 1, sumAnswered(c.perPhase))
	}

	if p := c.phaseNamed("scale_out"); p != nil && in.ScaleOut != "" {
		if at, ok := joinedAt(in.Rotations, in.ScaleOut, p.Start); ok {
			s := g.secondsToFairShare(in.ScaleOut, at)
			phases["scale_out"].ScaleOutSecondsToFairShare = s
			total.ScaleOutSecondsToFairShare = s
		}
	}
	series = c.series(g)
	return total, phases, series
}

func (c *Collector) phaseNamed(name string) *Span {
	for i := range c.phases {
		if c.phases[i].Name == name {
			return &c.phases[i]
		}
	}
	return nil
}

func bucketOf(d time.Duration) int { return int(d / Bucket) }

func sumAnswered(ps []*phaseAcc) int64 {
	n := int64(0)
	for _, p := range ps {
		n += p.answered
	}
	return n
}

func ptr(v float64) *float64 { return &v }

func perRequest(v *float64, scale float64, requests int64) *float64 {
	if v == nil || requests == 0 {
		return nil
	}
	return ptr(*v * scale / float64(requests))
}

func percentiles(h *hdrhistogram.Histogram) (p50, p99, p999, maxMs *float64) {
	if h.TotalCount() == 0 {
		return nil, nil, nil, nil
	}
	ms := func(us int64) *float64 { return ptr(float64(us) / 1000) }
	return ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(99)), ms(h.ValueAtQuantile(99.9)), ms(h.Max())
}

// figures turns one phase's counts into figures (without the parts that
// need the whole grid or the runner's measurements).
func (p *phaseAcc) figures(d time.Duration) *report.Figures {
	f := &report.Figures{
		DurationS:           d.Seconds(),
		Requests:            p.requests,
		Streams:             p.streams,
		Errors:              p.errors,
		ErrorsByStatus:      map[string]int64{},
		RequestsPerInstance: map[string]int64{},
		SessionsLost:        p.losses[workload.SessionLost],
		CartItemsLost:       p.losses[workload.CartItemsLost],
		UpdatesLost:         p.losses[workload.UpdatesLost],
		UploadsLost:         p.losses[workload.UploadsLost],
		MessagesLost:        p.losses[workload.MessagesLost],
		MessagesDuplicated:  p.losses[workload.MessagesDuplicated],
		CartItemsExtra:      p.losses[workload.CartItemsExtra],
		StaleReads:          p.losses[workload.StaleReads],
		UploadsUnfinished:   p.losses[workload.UploadsUnfinished],
	}
	for k, v := range p.byStatus {
		f.ErrorsByStatus[k] = v
	}
	for k, v := range p.perInst {
		f.RequestsPerInstance[k] = v
	}
	if d > 0 {
		f.ThroughputRPS = float64(p.answered) / d.Seconds()
	}
	f.P50ms, f.P99ms, f.P999ms, f.MaxMs = percentiles(p.hist)
	return f
}

// addCounts sums a phase's counts into the run's.
func addCounts(t, f *report.Figures) {
	t.Requests += f.Requests
	t.Streams += f.Streams
	t.Errors += f.Errors
	t.SessionsLost += f.SessionsLost
	t.CartItemsLost += f.CartItemsLost
	t.UpdatesLost += f.UpdatesLost
	t.UploadsLost += f.UploadsLost
	t.MessagesLost += f.MessagesLost
	t.MessagesDuplicated += f.MessagesDuplicated
	t.CartItemsExtra += f.CartItemsExtra
	t.StaleReads += f.StaleReads
	t.UploadsUnfinished += f.UploadsUnfinished
	for k, v := range f.ErrorsByStatus {
		t.ErrorsByStatus[k] += v
	}
	for k, v := range f.RequestsPerInstance {
		t.RequestsPerInstance[k] += v
	}
}

// grid lines the load series up with the rotation: instance j is in
// rotation in bucket b if it was at the bucket's middle.
func (c *Collector) grid(rots []Rotation) *grid {
	names := slices.Clone(c.instNames)
	for _, r := range rots {
		if !slices.Contains(names, r.Instance) {
			names = append(names, r.Instance)
		}
	}
	slices.SortFunc(names, byNumber)
	g := &grid{names: names}
	order := make([]int, len(c.instNames)) // collector column -> grid column
	for i, n := range c.instNames {
		order[i] = slices.Index(names, n)
	}
	for _, row := range c.load {
		out := make([]int64, len(names))
		for i, v := range row {
			out[order[i]] = v
		}
		g.load = append(g.load, out)
	}
	rots = slices.Clone(rots)
	slices.SortStableFunc(rots, func(a, b Rotation) int { return int(a.At - b.At) })
	for b := range g.load {
		mid := time.Duration(b)*Bucket + Bucket/2
		row := make([]bool, len(names))
		for _, r := range rots {
			if r.At > mid {
				break
			}
			row[slices.Index(names, r.Instance)] = r.In
		}
		g.inRot = append(g.inRot, row)
	}
	return g
}

// byNumber orders app-2 before app-10.
func byNumber(a, b string) int {
	na, ea := strconv.Atoi(a[strings.LastIndexByte(a, '-')+1:])
	nb, eb := strconv.Atoi(b[strings.LastIndexByte(b, '-')+1:])
	if ea == nil && eb == nil && na != nb {
		return na - nb
	}
	return strings.Compare(a, b)
}

// imbalance compares the requests served in buckets [b0, b1) by the
// instances in rotation for the whole span (model.ImbalanceOf: max over mean
// and the coefficient of variation). The first and last buckets are spared,
// for the rotation is polled. noise and noise95 are the floor chance
// alone gives for the same requests (model.ImbalanceNoise). nil with fewer
// than two such instances.
func (g *grid) imbalance(b0, b1 int) (maxOverMean, cv, noise, noise95 *float64) {
	b1 = min(b1, len(g.load))
	if b1-b0 <= 0 {
		return nil, nil, nil, nil
	}
	var loads []float64
	for j := range g.names {
		n, whole := int64(0), true
		for b := b0; b < b1; b++ {
			if !g.inRot[b][j] && b != b0 && b != b1-1 {
				whole = false
				break
			}
			n += g.load[b][j]
		}
		if whole {
			loads = append(loads, float64(n))
		}
	}
	if len(loads) < 2 {
		return nil, nil, nil, nil
	}
	im := model.ImbalanceOf(loads)
	total := 0.0
	for _, l := range loads {
		total += l
	}
	nz := model.ImbalanceNoise(total, len(loads))
	return ptr(im.MaxOverMean), ptr(im.CV), ptr(nz.Mean), ptr(nz.P95)
}

// secondsToFairShare is how long after joining at offset at the instance
// first carried model.FairShare of an equal share: time is cut into
// model.LoadWindow-long windows from the join, and the answer is the end of
// the first window in which it did (so one window is the fastest possible);
// nil if it never did.
func (g *grid) secondsToFairShare(name string, at time.Duration) *float64 {
	j := slices.Index(g.names, name)
	if j < 0 {
		return nil
	}
	per := int(model.LoadWindow / Bucket)
	for b := int(at / Bucket); b+per <= len(g.load); b += per {
		var mine, all float64
		inRot := 0
		for x := b; x < b+per; x++ {
			for k := range g.names {
				if g.inRot[x][k] {
					all += float64(g.load[x][k])
					inRot++
				}
			}
			mine += float64(g.load[x][j])
		}
		serving := (inRot + per/2) / per
		if model.ReachedFairShare(mine, all, serving) {
			return ptr((time.Duration(b+per)*Bucket - at).Seconds())
		}
	}
	return nil
}

// joinedAt is when name entered the rotation at or after from.
func joinedAt(rots []Rotation, name string, from time.Duration) (time.Duration, bool) {
	best, ok := time.Duration(0), false
	for _, r := range rots {
		if r.Instance == name && r.In && r.At >= from && (!ok || r.At < best) {
			best, ok = r.At, true
		}
	}
	return best, ok
}

// series is the load per instance per bucket, and latency and errors per
// second.
func (c *Collector) series(g *grid) report.Series {
	s := report.Series{BucketS: Bucket.Seconds(), Instances: g.names, Load: g.load}
	for _, sec := range c.seconds {
		p50, p99 := 0.0, 0.0
		if sec.hist.TotalCount() > 0 {
			p50 = float64(sec.hist.ValueAtQuantile(50)) / 1000
			p99 = float64(sec.hist.ValueAtQuantile(99)) / 1000
		}
		s.LatencyP50ms = append(s.LatencyP50ms, p50)
		s.LatencyP99ms = append(s.LatencyP99ms, p99)
		s.ErrorsPerS = append(s.ErrorsPerS, sec.errors)
	}
	return s
}
