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
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/unstuck-dev/unstuck/lb"
	"github.com/unstuck-dev/unstuck/lb/dashboard"
)

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func runLB(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("unstuck lb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var backends, secrets multiFlag
	listen := fs.String("listen", ":8080", "proxy listen address")
	admin := fs.String("admin", "127.0.0.1:9090", `admin API and /metrics address; "off" disables it`)
	adminToken := fs.String("admin-token", "", "bearer token for the admin API (or UNSTUCK_ADMIN_TOKEN); required off loopback")
	fs.Var(&backends, "backend", "backend `[NAME=]URL`, repeatable; unnamed ones are b1, b2, ... in order; dns://HOST:PORT or dns+srv://NAME discovers them from DNS")
	policy := fs.String("policy", lb.PolicyRoundRobin, strings.Join(lb.PolicyNames(), ", "))
	sticky := fs.String("sticky", "cookie", "cookie or none")
	fs.Var(&secrets, "secret", "sticky cookie secret, repeatable (first signs, all verify); else the config's, else UNSTUCK_SECRET (comma-separated)")
	configPath := fs.String("config", "", "YAML config file (flags given override it)")
	check := fs.Bool("check", false, "validate the configuration and exit")
	h2c := fs.Bool("h2c", false, "serve cleartext HTTP/2 with prior knowledge on a plain listener (http2.h2c)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: unstuck lb [flags]\n\nRuns the HTTP and WebSocket load balancer. SIGHUP reloads the config; SIGTERM stops gracefully.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unstuck lb: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var flagBackends []lb.BackendConfig
	for _, s := range backends {
		bc, err := lb.ParseBackendFlag(s)
		if err != nil {
			fmt.Fprintf(stderr, "unstuck lb: --backend %q: %v\n", s, err)
			return 2
		}
		flagBackends = append(flagBackends, bc)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	override := func(c *lb.Config) {
		if set["listen"] || c.Listen == "" {
			c.Listen = *listen
		}
		if set["admin"] || c.Admin.Listen == "" {
			c.Admin.Listen = *admin
		}
		if set["admin-token"] {
			c.Admin.Token = *adminToken
		} else if c.Admin.Token == "" {
			c.Admin.Token = os.Getenv("UNSTUCK_ADMIN_TOKEN")
		}
		if len(flagBackends) > 0 {
			c.Backends = append([]lb.BackendConfig(nil), flagBackends...)
		}
		if set["policy"] || c.Policy.Name == "" {
			c.Policy.Name = *policy
		}
		if set["h2c"] {
			c.HTTP2.H2C = *h2c
		}
		if set["sticky"] || c.Sticky.Mode == "" {
			c.Sticky.Mode = *sticky
		}
		if len(secrets) > 0 {
			c.Sticky.Secrets = append([]string(nil), secrets...)
		} else if len(c.Sticky.Secrets) == 0 {
			if env := os.Getenv("UNSTUCK_SECRET"); env != "" {
				c.Sticky.Secrets = strings.Split(env, ",")
			}
		}
	}
	load := func() (*lb.Config, error) {
		if *configPath != "" {
			return lb.LoadConfigWith(*configPath, override)
		}
		c := &lb.Config{}
		override(c)
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("flags: %w", err)
		}
		c.ApplyDefaults()
		return c, nil
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "unstuck lb: %v\n", err)
		return 1
	}
	if *check {
		dns := 0
		for _, b := range cfg.Backends {
			if strings.HasPrefix(b.URL, "dns://") || strings.HasPrefix(b.URL, "dns+srv://") {
				dns++
			}
		}
		fmt.Fprintf(stdout, "config ok: %d backends (%d DNS discovery sources, not resolved by --check), policy %s, sticky %s\n",
			len(cfg.Backends), dns, cfg.Policy.Name, cfg.Sticky.Mode)
		if cfg.Sticky.Mode == "cookie" && len(cfg.Sticky.Secrets) == 0 {
			fmt.Fprintln(stdout, "warning: no sticky secret (sticky.secrets, --secret, UNSTUCK_SECRET): a random one will be generated, valid for this process only")
		}
		return 0
	}
	return serveLB(ctx, cfg, load, stderr)
}

func newLogger(c lb.LogConfig, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serveLB(ctx context.Context, cfg *lb.Config, load func() (*lb.Config, error), stderr io.Writer) int {
	log := newLogger(cfg.Log, stderr)
	// Catch SIGHUP before anything says we are listening: its default
	// action would kill the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// TLS is the balancer's to terminate, after a PROXY protocol header
	// if there is one; its ALPN offers h2 unless http2.disabled.
	tlsConf, err := cfg.ServerTLS()
	if err != nil {
		fmt.Fprintf(stderr, "unstuck lb: tls: %v\n", err)
		return 1
	}
	bl, err := lb.New(cfg, lb.Options{Logger: log, Reload: load, TLS: tlsConf})
	if err != nil {
		fmt.Fprintf(stderr, "unstuck lb: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		bl.Close()
		fmt.Fprintf(stderr, "unstuck lb: listen: %v\n", err)
		return 1
	}
	var adminSrv *http.Server
	if cfg.Admin.Listen != "off" {
		aln, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			ln.Close()
			bl.Close()
			fmt.Fprintf(stderr, "unstuck lb: admin listen: %v\n", err)
			return 1
		}
		adminSrv = &http.Server{
			Handler:           dashboard.New(bl, dashboard.Options{Token: cfg.Admin.Token, Admin: bl.AdminHandler(cfg.Admin.Token), Context: ctx, Logger: log}),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		go func() {
			if err := adminSrv.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin server", "err", err)
			}
		}()
		log.Info("admin listening", "addr", aln.Addr().String())
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- bl.Serve(ln) }()
	log.Info("lb listening", "addr", ln.Addr().String(), "backends", len(cfg.Backends), "policy", cfg.Policy.Name, "sticky", cfg.Sticky.Mode)

	code := 0
loop:
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading")
			_, _ = bl.Reload() // logs the outcome; a bad config keeps the old one
		case err := <-serveErr:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				log.Error("proxy stopped", "err", err)
				code = 1
			}
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	grace := bl.Config().Shutdown.Grace
	log.Info("shutting down", "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// A second SIGINT/SIGTERM cuts the grace period short.
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	go func() {
		select {
		case <-again:
			log.Warn("second signal: closing at once")
			cancel()
		case <-sctx.Done():
		}
	}()
	if err := bl.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", "err", err)
	}
	if adminSrv != nil {
		actx, acancel := context.WithTimeout(context.Background(), time.Second)
		_ = adminSrv.Shutdown(actx)
		acancel()
	}
	log.Info("stopped")
	return code
}
