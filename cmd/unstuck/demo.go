package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/unstuck-dev/unstuck/internal/demo"
	"github.com/unstuck-dev/unstuck/internal/storeurl"
	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
	"github.com/unstuck-dev/unstuck/lb"
	"github.com/unstuck-dev/unstuck/lb/dashboard"
)

// demoFlags are `unstuck demo`'s settings.
type demoFlags struct {
	instances     int
	store, mode   string
	sessions      string // app's name for the mode, accepted too
	listen, admin string
	jobDelay      time.Duration
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("unstuck demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f demoFlags
	fs.IntVar(&f.instances, "instances", 3, "how many shop instances to start (1 to 16)")
	fs.StringVar(&f.store, "store", "nats", `shared store: "nats" (embedded, nothing to install), nats://A:4222,nats://B:4222[?replicas=3] (a cluster), redis://HOST:PORT[?wait=1], redis+sentinel://S1:26379,S2:26379/MASTER, dynamodb://TABLE?region=R&endpoint=URL&create=true (sessions; chat and jobs over the embedded NATS), or memory (with --mode sticky)`)
	fs.StringVar(&f.mode, "mode", "store", `"store": all state in the shared store, no stickiness needed; "sticky": sessions in each instance's memory plus a sticky cookie, to compare; "cookie": sessions sealed into the browser's cookie, logouts pushed to every instance over the store`)
	fs.StringVar(&f.sessions, "sessions", "", `the same choice in unstuck app's words: "shared" (= --mode store), "memory" (= sticky) or "cookie"`)
	fs.StringVar(&f.listen, "listen", ":8080", "the shop's address (the balancer)")
	fs.StringVar(&f.admin, "admin", "127.0.0.1:9090", "the dashboard, admin and control API address")
	fs.DurationVar(&f.jobDelay, "job-delay", 400*time.Millisecond, "pause after each of a file job's 20 steps")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: unstuck demo [flags]\n\nStarts an embedded store, shop instances as separate processes and the balancer in front,\nprints the shop and dashboard URLs, and stops everything on Ctrl-C.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if err := f.validate(); err != nil {
		fmt.Fprintf(stderr, "unstuck demo: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := runDemoSystem(ctx, f, log, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "unstuck demo: %v\n", err)
		return 1
	}
	return 0
}

func (f *demoFlags) validate() error {
	if f.instances < 1 || f.instances > 16 {
		return fmt.Errorf("--instances %d: want 1 to 16", f.instances)
	}
	if f.sessions != "" {
		mode, ok := map[string]string{"shared": "store", "memory": "sticky", "cookie": "cookie"}[f.sessions]
		if !ok {
			return fmt.Errorf("--sessions %q: want shared, memory or cookie", f.sessions)
		}
		if f.mode != "store" && f.mode != mode {
			return fmt.Errorf("--sessions %s and --mode %s disagree: give one", f.sessions, f.mode)
		}
		f.mode = mode
	}
	if f.mode != "store" && f.mode != "sticky" && f.mode != "cookie" {
		return fmt.Errorf("--mode %q: want store, sticky or cookie", f.mode)
	}
	if f.store != "nats" {
		if _, err := storeurl.Kind(f.store); err != nil {
			return fmt.Errorf("--store: %w (or nats for the embedded one)", err)
		}
	}
	if f.store == "memory" && f.mode == "store" {
		return errors.New("--store memory keeps state inside each instance: use it with --mode sticky, or pick nats or redis://")
	}
	if f.store == "memory" && f.mode == "cookie" {
		return errors.New("--store memory cannot carry logouts between instances: use --mode cookie with nats or redis://")
	}
	return nil
}

func runDemoSystem(ctx context.Context, f demoFlags, log *slog.Logger, stdout, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "unstuck-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// Both listeners first: a taken or bad address fails at once, before
	// anything is started.
	shopL, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	defer shopL.Close()
	adminL, err := net.Listen("tcp", f.admin)
	if err != nil {
		return fmt.Errorf("--admin: %w", err)
	}
	defer adminL.Close()

	// The embedded NATS is the store for "nats", and the backplane for
	// chat and jobs when the store holds sessions only (memory: each
	// instance's own, in sticky mode; dynamodb://).
	appArgs := []string{"--store", f.store}
	kind, _ := storeurl.Kind(f.store)
	if f.store == "nats" || kind == "memory" || kind == "dynamodb" {
		n, err := demo.StartNATS(dir)
		if err != nil {
			return err
		}
		defer n.Shutdown()
		switch f.store {
		case "nats", "memory":
			appArgs = []string{"--store", n.URL()}
		default:
			appArgs = append(appArgs, "--backplane", n.URL())
		}
	}
	sessions := map[string]string{"store": "shared", "sticky": "memory", "cookie": "cookie"}[f.mode]
	if f.mode == "cookie" {
		// One key for the whole fleet, so any instance opens any cookie;
		// in a file only this user can read (the temp dir is 0700), never
		// on a command line.
		keyFile, err := writeCookieKey(dir)
		if err != nil {
			return err
		}
		appArgs = append(appArgs, "--cookie-keys-file", keyFile)
	}

	controlURL := "http://" + adminL.Addr().String()

	fleet := &demo.Fleet{
		Command: func(name, addr string) *exec.Cmd {
			args := append([]string{"app", "--listen", addr, "--id", name}, appArgs...)
			args = append(args, "--sessions", sessions, "--control", controlURL, "--job-delay", f.jobDelay.String())
			return exec.Command(exe, args...)
		},
		Output: stderr,
		Logger: log,
	}
	defer fleet.Stop()
	started, err := startInstances(ctx, fleet, f.instances)
	if err != nil {
		return err
	}

	cfg := &lb.Config{Listen: f.listen, Admin: lb.AdminConfig{Listen: "off"}}
	for _, in := range started {
		cfg.Backends = append(cfg.Backends, lb.BackendConfig{Name: in.Name, URL: "http://" + in.Addr, Weight: 1})
	}
	cfg.Policy.Name = "round-robin"
	cfg.Sticky.Mode = "none"
	if f.mode == "sticky" {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		cfg.Sticky.Mode = "cookie"
		cfg.Sticky.Secrets = []string{fmt.Sprintf("%x", secret)}
	}
	// Crashes should show within a second: check often, and let passive
	// checks eject a backend that refuses connections at once.
	cfg.Health.Active.Path = "/healthz"
	cfg.Health.Active.Interval = 500 * time.Millisecond
	cfg.Health.Active.Timeout = 400 * time.Millisecond
	cfg.Health.Active.Rise = 1
	cfg.Health.Active.Fall = 1
	bl, err := lb.New(cfg, lb.Options{Logger: log})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	control := &demo.Control{Fleet: fleet, Balancer: demo.LB{B: bl}}
	control.Register(mux)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	go control.Run(sampleCtx)
	mux.Handle("/", dashboard.New(bl, dashboard.Options{Admin: bl.AdminHandler(""), Context: sampleCtx, Logger: log}))
	// The control API can crash instances: refuse cross-site browser
	// requests, as the balancer's admin API does.
	adminSrv := &http.Server{Handler: http.NewCrossOriginProtection().Handler(mux), ReadHeaderTimeout: 10 * time.Second}

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- bl.Serve(shopL) }()
	go func() { defer wg.Done(); errc <- adminSrv.Serve(adminL) }()

	fmt.Fprintf(stdout, "unstuck demo: %d instances, %s mode: %s\n", len(started), f.mode, f.whereStateLives())
	fmt.Fprintf(stdout, "  shop:      http://%s/\n", displayAddr(shopL.Addr()))
	fmt.Fprintf(stdout, "  dashboard: http://%s/\n", displayAddr(adminL.Addr()))
	fmt.Fprintln(stdout, "Press Ctrl-C to stop everything.")

	select {
	case <-ctx.Done():
	case err := <-errc:
		log.Error("demo listener stopped", "err", err)
	}
	fmt.Fprintln(stdout, "unstuck demo: stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = bl.Shutdown(shutdownCtx)
	_ = adminSrv.Shutdown(shutdownCtx)
	wg.Wait()
	return nil
}

// whereStateLives says where the demo keeps sessions, chat and jobs, as
// the banner prints it: in sticky mode sessions are in each instance's
// memory, in cookie mode in the browser, whatever --store names.
func (f *demoFlags) whereStateLives() string {
	store := "the embedded NATS"
	if f.store != "nats" && f.store != "memory" {
		store = connect.Redact(f.store)
	}
	backplane := store
	if kind, _ := storeurl.Kind(f.store); kind == "dynamodb" || kind == "memory" {
		backplane = "the embedded NATS" // they hold sessions only
	}
	switch {
	case f.mode == "sticky":
		return "sessions in each instance's memory (sticky cookie), chat and jobs in " + backplane
	case f.mode == "cookie":
		return "sessions sealed into each browser's cookie (logouts pushed over " + backplane + "), chat and jobs in " + backplane
	case backplane != store:
		return "sessions in " + store + ", chat and jobs in " + backplane
	default:
		return "sessions, chat and jobs in " + store
	}
}

// writeCookieKey writes a fresh random key for the fleet's cookie sessions.
func writeCookieKey(dir string) (string, error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	path := filepath.Join(dir, "cookie-keys")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cookie key: %w", err)
	}
	return path, nil
}

// startInstances starts n instances at once, so the demo is ready in the
// time one instance takes to start.
func startInstances(ctx context.Context, fleet *demo.Fleet, n int) ([]demo.InstanceInfo, error) {
	type result struct{ err error }
	results := make(chan result, n)
	for range n {
		go func() {
			_, err := fleet.Add(ctx)
			results <- result{err}
		}()
	}
	var errs []error
	for range n {
		if r := <-results; r.err != nil {
			errs = append(errs, r.err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Listed in name order, whatever order they came up in.
	return fleet.List(), nil
}

// displayAddr turns ":8080" or "[::]:8080" into a clickable localhost URL host.
func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
