package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/unstuck-dev/unstuck/internal/shop"
	"github.com/unstuck-dev/unstuck/internal/shop/textstats"
	"github.com/unstuck-dev/unstuck/internal/storeurl"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/cookiestore"
	"github.com/unstuck-dev/unstuck/session/memstore"
)

// appFlags are `unstuck app`'s settings.
type appFlags struct {
	listen, id, store, backplane, sessions, control string
	cookieKeysFile, cookieFeedDown                  string
	jobDelay                                        time.Duration
	nearCache                                       bool
	drain                                           time.Duration
	jobVisibility                                   time.Duration
}

// cookieKeysEnv carries the cookie keys when no file is given, so they never
// appear on a command line (which other users of the machine can read).
const cookieKeysEnv = "UNSTUCK_COOKIE_KEYS"

func runApp(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("unstuck app", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f appFlags
	host, _ := os.Hostname()
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8081", "address to serve the shop on")
	fs.StringVar(&f.id, "id", host, "instance name, sent in X-Unstuck-Instance and shown on every page")
	fs.StringVar(&f.store, "store", "memory", "shared store: "+storeurl.Describe)
	fs.StringVar(&f.backplane, "backplane", "", "nats:// or redis:// URL for chat and jobs when --store holds sessions only (memory, dynamodb://)")
	fs.StringVar(&f.sessions, "sessions", "shared", `where sessions live: "shared" (in --store), "memory" (this process only: the sticky architecture) or "cookie" (sealed into the client's cookie; logouts travel over --store or --backplane)`)
	fs.StringVar(&f.cookieKeysFile, "cookie-keys-file", "", "with --sessions cookie: a file of keys (hex or base64, 32+ bytes each, one per line, the first seals); default: $"+cookieKeysEnv)
	fs.StringVar(&f.cookieFeedDown, "cookie-feed-down", "fail-closed", `with --sessions cookie, when this instance cannot confirm it knows every logout: "fail-closed" (503) or "accept" (serve, log a warning)`)
	fs.StringVar(&f.control, "control", "", "the demo's control API base URL, for the page's chaos buttons")
	fs.DurationVar(&f.jobDelay, "job-delay", 400*time.Millisecond, "pause after each of a file job's 20 steps, so a person can crash an instance mid-job")
	fs.BoolVar(&f.nearCache, "near-cache", true, "keep recently used sessions in memory, invalidated by the store")
	fs.DurationVar(&f.jobVisibility, "job-visibility", 10*time.Second, "how long a job's claim lasts without a heartbeat before another instance takes over the job of a dead one")
	fs.DurationVar(&f.drain, "drain", 5*time.Second, "on SIGTERM, spread WebSocket closes (1012) and in-flight requests over this window")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: unstuck app [flags]\n\nRuns one instance of the demo shop. SIGTERM drains it gracefully.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unstuck app: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if f.sessions != "shared" && f.sessions != "memory" && f.sessions != "cookie" {
		fmt.Fprintf(stderr, "unstuck app: --sessions %q: want shared, memory or cookie\n", f.sessions)
		return 2
	}
	if f.cookieFeedDown != "fail-closed" && f.cookieFeedDown != "accept" {
		fmt.Fprintf(stderr, "unstuck app: --cookie-feed-down %q: want fail-closed or accept\n", f.cookieFeedDown)
		return 2
	}
	if f.jobVisibility < time.Second {
		fmt.Fprintf(stderr, "unstuck app: --job-visibility %v: want at least 1s\n", f.jobVisibility)
		return 2
	}
	if f.id == "" {
		fmt.Fprintln(stderr, "unstuck app: --id: must not be empty")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("instance", f.id)
	if err := serveApp(ctx, f, log, stdout); err != nil {
		fmt.Fprintf(stderr, "unstuck app: %v\n", err)
		return 1
	}
	return 0
}

func serveApp(ctx context.Context, f appFlags, log *slog.Logger, stdout io.Writer) error {
	openCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	parts, err := storeurl.Open(openCtx, f.store, storeurl.Options{NearCache: f.nearCache, VisibilityTimeout: f.jobVisibility})
	cancel()
	if err != nil {
		return fmt.Errorf("--store: %w", err)
	}
	defer parts.Close()
	if parts.SessionsOnly() && f.backplane != "" {
		openCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		bp, err := storeurl.Open(openCtx, f.backplane, storeurl.Options{VisibilityTimeout: f.jobVisibility})
		cancel()
		if err != nil {
			return fmt.Errorf("--backplane: %w", err)
		}
		if bp.SessionsOnly() {
			bp.Close()
			return fmt.Errorf("--backplane %q: want nats:// or redis://", f.backplane)
		}
		parts.UseBackplane(bp)
	}

	var sessStore session.Backend = parts.Sessions
	switch f.sessions {
	case "memory":
		mem := memstore.New(memstore.Options{})
		defer mem.Close()
		sessStore = mem
	case "cookie":
		cs, err := openCookieSessions(ctx, f, parts, log)
		if err != nil {
			return err
		}
		sessStore = cs
	}
	sessions, err := session.New(session.Config{
		Store:        sessStore,
		Cookie:       session.CookieConfig{Name: "unstuck_session"},
		IdleTimeout:  2 * time.Hour,
		Lifetime:     24 * time.Hour,
		StoreTimeout: 2 * time.Second,
		Logger:       log,
		ErrorHandler: shop.StoreUnavailable(log),
	})
	if err != nil {
		return err
	}
	if parts.SessionsOnly() {
		return fmt.Errorf("--store %s holds sessions only: give --backplane nats://... or redis://... for chat and jobs", parts.Kind)
	}
	hub, err := realtime.New(realtime.Config{
		Broker:       parts.Broker,
		Presence:     parts.Presence,
		Authenticate: shop.Authenticate,
		Authorize:    shop.Authorize,
		DrainWindow:  f.drain,
		Logger:       log,
	})
	if err != nil {
		return err
	}
	jm, err := jobs.New(jobs.Config{Backend: parts.Jobs, Worker: f.id, MaxPayloadBytes: 8 << 20, Logger: log})
	if err != nil {
		return err
	}
	if err := jm.Handle(textstats.Kind, textstats.Job{StepDelay: f.jobDelay}.Handle); err != nil {
		return err
	}
	s, err := shop.New(shop.Config{
		Instance: f.id, Sessions: sessions, Jobs: jm, Hub: hub, Broker: parts.Broker,
		StoreKind: storeKind(parts.Kind, f.sessions), Sticky: f.sessions == "memory",
		Control: f.control, Logger: log,
	})
	if err != nil {
		return err
	}

	l, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // uploads
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Upload progress streams would hold a graceful stop for minutes:
	// end them at once; browsers reconnect to another instance.
	srv.RegisterOnShutdown(jm.EndStreams)
	workers, stopWorkers := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := jm.Run(workers); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("job workers stopped", "err", err)
		}
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	fmt.Fprintf(stdout, "unstuck app %s: serving on http://%s (store %s)\n", f.id, l.Addr(), parts.Kind)

	select {
	case err := <-serveErr:
		stopWorkers()
		wg.Wait()
		return err
	case <-ctx.Done():
	}
	// Graceful: WebSockets get 1012 spread over the drain window while
	// in-flight requests finish; running jobs are handed back to the queue.
	log.Info("draining", "window", f.drain)
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), f.drain+5*time.Second)
	defer cancelShutdown()
	var hubErr error
	done := make(chan struct{})
	go func() { hubErr = hub.Shutdown(shutdownCtx); close(done) }()
	err = srv.Shutdown(shutdownCtx)
	<-done
	stopWorkers()
	wg.Wait()
	if err == nil {
		err = hubErr
	}
	return err
}

func storeKind(kind, sessions string) string {
	switch sessions {
	case "memory":
		return "instance's own memory"
	case "cookie":
		return "sealed cookie"
	}
	return kind
}

// openCookieSessions opens the cookie store with the keys from
// --cookie-keys-file or $UNSTUCK_COOKIE_KEYS, its logouts carried over the
// store's (or backplane's) connection.
func openCookieSessions(ctx context.Context, f appFlags, parts *storeurl.Parts, log *slog.Logger) (*cookiestore.Store, error) {
	raw, from := os.Getenv(cookieKeysEnv), "$"+cookieKeysEnv
	if f.cookieKeysFile != "" {
		b, err := os.ReadFile(f.cookieKeysFile)
		if err != nil {
			return nil, fmt.Errorf("--cookie-keys-file: %w", err)
		}
		raw, from = string(b), "--cookie-keys-file "+f.cookieKeysFile
	}
	if strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("--sessions cookie needs keys: give --cookie-keys-file or set $%s (for example `openssl rand -hex 32`); every instance needs the same ones", cookieKeysEnv)
	}
	keys, err := cookiestore.ParseKeys(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	policy := cookiestore.FailClosed
	if f.cookieFeedDown == "accept" {
		policy = cookiestore.Accept
	}
	openCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cs, err := parts.CookieStore(openCtx, cookiestore.Options{Keys: keys, FeedDown: policy, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--sessions cookie: %w", err)
	}
	return cs, nil
}
