// Package live runs the experiment for real: for each architecture it
// starts the shared store, the app instances as processes and the balancer,
// plays the workload model's users against them open-loop while the
// timeline scales out, drains, crashes and restarts the store, and measures
// what the users lost, the latency they saw and how the load spread.
package live

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
	"github.com/unstuck-dev/unstuck/internal/experiment/report"
	"github.com/unstuck-dev/unstuck/internal/shop/textstats"
)

// Config is one experiment.
type Config struct {
	// Archs are the architectures to run, in order. Required.
	Archs []model.Arch
	// Params is the workload model and timeline. Required.
	Params model.Params
	// Store is "nats" (an embedded NATS server), "redis" (a private
	// redis-server) or a store URL the experiment does not own.
	Store string
	// Exe is the unstuck binary that runs the app instances [this one].
	Exe string
	// LogDir receives each architecture's instance, store and balancer
	// logs; empty discards them.
	LogDir string
	// Progress, if set, is called about twice a second while running.
	Progress func(Progress)
	// Settle is how long after the timeline the users' last checks,
	// chat deliveries and uploads may take [10s].
	Settle time.Duration
	// JobDelay is the pause after each of a file job's steps [the
	// model's Script.UploadJob over textstats.DefaultSteps: 100ms by
	// default]. The simulation takes the job's time from the model, so
	// the two agree unless this is set.
	JobDelay time.Duration
	// Command and Quick are recorded in the results.
	Command string
	Quick   bool
}

// Progress is what the runner is doing, for a progress display.
type Progress struct {
	Arch      string
	ArchIndex int // 0-based
	ArchCount int
	// Stage is "starting", "running", "settling" or "stopping".
	Stage   string
	Phase   string
	Elapsed time.Duration
	Total   time.Duration
	RPS     float64
	Users   int
	// Requests, Errors and Losses so far in this architecture's run.
	Requests, Errors, Losses int64
}

// Run runs every architecture in turn. When ctx ends it stops everything
// it started and returns what was measured so far, with Complete false, and
// ctx's error.
func Run(ctx context.Context, cfg Config) (*report.Results, error) {
	if len(cfg.Archs) == 0 {
		return nil, errors.New("live: no architecture to run")
	}
	if err := cfg.Params.Validate(); err != nil {
		return nil, err
	}
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Exe = exe
	}
	if cfg.Settle == 0 {
		cfg.Settle = 10 * time.Second
	}
	if cfg.JobDelay == 0 {
		cfg.JobDelay = cfg.Params.Script.UploadJob / textstats.DefaultSteps
	}
	res := &report.Results{
		SchemaVersion: 1,
		Parameters:    parameters(cfg),
		Machine:       machine(),
		StartedAt:     time.Now().UTC(),
		Architectures: map[string]*report.Architecture{},
	}
	complete := true
	for i, a := range cfg.Archs {
		if ctx.Err() != nil {
			complete = false
			break
		}
		r := &archRun{cfg: &cfg, arch: a, index: i}
		out := r.run(ctx)
		res.Order = append(res.Order, a.Name)
		res.Architectures[a.Name] = out
		if !out.Complete {
			complete = false
		}
	}
	res.FinishedAt = time.Now().UTC()
	res.Machine.LoadAvgEnd = loadAvg()
	res.Complete = complete && ctx.Err() == nil
	return res, ctx.Err()
}

func parameters(cfg Config) report.Parameters {
	p := cfg.Params
	out := report.Parameters{
		Users: p.Users, DurationS: p.Duration.Seconds(), Instances: p.Instances,
		Store: redactURL(cfg.Store), Seed: p.Seed, Quick: cfg.Quick, Command: cfg.Command,
	}
	for _, a := range cfg.Archs {
		out.Architectures = append(out.Architectures, a.Name)
	}
	for _, s := range p.Spans() {
		out.Phases = append(out.Phases, report.PhaseSpan{Name: s.Name, StartS: s.Start.Seconds(), EndS: s.End.Seconds()})
	}
	out.Model = p.Describe()
	return out
}

// logTo opens the log of one architecture's run.
func (cfg *Config) logTo(arch string) (io.Writer, func(), error) {
	if cfg.LogDir == "" {
		return io.Discard, func() {}, nil
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, nil, err
	}
	f, err := os.Create(filepath.Join(cfg.LogDir, arch+".log"))
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func fmtErr(what string, err error) string { return fmt.Sprintf("%s: %v", what, err) }
