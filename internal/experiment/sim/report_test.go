package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
)

// smallReport is one small sweep with the fixture's calibration, shared by
// the report tests.
var smallReport = sync.OnceValues(func() (*Report, error) {
	live, err := LoadLive("testdata/results.json")
	if err != nil {
		return nil, err
	}
	live.Path = "testdata/<results>.json" // must come out escaped
	cfg := Config{Instances: Range{3, 10}, Users: Range{300, 1000}, Live: live, Replications: 12, TheoryMaxBins: 1000}
	return Run(context.Background(), cfg, nil)
})

func TestSimulationJSONHasTheIssueShape(t *testing.T) {
	rep, err := smallReport()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &top); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range top {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"calibration", "rows", "theory"}) {
		t.Fatalf("top-level keys %v", keys)
	}
	var rows []map[string]any
	if err := json.Unmarshal(top["rows"], &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2*4 {
		t.Fatalf("%d rows, want 2 points x 4 architectures", len(rows))
	}
	for _, r := range rows {
		for _, k := range []string{"architecture", "instances", "users", "imbalance_max_over_mean", "sessions_lost_per_crash", "seconds_to_fair_share", "store_ops_per_s", "phases"} {
			if _, ok := r[k]; !ok {
				t.Errorf("row lacks %q: %v", k, r)
			}
		}
	}
	if rows[0]["architecture"] != "sticky" || rows[0]["instances"] != 3.0 || rows[0]["users"] != 300.0 {
		t.Errorf("first row %v", rows[0])
	}
	var cal map[string]any
	if err := json.Unmarshal(top["calibration"], &cal); err != nil || cal["available"] != true {
		t.Fatalf("calibration %v %v", cal, err)
	}
}

func TestCalibrationAgainstTheFixture(t *testing.T) {
	rep, err := smallReport()
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Calibration
	if !c.Available || c.Instances != 3 || c.Users != 300 || c.Replications != 12 || c.Total < 4*3 {
		t.Fatalf("calibration %+v", c)
	}
	seen := map[string]bool{}
	for _, ch := range c.Checks {
		seen[ch.Architecture] = true
		if ch.SimLow > ch.SimMean || ch.SimMean > ch.SimHigh {
			t.Errorf("%s %s: interval %g..%g does not hold the mean %g", ch.Architecture, ch.Metric, ch.SimLow, ch.SimHigh, ch.SimMean)
		}
		if ch.Architecture != "sticky" && strings.Contains(ch.Metric, "sessions_lost") && (ch.SimHigh != 0 || !ch.Within) {
			t.Errorf("%s loses sessions in simulation or disagrees with a live 0: %+v", ch.Architecture, ch)
		}
		if ch.Architecture == "sticky" && ch.Metric == "crash_sessions_lost" && !(ch.SimLow > 50 && ch.SimHigh < 150) {
			t.Errorf("sticky's crash loses %g..%g of 100 users per instance", ch.SimLow, ch.SimHigh)
		}
	}
	if len(seen) != 4 {
		t.Errorf("checks for %v", seen)
	}
	if c.Agree > c.Total || c.Tolerance == "" {
		t.Errorf("agree %d of %d, tolerance %q", c.Agree, c.Total, c.Tolerance)
	}
}

func TestHTMLIsSelfContainedAndSaysWhatItFound(t *testing.T) {
	rep, err := smallReport()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, bad := range []string{"<script", "<link", "src=", "@import", "NaN", "Inf", "<results>"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	for _, want := range []string{"Verdict", "&lt;results&gt;", "Γ⁻¹(n) − 3/2", "sticky", "Calibrated against the live run", "bounded Pareto", "<svg"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	v := strings.Join(rep.Verdict(), "\n")
	for _, want := range []string{"10 instances and 1000 users", "sticky loses", "theory checks", "calibration figures agree"} {
		if !strings.Contains(v, want) {
			t.Errorf("verdict lacks %q:\n%s", want, v)
		}
	}
}

func TestCalibratesAQuickLiveRunWithTheQuickModel(t *testing.T) {
	// --quick's 10 s timeline cannot hold the default model's 2 s store
	// downtime: calibrating with the wrong model would fail or mislead.
	live, err := DecodeLive(strings.NewReader(`{"architectures": {"store": {"sessions_lost": 0, "imbalance_max_over_mean": 1.02}},
		"parameters": {"users": 100, "instances": 3, "seed": 5, "duration_s": 10, "quick": true}}`))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{Archs: []string{"store"}, Instances: Range{3, 3}, Users: Range{100, 100},
		Live: live, Replications: 5, TheoryMaxBins: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Calibration; !c.Available || c.DurationS != 10 || c.Users != 100 || c.Seed != 5 || c.Total != 2 {
		t.Errorf("calibration of a quick run: %+v", c)
	}
}

func TestUncalibratedReportSaysWhy(t *testing.T) {
	rep, err := Run(context.Background(), Config{Archs: []string{"store"}, Instances: Range{3, 3}, Users: Range{200, 200}, TheoryMaxBins: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Calibration.Available || rep.Calibration.Reason == "" {
		t.Errorf("calibration %+v", rep.Calibration)
	}
	var buf bytes.Buffer
	if err := rep.WriteHTML(&buf); err != nil || !strings.Contains(buf.String(), "Not calibrated") {
		t.Errorf("page does not say it is not calibrated: %v", err)
	}
}
