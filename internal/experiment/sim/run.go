package sim

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// Progress is what Run reports while it works, about once per simulated
// second of a run (and at each stage's start).
type Progress struct {
	// Stage is "theory", "calibration" or "sweep".
	Stage        string
	Architecture string
	Instances    int
	Users        int
	// Run counts the sweep's runs: this is run Run of Runs (1-based).
	Run, Runs int
	// SimSeconds of Duration simulated so far in this run.
	SimSeconds, Duration float64
	Phase                string
	// Elapsed is wall time since Run started.
	Elapsed time.Duration
}

// Run simulates cfg: the calibration against cfg.Live (if any), then
// every architecture at every sweep point, in increasing scale, with the
// theory checks running beside them. progress may be nil. When ctx is cancelled Run stops within about
// a simulated second and returns what it computed so far (Report.Complete
// false, the interrupted run's row marked incomplete) with ctx's error.
func Run(ctx context.Context, cfg Config, progress func(Progress)) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	began := time.Now()
	report := func(p Progress) {
		if progress != nil {
			p.Elapsed = time.Since(began)
			progress(p)
		}
	}
	base := cfg.Model
	rep := &Report{Model: base.Describe(), series: map[string]runSeries{}}

	// The theory checks run beside the simulation, on the second core
	// (the target is wall time on two): they draw from their own streams
	// (theoryChecks' seeds depend on nothing the runs touch) and share no
	// state with them, so every figure is the one a sequential run gives.
	// Every return waits for them, so the report always holds what they
	// computed.
	report(Progress{Stage: "theory"})
	type theoryOut struct {
		rows []TheoryRow
		err  error
	}
	thc := make(chan theoryOut, 1)
	go func() {
		rows, err := theoryChecks(ctx, base.Seed, cfg.TheoryMaxBins)
		thc <- theoryOut{rows, err}
	}()
	finish := func(err error) (*Report, error) {
		th := <-thc
		rep.Theory = th.rows
		if err == nil {
			err = th.err
		}
		if err != nil {
			rep.Complete = false
		}
		return rep, err
	}
	report(Progress{Stage: "calibration"})
	var err error
	rep.Calibration, err = calibrate(ctx, &cfg, rep)
	if err != nil {
		return finish(err)
	}
	points := cfg.Points()
	runs := len(points) * len(cfg.Archs)
	k := 0
	for _, pt := range points {
		for _, name := range cfg.Archs {
			k++
			a, _ := model.ArchNamed(name)
			p := base
			p.Users, p.Instances = pt.Users, pt.Instances
			p.Script.JobWorkers = p.WorkersAtScale()
			prog := func(t float64) {
				report(Progress{Stage: "sweep", Architecture: name, Instances: pt.Instances, Users: pt.Users,
					Run: k, Runs: runs, SimSeconds: t, Duration: p.Duration.Seconds(),
					Phase: p.Timeline.PhaseAt(p.Duration, time.Duration(t*float64(time.Second)))})
			}
			res, err := simulate(ctx, &p, a, cfg.ExactLimit, prog)
			if res != nil {
				rep.Rows = append(rep.Rows, rowFrom(res, a))
				if pt == points[len(points)-1] {
					rep.keepSeries(name, res)
				}
			}
			if err != nil {
				return finish(err)
			}
			if pt.Users >= 1_000_000 {
				runtime.GC() // hand the finished run's users back before the next one
			}
		}
	}
	rep.Complete = true
	return finish(nil)
}

// simulate runs one architecture at one scale. It returns the result even
// when cancelled (marked incomplete).
func simulate(ctx context.Context, p *model.Params, a model.Arch, exactLimit float64, progress func(float64)) (*result, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.Users >= maxSlots*3/5 {
		return nil, fmt.Errorf("sim: %d users is more than the simulator holds", p.Users)
	}
	// Past exactLimit requests, sticky counts requests per instance
	// (aggregate.go) and affinity pins tokens instead of users; store,
	// cookie and affinity route every request, since p2c and the
	// bounded-load rule decide each by the load at that instant.
	large := exactLimit < 0 || p.RequestRate()*p.Duration.Seconds() > exactLimit
	exact := a.Name != model.Sticky.Name || !large
	start := time.Now()
	e := newEngine(p, a, exact, a.Spill && large)
	err := e.run(ctx, progress)
	return e.result(time.Since(start), err == nil), err
}

func (r *Report) keepSeries(name string, res *result) {
	r.series[name] = runSeries{instances: res.instances, users: res.users, points: res.series,
		spans: res.p.Spans(), joiner: res.instances}
}
