package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/chart"
	"github.com/unstuck-dev/unstuck/internal/experiment/model"
	"github.com/unstuck-dev/unstuck/internal/experiment/sim"
)

// runSimulate runs the model as a discrete-event simulation (package sim)
// over ranges of instances and users, calibrated against a live run's
// results.json when there is one, and writes simulation.json and
// simulation.html.
func runSimulate(ctx context.Context, f experimentFlags, stdout, stderr io.Writer) int {
	cfg, err := f.simConfig()
	if err != nil {
		fmt.Fprintf(stderr, "unstuck experiment --simulate: %v\n", err)
		return 2
	}
	dir, err := prepareOut(f.out, f.force, "simulation.json", "simulation.html")
	if err != nil {
		fmt.Fprintf(stderr, "unstuck experiment --simulate: %v\n", err)
		return 2
	}
	live := f.calibrate
	if live == "" {
		if p := filepath.Join(dir, "results.json"); fileExists(p) {
			live = p
		}
	}
	if live != "" {
		l, err := sim.LoadLive(live)
		if err != nil {
			fmt.Fprintf(stderr, "unstuck experiment --simulate: --calibrate: %v\n", err)
			return 2
		}
		cfg.Live = l
	}
	fmt.Fprintf(stdout, "unstuck experiment --simulate: %s; instances %s, users %s, %v timeline, seed %d; results in %s\n",
		strings.Join(cfg.Archs, ", "), cfg.Instances, cfg.Users, cfg.Model.Duration, cfg.Model.Seed, dir)
	if cfg.Live != nil {
		fmt.Fprintf(stdout, "calibrating against %s\n", live)
	}
	p := &simPrinter{w: stdout, terminal: isTerminal(stdout)}
	rep, runErr := sim.Run(ctx, cfg, p.update)
	p.done()
	if rep == nil {
		fmt.Fprintf(stderr, "unstuck experiment --simulate: %v\n", runErr)
		return 1
	}
	var js, html bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		fmt.Fprintf(stderr, "unstuck experiment --simulate: %v\n", err)
		return 1
	}
	if err := rep.WriteHTML(&html); err != nil {
		fmt.Fprintf(stderr, "unstuck experiment --simulate: %v\n", err)
		return 1
	}
	for name, data := range map[string][]byte{"simulation.json": js.Bytes(), "simulation.html": html.Bytes()} {
		if err := writeFileAtomic(filepath.Join(dir, name), data); err != nil {
			fmt.Fprintf(stderr, "unstuck experiment --simulate: %v\n", err)
			return 1
		}
	}
	simTable(stdout, rep)
	fmt.Fprintln(stdout, "\nverdict:")
	for _, line := range rep.Verdict() {
		fmt.Fprintf(stdout, "  - %s\n", line)
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", filepath.Join(dir, "simulation.json"), filepath.Join(dir, "simulation.html"))
	if runErr != nil {
		fmt.Fprintln(stderr, "unstuck experiment --simulate: interrupted; the results cover what was simulated until then")
		return 130
	}
	return 0
}

// simConfig checks the flags of a simulation; errors name the flag.
func (f *experimentFlags) simConfig() (sim.Config, error) {
	var cfg sim.Config
	if f.set["store"] {
		return cfg, errors.New("--store: the simulation has no store to start; leave it out")
	}
	archs, err := f.archs()
	if err != nil {
		return cfg, err
	}
	for _, a := range archs {
		cfg.Archs = append(cfg.Archs, a.Name)
	}
	p := model.Default()
	cfg.Instances, cfg.Users = sim.DefaultInstances, sim.DefaultUsers
	if f.quick {
		p = model.Quick()
		cfg.Instances, cfg.Users = sim.Range{Min: 3, Max: 1000}, sim.Range{Min: 1000, Max: 100_000}
		cfg.Replications = 20
	}
	p.Seed = f.seed
	if f.set["duration"] {
		p.Duration = f.duration
	}
	if f.set["instances"] {
		if cfg.Instances, err = sim.ParseRange("--instances", f.instances); err != nil {
			return cfg, err
		}
	}
	if f.set["users"] {
		if cfg.Users, err = sim.ParseRange("--users", f.users); err != nil {
			return cfg, err
		}
	}
	switch {
	case cfg.Instances.Min < sim.InstancesLimit.Min || cfg.Instances.Max > sim.InstancesLimit.Max:
		return cfg, fmt.Errorf("--instances %s: want within %s", cfg.Instances, sim.InstancesLimit)
	case cfg.Users.Min < sim.UsersLimit.Min || cfg.Users.Max > sim.UsersLimit.Max:
		return cfg, fmt.Errorf("--users %s: want within %s", cfg.Users, sim.UsersLimit)
	case p.Duration <= 0 || p.Duration > time.Hour:
		return cfg, fmt.Errorf("--duration %v: want above 0 and at most 1h", p.Duration)
	}
	cfg.Model = p
	return cfg, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// simTable prints the sweep's headline figures, a row per architecture
// and scale.
func simTable(w io.Writer, rep *sim.Report) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "architecture\tinstances\tusers\timbalance max/mean\tsessions lost per crash\ts to fair share\tstore ops/s\t")
	for _, r := range rep.Rows {
		fair := "never"
		if r.SecondsToFairShare != nil {
			fair = fmt.Sprintf("%.1f", *r.SecondsToFairShare)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.2f\t%s\t%s\t%s\t\n", r.Architecture, r.Instances, chart.Num(float64(r.Users)),
			r.ImbalanceMaxOverMean, chart.Num(r.SessionsLostPerCrash), fair, chart.Num(r.StoreOpsPerS))
	}
	tw.Flush()
}

// simPrinter shows the simulation's progress: one line redrawn on a
// terminal, a line per stage and run otherwise.
type simPrinter struct {
	w        io.Writer
	terminal bool
	mu       sync.Mutex
	last     string
	drawn    bool
}

func (p *simPrinter) update(pr sim.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := fmt.Sprintf("%s %s %d %d", pr.Stage, pr.Architecture, pr.Instances, pr.Users)
	line := fmt.Sprintf("%-11s run %d/%d  %-8s %6d instances  %9s users  %5.0f/%.0fs simulated  %s  %v",
		pr.Stage, pr.Run, pr.Runs, pr.Architecture, pr.Instances, chart.Num(float64(pr.Users)),
		pr.SimSeconds, pr.Duration, pr.Phase, pr.Elapsed.Round(100*time.Millisecond))
	switch {
	case p.terminal:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
	case key != p.last:
		fmt.Fprintln(p.w, line)
	}
	p.last = key
}

func (p *simPrinter) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
