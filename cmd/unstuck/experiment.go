package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/unstuck-dev/unstuck/internal/experiment/live"
	"github.com/unstuck-dev/unstuck/internal/experiment/model"
	"github.com/unstuck-dev/unstuck/internal/experiment/report"
	"github.com/unstuck-dev/unstuck/internal/storeurl"
)

// experimentFlags are `unstuck experiment`'s settings.
type experimentFlags struct {
	arch      string
	users     string // a number, or a range with --simulate
	duration  time.Duration
	instances string // a number, or a range with --simulate
	store     string
	out       string
	force     bool
	quick     bool
	seed      uint64
	simulate  bool
	calibrate string
	set       map[string]bool // flags given on the command line
}

// Limits of the live run: every user is a few goroutines and connections,
// every instance a process, on the machine running the experiment.
const (
	maxLiveUsers     = 10000
	maxLiveInstances = 16
	minLiveDuration  = 5 * time.Second
	maxLiveDuration  = time.Hour
)

func runExperiment(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("unstuck experiment", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := model.Default()
	var f experimentFlags
	fs.StringVar(&f.arch, "arch", "sticky,store,affinity,cookie", "architectures to compare, comma-separated: sticky, store, affinity, cookie")
	fs.StringVar(&f.users, "users", fmt.Sprint(def.Users), "mean number of users active at once (with --simulate a range, e.g. 1e3..1e7)")
	fs.DurationVar(&f.duration, "duration", def.Duration, "length of each architecture's timeline (all six phases)")
	fs.StringVar(&f.instances, "instances", fmt.Sprint(def.Instances), "app instances at the start: one more joins, one is drained, one crashes (with --simulate a range, e.g. 3..10000)")
	fs.StringVar(&f.store, "store", "nats", `shared store: "nats" (embedded, nothing to install), "redis" (a private redis-server the experiment starts), or a URL it does not own: redis://..., nats://..., dynamodb://... (then the store_restart phase cannot restart it)`)
	fs.StringVar(&f.out, "out", "", "directory for results.json, report.html and the logs [experiment-DATE-TIME]; an existing one needs --force")
	fs.BoolVar(&f.force, "force", false, "write into an existing --out directory, replacing its results")
	fs.BoolVar(&f.quick, "quick", false, "a short run (under a minute for all four architectures): fewer users, a 10s timeline")
	fs.Uint64Var(&f.seed, "seed", def.Seed, "seed of every random draw: the same seed gives the same users and scripts")
	fs.BoolVar(&f.simulate, "simulate", false, "run the model as a discrete-event simulation instead (no sockets) and write simulation.json and simulation.html; --instances and --users then take ranges such as 3..10000 and 1e3..1e7")
	fs.StringVar(&f.calibrate, "calibrate", "", "with --simulate: a live run's results.json to calibrate against [--out's results.json, if there is one]")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: unstuck experiment [flags]

Runs the same workload against each architecture in turn (sticky sessions,
a shared store, affinity with a near cache, client-side cookies): it starts
the store, the app instances as processes and the balancer itself, plays
simulated users open-loop through one timeline (steady, scale_out,
maintenance, crash, store_restart, recovery) and measures what users lost,
the latency they saw and how the load spread. Writes DIR/results.json and
DIR/report.html and prints a table. Ctrl-C stops everything it started and
still writes what was measured.

Flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unstuck experiment: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	if f.simulate {
		return runSimulate(ctx, f, stdout, stderr)
	}
	cfg, err := f.liveConfig()
	if err != nil {
		fmt.Fprintf(stderr, "unstuck experiment: %v\n", err)
		return 2
	}
	dir, err := prepareOut(f.out, f.force, "results.json", "report.html")
	if err != nil {
		fmt.Fprintf(stderr, "unstuck experiment: %v\n", err)
		return 2
	}
	cfg.LogDir = filepath.Join(dir, "logs")
	cfg.Command = "unstuck experiment " + strings.Join(args, " ")
	if exe, err := os.Executable(); err == nil {
		cfg.Exe = exe
	}

	printer := &live.Printer{W: stdout, Terminal: isTerminal(stdout)}
	cfg.Progress = printer.Update
	fmt.Fprintf(stdout, "unstuck experiment: %s; %d users, %d instances, %v per architecture, store %s, seed %d; results in %s\n",
		strings.Join(archNames(cfg.Archs), ", "), cfg.Params.Users, cfg.Params.Instances, cfg.Params.Duration, f.store, cfg.Params.Seed, dir)
	res, runErr := live.Run(ctx, cfg)
	printer.Done()
	if res == nil {
		fmt.Fprintf(stderr, "unstuck experiment: %v\n", runErr)
		return 1
	}
	if runErr == nil {
		fmt.Fprintf(stdout, "calibrating the simulation against these figures (%d seeds per architecture)\n", calibrationReplications)
		res.Calibration = calibrateRun(ctx, res)
	}
	if err := writeResults(dir, res); err != nil {
		fmt.Fprintf(stderr, "unstuck experiment: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout)
	report.Table(stdout, res)
	fmt.Fprintln(stdout, "\nverdict:")
	for _, line := range report.Verdict(res) {
		fmt.Fprintf(stdout, "  - %s\n", line)
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", filepath.Join(dir, "results.json"), filepath.Join(dir, "report.html"))
	if runErr != nil {
		fmt.Fprintln(stderr, "unstuck experiment: interrupted; the results cover what was measured until then")
		return 130
	}
	return 0
}

// archs checks --arch.
func (f *experimentFlags) archs() ([]model.Arch, error) {
	var out []model.Arch
	seen := map[string]bool{}
	for _, name := range strings.Split(f.arch, ",") {
		name = strings.TrimSpace(name)
		a, err := model.ArchNamed(name)
		if err != nil {
			return nil, fmt.Errorf("--arch %q: want a comma-separated list of sticky, store, affinity, cookie", f.arch)
		}
		if seen[name] {
			return nil, fmt.Errorf("--arch %q: %s twice", f.arch, name)
		}
		seen[name] = true
		out = append(out, a)
	}
	return out, nil
}

// liveConfig checks the flags of a live run and turns them into its
// configuration; errors name the flag.
func (f *experimentFlags) liveConfig() (live.Config, error) {
	var cfg live.Config
	archs, err := f.archs()
	if err != nil {
		return cfg, err
	}
	cfg.Archs = archs
	if f.set["calibrate"] {
		return cfg, errors.New("--calibrate goes with --simulate")
	}
	p := model.Default()
	if f.quick {
		// The model's quick run, on a timeline short enough that four
		// architectures, with their processes' start and stop, take
		// under a minute.
		p = model.Quick()
		p.Duration = 8 * time.Second
		cfg.Settle = 3 * time.Second
	}
	p.Seed = f.seed
	if !f.quick || f.set["users"] {
		n, err := wholeNumber(f.users)
		if err != nil {
			return cfg, fmt.Errorf("--users %q: want a whole number", f.users)
		}
		p.Users = n
	}
	if !f.quick || f.set["duration"] {
		p.Duration = f.duration
	}
	n, err := wholeNumber(f.instances)
	if err != nil {
		return cfg, fmt.Errorf("--instances %q: want a whole number", f.instances)
	}
	p.Instances = n
	switch {
	case p.Users < 1 || p.Users > maxLiveUsers:
		return cfg, fmt.Errorf("--users %d: want 1 to %d for a live run (use --simulate for more)", p.Users, maxLiveUsers)
	case p.Instances < 3 || p.Instances > maxLiveInstances:
		return cfg, fmt.Errorf("--instances %d: want 3 to %d for a live run (one is drained and one crashes; use --simulate for more)", p.Instances, maxLiveInstances)
	case p.Duration < minLiveDuration || p.Duration > maxLiveDuration:
		return cfg, fmt.Errorf("--duration %v: want %v to %v", p.Duration, minLiveDuration, maxLiveDuration)
	}
	// The store's outage must fit its phase, whatever the duration.
	for _, s := range p.Spans() {
		if s.Name == model.StoreRestart {
			p.Timeline.StoreDowntime = min(p.Timeline.StoreDowntime, (s.End-s.Start)/2)
		}
	}
	if err := p.Validate(); err != nil {
		return cfg, err
	}
	switch f.store {
	case "nats", "redis":
	default:
		kind, err := storeurl.Kind(f.store)
		if err != nil {
			return cfg, fmt.Errorf("--store: %w (or nats, or redis for a private one)", err)
		}
		if kind == "memory" {
			return cfg, errors.New("--store memory: each architecture needs a store shared by its instances: pick nats, redis or a shared store's URL")
		}
	}
	cfg.Store = f.store
	cfg.Params = p
	cfg.Quick = f.quick
	return cfg, nil
}

// prepareOut creates the output directory (a fresh, dated one by default).
// It refuses a directory that already holds one of the files the run
// would write, unless forced: nothing is overwritten silently. (A live
// run's directory may receive a simulation, and the other way round.)
func prepareOut(dir string, force bool, files ...string) (string, error) {
	if dir == "" {
		dir = "experiment-" + time.Now().Format("20060102-150405")
	}
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return "", fmt.Errorf("--out %s: exists and is not a directory", dir)
		}
		for _, name := range files {
			if fileExists(filepath.Join(dir, name)) && !force {
				return "", fmt.Errorf("--out %s: already holds %s; choose another directory, or pass --force to replace it", dir, name)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("--out %s: %w", dir, err)
	}
	return dir, nil
}

// writeResults writes results.json and report.html, each through a
// temporary file so a reader never sees half of one.
func writeResults(dir string, res *report.Results) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, "results.json"), append(b, '\n')); err != nil {
		return err
	}
	var html strings.Builder
	if err := report.HTML(&html, res); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "report.html"), []byte(html.String()))
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func archNames(as []model.Arch) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Name)
	}
	return out
}

// isTerminal reports whether w is a terminal, to redraw progress in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// wholeNumber parses "300" or "1e3".
func wholeNumber(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v != float64(int(v)) {
		return 0, errors.New("not a whole number")
	}
	return int(v), nil
}
