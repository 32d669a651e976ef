package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/unstuck-dev/unstuck/internal/experiment/report"
	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// TestExperimentQuick runs `unstuck experiment --quick` as a user would
// (real app processes, the built binary) and checks what must hold
// whatever the machine's load: a shared store loses nothing when an
// instance is killed, sticky sessions lose the killed instance's users, and
// an instance added to a shared-store fleet gets its share of the load at
// once.
func TestExperimentQuick(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, unstuckBinary(t), "experiment", "--quick", "--out", dir)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("experiment --quick took %v", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("experiment --quick: %v\n%s", err, out)
	}
	res, err := report.Load(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete {
		t.Fatalf("run not complete:\n%s", out)
	}
	for _, name := range []string{"sticky", "store", "affinity", "cookie"} {
		a := res.Architectures[name]
		if a == nil || a.Status != "complete" || a.Requests == 0 {
			t.Fatalf("%s did not run: %+v\n%s", name, a, out)
		}
	}

	// A shared store keeps every session, cart item and upload when an
	// instance dies (and through the whole run).
	for _, name := range []string{"store", "affinity"} {
		a := res.Architectures[name]
		if a.SessionsLost != 0 || a.CartItemsLost != 0 || a.UploadsLost != 0 {
			t.Errorf("%s lost %d sessions, %d cart items, %d uploads; want none\n%s",
				name, a.SessionsLost, a.CartItemsLost, a.UploadsLost, out)
		}
	}
	// Sticky sessions die with the killed instance: its users are logged
	// out from the crash on.
	sticky := res.Architectures["sticky"]
	lost := int64(0)
	for _, ph := range []string{"crash", "store_restart", "recovery"} {
		lost += sticky.Phases[ph].SessionsLost
	}
	if lost == 0 {
		t.Errorf("sticky lost no session from the crash on; the killed instance's users should have been logged out\n%s", out)
	}
	// With a shared store, the new instance carries 80% of its fair share
	// within 10 s of joining.
	if s := res.Architectures["store"].ScaleOutSecondsToFairShare; s == nil || *s > 10 {
		t.Errorf("store: new instance reached 80%% of its fair share after %v s; want within 10 s", s)
	}

	// The stable keys of results.json, overall and per phase.
	raw, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	for _, key := range []string{`"architectures"`, `"sessions_lost"`, `"cart_items_lost"`, `"uploads_lost"`, `"messages_lost"`,
		`"errors"`, `"imbalance_max_over_mean"`, `"scale_out_seconds_to_fair_share"`, `"p50_ms"`, `"p99_ms"`,
		`"throughput_rps"`, `"phases"`, `"parameters"`, `"machine"`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Errorf("results.json has no %s", key)
		}
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script", `src="http`, `href="http`, "@import"} {
		if bytes.Contains(html, []byte(bad)) {
			t.Errorf("report.html contains %q: it must be self-contained", bad)
		}
	}
	for _, want := range []string{"<svg", "Verdict", "sticky", "store_restart"} {
		if !bytes.Contains(html, []byte(want)) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if !strings.Contains(string(out), "verdict:") {
		t.Errorf("no verdict on the terminal:\n%s", out)
	}
	reportInBrowser(t, filepath.Join(dir, "report.html"))
}

// reportInBrowser opens report.html in headless Chromium, as a reader
// would, checks that the overview's charts and the verdict are there and
// drawn, the charts on the first screen, and keeps a screenshot of that
// screen (UNSTUCK_SCREENSHOTS=docs refreshes the README's;
// UNSTUCK_EXPERIMENT_REPORT names another report.html to show, such as a
// default run's).
func reportInBrowser(t *testing.T, path string) {
	t.Helper()
	if p := os.Getenv("UNSTUCK_EXPERIMENT_REPORT"); p != "" {
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	tab := testenv.Browser(t)
	do(t, tab, chromedp.EmulateViewport(1400, 1800), chromedp.Navigate("file://"+abs), chromedp.WaitVisible(chromedp.CSS(".verdict")))
	if n := js[int](t, tab, `document.querySelectorAll(".verdict li").length`); n < 3 {
		t.Errorf("report.html shows %d verdict sentences", n)
	}
	// The top of the page is the overview: the load of each architecture,
	// latency, imbalance and scale-out, drawn and on the first screen.
	if n := js[int](t, tab, `[...document.querySelectorAll(".overview svg")].filter(s => { const r = s.getBoundingClientRect(); return r.width > 400 && r.bottom <= 1800 && s.querySelector("path, rect") }).length`); n < 7 {
		t.Errorf("report.html's first screen shows %d overview charts, want 7 (four architectures' load, latency, imbalance, scale-out)", n)
	}
	if n := js[int](t, tab, `[...document.querySelectorAll("figure svg")].filter(s => s.getBoundingClientRect().width > 300 && s.querySelector("path")).length`); n < 4 {
		t.Errorf("report.html draws %d charts, want the load per instance, latency, imbalance and scale-out ones", n)
	}
	shot, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if small, err := palettedPNG(shot); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		shot = small
	}
	saveScreenshot(t, "experiment.png", shot)
}

// TestExperimentCtrlCLeavesNoProcess interrupts a run: every process it
// started stops, and what was measured is still written.
func TestExperimentCtrlCLeavesNoProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(unstuckBinary(t), "experiment", "--quick", "--arch", "store", "--store", "redis", "--out", dir)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	running := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), " running ") {
				once = true
				close(running)
			}
		}
		done <- cmd.Wait()
	}()
	select {
	case <-running:
	case err := <-done:
		t.Fatalf("experiment exited before running: %v\n%s", err, stderr.String())
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("experiment not running after 2 minutes")
	}
	children := childPIDs(cmd.Process.Pid)
	if len(children) < 4 { // three instances and redis-server at least
		t.Fatalf("experiment runs %d child processes (%v); want its instances and redis-server", len(children), children)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("experiment did not exit within 60s of Ctrl-C")
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit code %d after Ctrl-C, want 130\n%s", code, stderr.String())
	}
	for _, pid := range children {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("process %d still running after the experiment stopped", pid)
		}
	}
	res, err := report.Load(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatalf("no results after Ctrl-C: %v", err)
	}
	if res.Complete || res.Architectures["store"] == nil || res.Architectures["store"].Status != "interrupted" {
		t.Errorf("results after Ctrl-C: complete=%v, store=%+v; want an interrupted run", res.Complete, res.Architectures["store"])
	}
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

func TestExperimentFlagErrorsNameTheFlag(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "results.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for args, want := range map[string]string{
		"--arch wobbly":                  "--arch",
		"--arch sticky,sticky":           "--arch",
		"--users 0":                      "--users 0",
		"--users lots":                   "--users",
		"--instances 2":                  "--instances 2",
		"--instances 99":                 "--instances 99",
		"--duration 1s":                  "--duration 1s",
		"--store mysql://h:1":            "--store",
		"--store redis+sentinel://h:1/":  "--store",
		"--store memory":                 "--store memory",
		"--seed -1":                      "-seed",
		"extra":                          "unexpected argument",
		"--out " + full:                  "--out",
		"--quick --duration 2h":          "--duration 2h",
		"--simulate --users wobbl":       "--users",
		"--simulate --instances 1..5":    "--instances",
		"--simulate --store redis":       "--store",
		"--calibrate x.json":             "--calibrate",
		"--simulate --calibrate nope.js": "--calibrate",
	} {
		var out, errb bytes.Buffer
		code := run(t.Context(), append([]string{"experiment"}, strings.Fields(args)...), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), want) {
			t.Errorf("experiment %s: exit %d, stderr %q; want exit 2 and an error naming %q", args, code, errb.String(), want)
		}
	}
	// An existing --out is never overwritten silently.
	if b, _ := os.ReadFile(filepath.Join(full, "results.json")); string(b) != "{}" {
		t.Errorf("--out was overwritten: %q", b)
	}
}

// TestExperimentSimulate runs a small simulation with the built binary and
// calibrates it against a live run's results: both files are written, with
// the keys the issue names, and nothing else is overwritten.
func TestExperimentSimulate(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "results.json")
	if err := os.WriteFile(live, []byte(`{"parameters":{"users":100,"instances":3,"seed":1,"duration_s":8},
		"architectures":{"store":{"sessions_lost":0,"cart_items_lost":0,"imbalance_max_over_mean":1.1,"phases":{}}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, unstuckBinary(t), "experiment", "--simulate", "--quick",
		"--instances", "3..30", "--users", "1e3..1e4", "--out", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("experiment --simulate: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "simulation.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"rows"`, `"theory"`, `"calibration"`, `"imbalance_max_over_mean"`, `"sessions_lost_per_crash"`,
		`"seconds_to_fair_share"`, `"store_ops_per_s"`, `"available": true`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Errorf("simulation.json has no %s", key)
		}
	}
	if html, err := os.ReadFile(filepath.Join(dir, "simulation.html")); err != nil || !bytes.Contains(html, []byte("<svg")) {
		t.Errorf("simulation.html: %v", err)
	}
	if !strings.Contains(string(out), "calibrating against") || !strings.Contains(string(out), "verdict:") {
		t.Errorf("output:\n%s", out)
	}
	// A second run into the same directory is refused.
	var errb bytes.Buffer
	code := run(t.Context(), []string{"experiment", "--simulate", "--quick", "--out", dir}, &bytes.Buffer{}, &errb)
	if code != 2 || !strings.Contains(errb.String(), "--force") {
		t.Errorf("second --simulate into %s: exit %d, %q; want a refusal naming --force", dir, code, errb.String())
	}
}
