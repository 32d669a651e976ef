package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func f64(v float64) *float64 { return &v }

// sample is a small run: sticky loses users at the crash and is fast,
// store loses nothing and balances evenly, cookie is pending.
func sample() *Results {
	phases := []PhaseSpan{{"steady", 0, 10}, {"scale_out", 10, 20}, {"crash", 20, 30}, {"store_restart", 30, 40}}
	arch := func(app string, lost int64, imb, p50, p99 float64, scale *float64) *Architecture {
		a := &Architecture{Status: "complete", Complete: true, App: app, Phases: map[string]*Figures{}}
		a.Requests, a.SessionsLost, a.CartItemsLost = 1000, lost, 2*lost
		a.ImbalanceMaxOverMean, a.ImbalanceCV = f64(imb), f64(imb-1)
		a.ImbalanceNoiseFloor, a.ImbalanceNoiseP95 = f64(1.05), f64(1.12)
		a.P50ms, a.P99ms, a.P999ms, a.MaxMs = f64(p50), f64(p99), f64(2*p99), f64(3*p99)
		a.ThroughputRPS = 100
		a.ScaleOutSecondsToFairShare = scale
		a.StoreRoundTripsPerRequest = f64(p50)
		a.ErrorsByStatus = map[string]int64{}
		for _, ph := range phases {
			f := &Figures{Requests: 250, P50ms: f64(p50), P99ms: f64(p99), ImbalanceMaxOverMean: f64(imb), ErrorsByStatus: map[string]int64{}}
			if ph.Name == "crash" {
				f.SessionsLost, f.CartItemsLost = lost, 2*lost
			}
			if ph.Name == "store_restart" && strings.Contains(app, "shared") {
				f.Errors, f.P99ms = 40, f64(2000)
			}
			a.Phases[ph.Name] = f
		}
		a.Series = Series{BucketS: 0.25, Instances: []string{"app-1", "app-2"}, Load: [][]int64{{1, 2}, {3, 4}, {5, 6}, {7, 8}},
			LatencyP50ms: []float64{p50}, LatencyP99ms: []float64{p99}, ErrorsPerS: []int64{0}}
		return a
	}
	return &Results{
		SchemaVersion: 1, Complete: true,
		Parameters: Parameters{Users: 300, DurationS: 40, Instances: 3, Store: "nats", Seed: 1, Phases: phases, Command: "unstuck experiment"},
		Order:      []string{"sticky", "store", "cookie"},
		Architectures: map[string]*Architecture{
			"sticky": arch("unstuck app --sessions memory", 37, 1.42, 1.1, 9, nil),
			"store":  arch("unstuck app --sessions shared", 0, 1.03, 2.3, 12, f64(1)),
			"cookie": {Status: "pending", Notes: []string{"pending: not built"}, Phases: map[string]*Figures{}},
		},
	}
}

// TestVerdictFollowsTheFigures checks that the verdict states the figures
// it was given, including where the shared store loses.
func TestVerdictFollowsTheFigures(t *testing.T) {
	text := strings.Join(Verdict(sample()), "\n")
	for _, want := range []string{
		"store lost no session",      // the winner on state
		"sticky logged out 37 users", // the loser, with its count
		"37 in crash",                // and where
		"store spread the load as evenly as chance allows: busiest instance at 1.03", // imbalance
		"sticky's load was uneven beyond noise in steady state: busiest instance at 1.42",
		"95th percentile 1.12",                 // the floor is stated
		"With sticky it never did",             // scale-out
		"store in 1.0 s",                       //
		"sticky answered fastest (p50 1.10 ms", // latency: where the store loses
		"store pays for its session store round trips: its median request took 1.20 ms more",
		"store had 40 errors",       // its own outage
		"store: best at state lost", // the summary
		"worst at median latency",   //
	} {
		if !strings.Contains(text, want) {
			t.Errorf("verdict lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "cookie") {
		t.Errorf("verdict talks about cookie, which did not run:\n%s", text)
	}
	// Different figures, different words.
	r := sample()
	r.Architectures["sticky"].ImbalanceMaxOverMean = f64(1.10)
	text = strings.Join(Verdict(r), "\n")
	if !strings.Contains(text, "store and sticky spread the load as evenly as chance allows: busiest instance at 1.03 to 1.10") ||
		strings.Contains(text, "uneven") || strings.Contains(text, "least even") || strings.Contains(text, "imbalance") {
		t.Errorf("with both imbalances within the noise floor the verdict crowns one:\n%s", text)
	}
	r = sample()
	r.Architectures["sticky"].SessionsLost = 0
	r.Architectures["sticky"].CartItemsLost = 0
	if text := strings.Join(Verdict(r), "\n"); !strings.Contains(text, "sticky and store lost no session") {
		t.Errorf("with no loss anywhere the verdict says:\n%s", text)
	}
}

func TestHTMLIsSelfContained(t *testing.T) {
	var b bytes.Buffer
	if err := HTML(&b, sample()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, bad := range []string{"<script", "src=", "href=\"http", "@import", "url(http", "url(//"} {
		if strings.Contains(page, bad) {
			t.Errorf("report.html contains %q", bad)
		}
	}
	for _, want := range []string{"<svg", "Verdict", "sticky logged out 37 users", "pending: not built", "store_restart", "requests per second served by each instance"} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
}

func TestTableAndJSONKeys(t *testing.T) {
	var b bytes.Buffer
	Table(&b, sample())
	out := b.String()
	for _, want := range []string{"sessions lost", "37", "never", "note (cookie): pending"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	raw, _ := json.Marshal(sample())
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	store := m["architectures"].(map[string]any)["store"].(map[string]any)
	for _, k := range []string{"sessions_lost", "cart_items_lost", "uploads_lost", "messages_lost", "errors",
		"imbalance_max_over_mean", "scale_out_seconds_to_fair_share", "p50_ms", "p99_ms", "throughput_rps", "phases"} {
		if _, ok := store[k]; !ok {
			t.Errorf("results.json architecture lacks %q", k)
		}
	}
	if _, ok := store["phases"].(map[string]any)["crash"].(map[string]any)["sessions_lost"]; !ok {
		t.Error("results.json phases lack sessions_lost")
	}
}
