package live

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/unstuck-dev/unstuck/internal/demo"
	"github.com/unstuck-dev/unstuck/internal/experiment/metrics"
	"github.com/unstuck-dev/unstuck/internal/experiment/model"
	"github.com/unstuck-dev/unstuck/internal/experiment/report"
	"github.com/unstuck-dev/unstuck/internal/experiment/workload"
	"github.com/unstuck-dev/unstuck/lb"
)

// archRun is one architecture's run: its processes, its timeline and what
// was measured.
type archRun struct {
	cfg   *Config
	arch  model.Arch
	index int
	out   *report.Architecture

	store store
	fleet *demo.Fleet
	bl    *lb.Balancer
	start time.Time

	mu        sync.Mutex
	events    []report.Event
	rotations []metrics.Rotation
	scaleOut  string
}

// instanceName is the fleet's name of the model's instance i (0-based):
// the fleet names instances app-1, app-2, ... in the order they are added.
func instanceName(i int) string { return fmt.Sprintf("app-%d", i+1) }

func (r *archRun) run(ctx context.Context) *report.Architecture {
	a := r.arch
	r.out = &report.Architecture{
		Status:      "failed",
		Description: Descriptions[a.Name],
		Balancer:    describeBalancer(a),
		Phases:      map[string]*report.Figures{},
	}
	r.progress(Progress{Stage: "starting"})
	logw, closeLog, err := r.cfg.logTo(a.Name)
	if err != nil {
		r.note(fmtErr("log", err))
		return r.out
	}
	defer closeLog()
	log := newLogger(logw)

	dir, err := tempDir("", a.Name)
	if err != nil {
		r.note(fmtErr("data directory", err))
		return r.out
	}
	defer os.RemoveAll(dir)
	if r.store, err = openStore(r.cfg.Store, dir, logw); err != nil {
		r.note(fmtErr("store", err))
		return r.out
	}
	defer r.store.Close()
	r.out.Store = r.store.Describe()
	if !r.store.Restartable() {
		r.note("store_restart: the experiment did not start this store, so it cannot stop it: the phase runs without a fault and shows nothing of the store's own outage")
	}

	args := append(r.store.AppArgs(), appArgs(a)...)
	args = append(args, "--job-delay", r.cfg.JobDelay.String(), "--job-visibility", "3s", "--drain", "1s")
	r.out.App = "unstuck app " + redactURL(strings.Join(args, " "))
	var env []string
	if a.Sessions == model.SessionsCookie {
		// One sealing key for the fleet, in the environment rather than
		// on a command line.
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		env = append(os.Environ(), "UNSTUCK_COOKIE_KEYS="+hex.EncodeToString(key))
	}
	r.fleet = &demo.Fleet{
		Command: func(name, addr string) *exec.Cmd {
			cmd := exec.Command(r.cfg.Exe, append([]string{"app", "--listen", addr, "--id", name}, args...)...)
			cmd.Env = env
			return cmd
		},
		Output:       logw,
		Logger:       log,
		StopGrace:    3 * time.Second,
		ReadyTimeout: 30 * time.Second,
	}
	defer func() {
		r.progress(Progress{Stage: "stopping"})
		// The measuring is over: no need to wait for event streams the
		// balancer left open upstream (the timeline is done, so nothing
		// else reads StopGrace now).
		r.fleet.StopGrace = 500 * time.Millisecond
		r.fleet.Stop()
	}()
	if err := r.startFleet(ctx); err != nil {
		r.note(fmtErr("starting the app instances", err))
		return r.out
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.note(fmtErr("balancer", err))
		return r.out
	}
	var backends []lb.BackendConfig
	for _, in := range r.fleet.List() {
		backends = append(backends, lb.BackendConfig{Name: in.Name, URL: "http://" + in.Addr, Weight: 1})
	}
	r.bl, err = lb.New(balancerConfig(a, l.Addr().String(), backends), lb.Options{Logger: log})
	if err != nil {
		l.Close()
		r.note(fmtErr("balancer", err))
		return r.out
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = r.bl.Serve(l) }()
	defer func() {
		// Every user is gone by now: nothing to be graceful about.
		_ = r.bl.Close()
		<-served
	}()
	if err := r.waitUp(ctx, len(backends)); err != nil {
		r.note(fmtErr("balancer", err))
		return r.out
	}

	// A moment to spare, so the first users do not meet a half-ready run.
	r.start = time.Now().Add(200 * time.Millisecond)
	spans := r.cfg.Params.Spans()
	var mspans []metrics.Span
	for _, s := range spans {
		mspans = append(mspans, metrics.Span{Name: s.Name, Start: s.Start, End: s.End})
	}
	col := metrics.NewCollector(r.start, mspans)
	drv, err := workload.New(workload.Config{
		BaseURL:        "http://" + l.Addr().String(),
		Params:         r.cfg.Params,
		Settle:         r.cfg.Settle,
		RequestTimeout: 10 * time.Second,
		Recorder:       col,
	})
	if err != nil {
		r.note(fmtErr("workload", err))
		return r.out
	}

	auxCtx, stopAux := context.WithCancel(ctx)
	var aux sync.WaitGroup
	aux.Go(func() { r.timeline(auxCtx) })
	aux.Go(func() { r.watchRotation(auxCtx) })
	resources := map[string]metrics.Resources{}
	aux.Go(func() { r.measure(auxCtx, spans, resources) })
	aux.Go(func() { r.report(auxCtx, col, drv) })
	runErr := drv.Run(ctx, r.start)
	stopAux()
	aux.Wait()

	r.mu.Lock()
	in := metrics.Input{Rotations: slices.Clone(r.rotations), ScaleOut: r.scaleOut, Resources: resources}
	r.out.Events = slices.Clone(r.events)
	r.mu.Unlock()
	r.out.Figures, r.out.Phases, r.out.Series = col.Build(in)
	r.countUsers(spans)
	r.out.Complete = runErr == nil
	switch {
	case runErr == nil:
		r.out.Status = "complete"
	case ctx.Err() != nil:
		r.out.Status = "interrupted"
		r.note("interrupted: the figures cover the run until then")
	default:
		r.note(fmtErr("workload", runErr))
	}
	return r.out
}

func (r *archRun) note(s string) {
	r.mu.Lock()
	r.out.Notes = append(r.out.Notes, s)
	r.mu.Unlock()
}

func (r *archRun) progress(p Progress) {
	if r.cfg.Progress == nil {
		return
	}
	p.Arch, p.ArchIndex, p.ArchCount = r.arch.Name, r.index, len(r.cfg.Archs)
	p.Total = r.cfg.Params.Duration
	r.cfg.Progress(p)
}

// startFleet starts the initial instances at once, so a run is ready in the
// time one instance takes to start.
func (r *archRun) startFleet(ctx context.Context) error {
	n := r.cfg.Params.Instances
	errs := make(chan error, n)
	for range n {
		go func() { _, err := r.fleet.Add(ctx); errs <- err }()
	}
	var all []error
	for range n {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// waitUp waits until the balancer sees n backends up.
func (r *archRun) waitUp(ctx context.Context, n int) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		up := 0
		for _, b := range r.bl.Backends() {
			if b.State == "up" {
				up++
			}
		}
		if up == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d instances up after 20s", up, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// since is the offset of now in the run.
func (r *archRun) since() time.Duration { return time.Since(r.start) }

func (r *archRun) event(action, detail string) { r.eventAt(r.since(), action, detail) }

func (r *archRun) eventAt(at time.Duration, action, detail string) {
	r.mu.Lock()
	r.events = append(r.events, report.Event{
		AtS: at.Seconds(), Phase: r.cfg.Params.Timeline.PhaseAt(r.cfg.Params.Duration, at),
		Action: action, Detail: detail,
	})
	r.mu.Unlock()
}

// timeline performs the model's events at their times. Each runs on its
// own, so one that takes long (an instance slow to start or to stop) does
// not delay the next.
func (r *archRun) timeline(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, ev := range r.cfg.Params.Events() {
		if !sleepCtx(ctx, time.Until(r.start.Add(ev.At))) {
			return
		}
		wg.Go(func() { r.perform(ctx, ev) })
	}
}

// perform does one event of the timeline.
func (r *archRun) perform(ctx context.Context, ev model.Event) {
	switch ev.Kind {
	case model.Join:
		info, err := r.fleet.Add(ctx)
		if err != nil {
			r.event("join", "failed: "+err.Error())
			r.note(fmtErr("scale_out: the new instance did not start", err))
			return
		}
		if _, err := r.bl.Add(lb.BackendConfig{Name: info.Name, URL: "http://" + info.Addr, Weight: 1}); err != nil {
			r.event("join", "failed: "+err.Error())
			return
		}
		r.mu.Lock()
		r.scaleOut = info.Name
		r.mu.Unlock()
		r.event("join", info.Name+" started and added to the balancer")
	case model.Drain:
		name := instanceName(ev.Instance)
		if err := r.bl.Drain(name); err != nil {
			r.event("drain", "failed: "+err.Error())
			return
		}
		r.event("drain", name+" drained at the balancer: no new users")
	case model.Stop:
		name := instanceName(ev.Instance)
		at, begun := r.since(), time.Now()
		if err := r.fleet.Terminate(name); err != nil {
			r.eventAt(at, "stop", "failed: "+err.Error())
			return
		}
		r.eventAt(at, "stop", fmt.Sprintf("%s stopped (SIGTERM; gone after %.1f s)", name, time.Since(begun).Seconds()))
	case model.Kill:
		name := instanceName(ev.Instance)
		if err := r.fleet.Crash(name); err != nil {
			r.event("kill", "failed: "+err.Error())
			return
		}
		r.event("kill", name+" killed (SIGKILL)")
	case model.StoreDown:
		if !r.store.Restartable() {
			r.event("store_down", "skipped: the experiment did not start the store")
			return
		}
		if err := r.store.Stop(); err != nil {
			r.event("store_down", "failed: "+err.Error())
			return
		}
		r.event("store_down", "the shared store stopped")
	case model.StoreUp:
		if !r.store.Restartable() {
			return
		}
		if err := r.store.Start(); err != nil {
			r.event("store_up", "failed: "+err.Error())
			r.note(fmtErr("store_restart: the store did not come back", err))
			return
		}
		r.event("store_up", "the shared store started again on its port, with its data")
	}
}

// watchRotation records when each instance enters or leaves the
// balancer's rotation (up and not draining), every 100 ms.
func (r *archRun) watchRotation(ctx context.Context) {
	in := map[string]bool{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	sleepCtx(ctx, time.Until(r.start))
	for {
		at := max(r.since(), 0)
		for _, b := range r.bl.Backends() {
			up := b.State == "up"
			was, seen := in[b.Name]
			if seen && was == up {
				continue
			}
			in[b.Name] = up
			r.mu.Lock()
			r.rotations = append(r.rotations, metrics.Rotation{At: at, Instance: b.Name, In: up})
			r.mu.Unlock()
			if seen {
				// What the balancer decided, next to what the timeline did:
				// an ejection for 503s during the store's outage shows here.
				word := "back in rotation"
				if !up {
					word = "out of rotation (" + b.State + ")"
				}
				r.eventAt(at, "balancer", b.Name+" "+word)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// measure samples the instances' CPU every second and, at every phase's
// end, the CPU and the store's operations, into per-phase resources.
func (r *archRun) measure(ctx context.Context, spans []model.Span, out map[string]metrics.Resources) {
	cpu := newCPUMeter()
	pids := func() []int {
		var p []int
		for _, in := range r.fleet.List() {
			if in.PID != 0 {
				p = append(p, in.PID)
			}
		}
		return p
	}
	sleepCtx(ctx, time.Until(r.start))
	lastCPU, cpuOK := cpu.sample(pids())
	lastOps, opsOK := r.store.Ops()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for _, s := range spans {
		end := r.start.Add(s.End)
		for time.Now().Before(end) {
			timer := time.NewTimer(min(time.Until(end), time.Second))
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			cpu.sample(pids())
		}
		total, ok := cpu.sample(pids())
		ops, ook := r.store.Ops()
		var res metrics.Resources
		if ok && cpuOK {
			res.CPUSeconds = ptr(total - lastCPU)
		}
		if ook && opsOK && ops >= lastOps {
			res.StoreOps = ptr(float64(ops - lastOps))
		}
		lastCPU, lastOps, cpuOK, opsOK = total, ops, ok, ook
		r.mu.Lock()
		out[s.Name] = res
		r.mu.Unlock()
	}
}

// report sends progress twice a second.
func (r *archRun) report(ctx context.Context, col *metrics.Collector, drv *workload.Driver) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		el := now.Sub(r.start)
		stage := "running"
		if el >= r.cfg.Params.Duration {
			stage = "settling"
		}
		l := col.Live(now)
		r.progress(Progress{
			Stage: stage, Phase: r.cfg.Params.Timeline.PhaseAt(r.cfg.Params.Duration, max(el, 0)),
			Elapsed: max(el, 0), RPS: l.RPS, Users: drv.Active(),
			Requests: l.Requests, Errors: l.Errors, Losses: l.Losses,
		})
	}
}

// countUsers fills in how many users were in the system in each phase and
// in the whole run.
func (r *archRun) countUsers(spans []model.Span) {
	users := workload.Users(&r.cfg.Params)
	r.out.Users = len(users)
	for _, s := range spans {
		n := 0
		for _, u := range users {
			if u.Start < s.End && u.End() > s.Start {
				n++
			}
		}
		if f := r.out.Phases[s.Name]; f != nil {
			f.Users = n
		}
	}
}

func ptr(v float64) *float64 { return &v }

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
