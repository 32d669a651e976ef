package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/chart"
)

// HTML writes report.html: one self-contained page (inline SVG and CSS, no
// script, nothing fetched) with the verdict, the figures, the charts and
// how they were measured.
func HTML(w io.Writer, r *Results) error {
	return page.Execute(w, build(r))
}

type view struct {
	R         *Results
	CSS       template.CSS
	Title     string
	Sub       string
	Verdict   []string
	Summary   template.HTML
	Losses    template.HTML
	PerArch   []archView
	Latency   template.HTML
	Errors    template.HTML
	Imbalance template.HTML
	ScaleOut  template.HTML
	Cost      template.HTML
	Model     template.HTML
	Machine   string
	// Overview is the top grid: the key charts side by side, small.
	Overview []template.HTML
	// Calibration is the simulation's check against this run.
	Calibration template.HTML
}

type archView struct {
	Name, Status, Description, Balancer, App, Store string
	Notes                                           []string
	Load                                            template.HTML
	Events                                          template.HTML
}

func build(r *Results) view {
	v := view{
		R: r, CSS: template.CSS(chart.CSS + overviewCSS),
		Title:   "Sticky sessions, a shared store, affinity and client-side state, measured side by side",
		Verdict: Verdict(r),
	}
	p := r.Parameters
	v.Sub = fmt.Sprintf("%d users on average, %d instances at the start, a %s timeline per architecture, store %s, seed %d; run %s.",
		p.Users, p.Instances, time.Duration(p.DurationS*float64(time.Second)), p.Store, p.Seed, r.StartedAt.Format("2006-01-02 15:04 MST"))
	if !r.Complete {
		v.Sub += " Interrupted: the figures cover what ran."
	}
	m := r.Machine
	v.Machine = fmt.Sprintf("%d CPUs (%s), %s/%s, kernel %s, %s; load average %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end.",
		m.CPUs, orDash(m.CPUModel), m.OS, m.Arch, orDash(m.Kernel), m.GoVersion,
		m.LoadAvg[0], m.LoadAvg[1], m.LoadAvg[2], m.LoadAvgEnd[0], m.LoadAvgEnd[1], m.LoadAvgEnd[2])
	v.Summary = summaryTable(r)
	v.Losses = lossTable(r)
	bands := phaseBands(r)
	for _, name := range r.Order {
		a := r.Architectures[name]
		av := archView{Name: name, Status: a.Status, Description: a.Description, Balancer: a.Balancer,
			App: a.App, Store: a.Store, Notes: a.Notes}
		if ran(a) {
			av.Load = loadChart(name, a, bands, full)
			av.Events = eventTable(a)
		}
		v.PerArch = append(v.PerArch, av)
	}
	v.Latency = latencyChart(r, bands, full)
	v.Errors = errorChart(r, bands)
	v.Imbalance = imbalanceChart(r, full)
	v.ScaleOut = scaleOutChart(r, full)
	v.Overview = overview(r, bands)
	v.Calibration = calibrationTable(r)
	v.Cost = costTable(r)
	var rows [][]string
	for _, prm := range p.Model {
		rows = append(rows, []string{prm.Name, prm.Value, prm.Meaning})
	}
	v.Model = chart.Table{Caption: "The workload model (package model, shared with the simulation)", Head: []string{"parameter", "value", "meaning"}, Rows: rows}.HTML()
	return v
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ranArchs(r *Results) []string {
	var out []string
	for _, name := range r.Order {
		if ran(r.Architectures[name]) {
			out = append(out, name)
		}
	}
	return out
}

func phaseBands(r *Results) []chart.Band {
	var b []chart.Band
	for _, ph := range r.Parameters.Phases {
		b = append(b, chart.Band{From: ph.StartS, To: ph.EndS, Label: ph.Name})
	}
	return b
}

// summaryTable is the terminal table's figures, one column per
// architecture.
func summaryTable(r *Results) template.HTML {
	head := []string{"figure"}
	head = append(head, r.Order...)
	var rows [][]string
	numeric := []bool{false}
	for range r.Order {
		numeric = append(numeric, true)
	}
	for _, row := range tableRows {
		cells := []string{row.name}
		for _, a := range r.Order {
			cells = append(cells, row.value(r.Architectures[a]))
		}
		rows = append(rows, cells)
	}
	return chart.Table{Caption: "The whole run (imbalance: the steady phase; - : not run)", Head: head, Rows: rows, Numeric: numeric}.HTML()
}

// lossTable lists the losses per phase and architecture, where they were
// seen.
func lossTable(r *Results) template.HTML {
	head := []string{"architecture", "phase", "sessions lost", "cart items lost", "updates lost", "uploads lost", "messages lost", "messages duplicated", "errors", "p99 ms"}
	var rows [][]string
	var classes []string
	numeric := []bool{false, false, true, true, true, true, true, true, true, true}
	for _, name := range ranArchs(r) {
		a := r.Architectures[name]
		for _, ph := range r.Parameters.Phases {
			f := a.Phases[ph.Name]
			if f == nil {
				continue
			}
			p99 := "n/a"
			if f.P99ms != nil {
				p99 = fmt.Sprintf("%.1f", *f.P99ms)
			}
			rows = append(rows, []string{name, ph.Name, itoa(f.SessionsLost), itoa(f.CartItemsLost), itoa(f.UpdatesLost),
				itoa(f.UploadsLost), itoa(f.MessagesLost), itoa(f.MessagesDuplicated), itoa(f.Errors), p99})
			if stateLost(f)+f.UpdatesLost+f.MessagesLost > 0 {
				classes = append(classes, "bad")
			} else {
				classes = append(classes, "")
			}
		}
	}
	return chart.Table{Caption: "Losses by phase, counted where the users' ledgers saw them", Head: head, Rows: rows, Numeric: numeric, Classes: classes}.HTML()
}

func itoa(n int64) string { return fmt.Sprint(n) }

// loadChart draws each instance's requests per second over time, in
// one-second steps, with the phases shaded.
func loadChart(name string, a *Architecture, bands []chart.Band, sz size) template.HTML {
	s := a.Series
	per := 1
	if s.BucketS > 0 {
		per = max(1, int(math.Round(1/s.BucketS)))
	}
	var series []chart.Series
	for j, inst := range s.Instances {
		var xs, ys []float64
		for b := 0; b+per <= len(s.Load); b += per {
			n := 0.0
			for k := b; k < b+per; k++ {
				if j < len(s.Load[k]) {
					n += float64(s.Load[k][j])
				}
			}
			xs = append(xs, float64(b+per)*s.BucketS)
			ys = append(ys, n/(float64(per)*s.BucketS))
		}
		series = append(series, chart.Series{Name: inst, X: xs, Y: ys})
	}
	c := chart.Line{
		Title:  name + ": requests per second served by each instance",
		Desc:   "Each line is one instance; shaded bands are the phases of the timeline.",
		X:      chart.Axis{Label: "seconds", Format: chart.Seconds},
		Y:      chart.Axis{Label: "requests/s"},
		Series: series, Bands: bands,
		Width: sz.w, Height: sz.h,
	}
	return c.SVG()
}

func eventTable(a *Architecture) template.HTML {
	var rows [][]string
	for _, e := range a.Events {
		rows = append(rows, []string{fmt.Sprintf("%.1f s", e.AtS), e.Phase, e.Action, e.Detail})
	}
	return chart.Table{Caption: "What the timeline did", Head: []string{"at", "phase", "event", "detail"}, Rows: rows, Numeric: []bool{true}}.HTML()
}

// latencyChart draws p99 (solid) and p50 (dashed) per second of every
// architecture, on a log axis.
func latencyChart(r *Results, bands []chart.Band, sz size) template.HTML {
	var series []chart.Series
	for i, name := range ranArchs(r) {
		s := r.Architectures[name].Series
		xs := make([]float64, len(s.LatencyP99ms))
		for k := range xs {
			xs[k] = float64(k) + 0.5
		}
		series = append(series,
			chart.Series{Name: name + " p99", X: xs, Y: positive(s.LatencyP99ms), Color: chart.Color(i)},
			chart.Series{Name: name + " p50", X: xs, Y: positive(s.LatencyP50ms), Color: chart.Color(i), Dash: "5 4"})
	}
	c := chart.Line{
		Title:  "Latency over time, from each request's scheduled time (open loop)",
		Desc:   "p99 solid, p50 dashed, per second of scheduled time, logarithmic scale.",
		X:      chart.Axis{Label: "seconds", Format: chart.Seconds},
		Y:      chart.Axis{Label: "milliseconds", Log: true},
		Series: series, Bands: bands,
		Width: sz.w, Height: sz.h,
	}
	return c.SVG()
}

// positive turns zeros (no request that second) into gaps on a log axis.
func positive(ys []float64) []float64 {
	out := slices.Clone(ys)
	for i, y := range out {
		if y <= 0 {
			out[i] = math.NaN()
		}
	}
	return out
}

func errorChart(r *Results, bands []chart.Band) template.HTML {
	var series []chart.Series
	any := false
	for i, name := range ranArchs(r) {
		s := r.Architectures[name].Series
		var xs, ys []float64
		for k, n := range s.ErrorsPerS {
			xs = append(xs, float64(k)+0.5)
			ys = append(ys, float64(n))
			any = any || n > 0
		}
		series = append(series, chart.Series{Name: name, X: xs, Y: ys, Color: chart.Color(i)})
	}
	if !any {
		return ""
	}
	c := chart.Line{
		Title:  "Errors per second (5xx and requests without an answer)",
		X:      chart.Axis{Label: "seconds", Format: chart.Seconds},
		Y:      chart.Axis{Label: "errors/s"},
		Series: series, Bands: bands,
	}
	return c.SVG()
}

// imbalanceChart shows max/mean per phase, per architecture, beside the
// noise floor: the 95th percentile of what chance alone gives for the same
// requests (the widest of the architectures').
func imbalanceChart(r *Results, sz size) template.HTML {
	var groups []string
	for _, ph := range r.Parameters.Phases {
		groups = append(groups, ph.Name)
	}
	var series []chart.BarSeries
	top := 1.5
	floor := make([]float64, len(r.Parameters.Phases))
	for k := range floor {
		floor[k] = math.NaN()
	}
	for i, name := range ranArchs(r) {
		a := r.Architectures[name]
		var vals []float64
		for k, ph := range r.Parameters.Phases {
			val := math.NaN()
			if f := a.Phases[ph.Name]; f != nil && f.ImbalanceMaxOverMean != nil {
				val = *f.ImbalanceMaxOverMean
				top = math.Max(top, val*1.1)
				if f.ImbalanceNoiseP95 != nil && !(*f.ImbalanceNoiseP95 <= floor[k]) {
					floor[k] = *f.ImbalanceNoiseP95
				}
			}
			vals = append(vals, val)
		}
		series = append(series, chart.BarSeries{Name: name, Values: vals, Color: chart.Color(i)})
	}
	if slices.ContainsFunc(floor, func(x float64) bool { return !math.IsNaN(x) }) {
		series = append(series, chart.BarSeries{Name: "chance alone (p95)", Values: floor, Color: "#bbbbbb"})
	}
	c := chart.Bars{
		Title:  "Load imbalance per phase: the busiest instance over the mean",
		Desc:   "Over the instances in rotation for the whole phase; 1 is perfectly even; grey: the noise floor, what sending the same requests to instances at random gives at the 95th percentile (below it, a difference is chance); a dash: fewer than two instances were in rotation for the whole phase.",
		Y:      chart.Axis{Label: "max / mean", From: 1, To: top},
		Groups: groups, Series: series,
		Refs:  []chart.Ref{{Y: 1, Label: "even"}},
		Width: sz.w, Height: sz.h,
	}
	return c.SVG()
}

func scaleOutChart(r *Results, sz size) template.HTML {
	var groups []string
	var vals []float64
	for _, name := range ranArchs(r) {
		groups = append(groups, name)
		s := r.Architectures[name].ScaleOutSecondsToFairShare
		if s == nil {
			vals = append(vals, math.NaN())
		} else {
			vals = append(vals, *s)
		}
	}
	c := chart.Bars{
		Title:  "Scale-out: seconds until the new instance carried 80% of its fair share",
		Desc:   "A dash means it never did within the run.",
		Y:      chart.Axis{Label: "seconds"},
		Groups: groups, Series: []chart.BarSeries{{Name: "seconds to 80% of fair share", Values: vals}},
		Width: sz.w, Height: sz.h,
	}
	return c.SVG()
}

func costTable(r *Results) template.HTML {
	head := []string{"architecture", "throughput req/s", "p50 ms", "p99 ms", "p99.9 ms", "store round trips / request", "instance CPU ms / request", "requests"}
	var rows [][]string
	for _, name := range ranArchs(r) {
		f := &r.Architectures[name].Figures
		rows = append(rows, []string{name, fmt.Sprintf("%.1f", f.ThroughputRPS), fnum(f.P50ms, "%.2f"), fnum(f.P99ms, "%.1f"),
			fnum(f.P999ms, "%.1f"), fnum(f.StoreRoundTripsPerRequest, "%.2f"), fnum(f.CPUMsPerRequest, "%.2f"), itoa(f.Requests)})
	}
	return chart.Table{Caption: "What each request cost", Head: head, Rows: rows,
		Numeric: []bool{false, true, true, true, true, true, true, true}}.HTML()
}

func fnum(v *float64, format string) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *v)
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{"join": strings.Join}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>unstuck experiment</title>
<style>{{.CSS}}</style>
</head><body>
<h1>{{.Title}}</h1>
<p class="sub">{{.Sub}}</p>

<div class="overview">{{range .Overview}}<div class="cell">{{.}}</div>{{end}}</div>

<h2>Verdict</h2>
<div class="verdict"><ul>{{range .Verdict}}<li>{{.}}</li>{{end}}</ul></div>
<p class="note">Every sentence above is computed from this run's figures.</p>

<h2>Figures</h2>
{{.Summary}}
{{.Losses}}

<h2>Load per instance over time</h2>
{{range .PerArch}}
<h3>{{.Name}} <span class="note">({{.Status}})</span></h3>
<p>{{.Description}}. Balancer: {{.Balancer}}.{{if .Store}} Store: {{.Store}}.{{end}}</p>
{{range .Notes}}<p class="note">Note: {{.}}</p>{{end}}
{{if .Load}}<figure>{{.Load}}</figure>{{.Events}}{{end}}
{{end}}

<h2>Latency and errors</h2>
<figure>{{.Latency}}<figcaption>Latency runs from the time a request was scheduled, not from when it could be sent: when the system is slow the schedule does not wait (open loop), so the wait counts.</figcaption></figure>
{{if .Errors}}<figure>{{.Errors}}</figure>{{end}}

<h2>Imbalance and scale-out</h2>
<figure>{{.Imbalance}}</figure>
<figure>{{.ScaleOut}}</figure>
{{.Cost}}

{{if .R.Calibration}}<h2>Does the simulation agree with this run?</h2>
{{if .R.Calibration.Error}}<p class="note">It could not be checked: {{.R.Calibration.Error}}</p>{{else}}
<p>The simulation (<code>unstuck experiment --simulate</code>, the same model without sockets) ran {{.R.Calibration.Replications}} times at this run's own parameters, and each figure measured here was checked against the simulated spread (cart items lost include the updates lost to concurrent requests, which the model counts as lost items). Tolerance: {{.R.Calibration.Tolerance}}.</p>
{{.Calibration}}{{end}}{{end}}

<h2>How it was measured</h2>
<ul>
<li>Each architecture ran on its own fresh store, instances (real <code>unstuck app</code> processes) and balancer, one after the other, with the same users (same seed) and the same timeline: steady, scale_out (one instance joins), maintenance (one drained at the balancer, then stopped), crash (one killed with SIGKILL), store_restart (the shared store stopped and started again on its port with its data), recovery.</li>
<li>Users arrive as a Poisson process; session lengths and request rates are heavy-tailed; each user sends its requests at their scheduled times whatever became of the previous ones (open loop), with its own cookie jar.</li>
<li>Every user keeps a ledger of what the server must hold (logged in, each cart line, its uploads, the chat messages it should receive) and checks every answer against it: a user logged out by the system counts as a lost session, with the cart items and uploads that went with it; items missing from a live session count as lost, or as updates lost to concurrency when the user had cart writes in flight at once; an upload counts as lost when its job vanished or failed or its owner's session forgot it; a chat message counts as lost when a user in the room for its whole delivery never got it, live or from history, and as duplicated when the WebSocket delivered it twice.</li>
<li>Latency percentiles come from HDR histograms (3 significant digits) of every request but stream openings; errors are requests without an answer or answered 5xx (4xx answers are listed by status but are not errors).</li>
<li>Imbalance: requests served per instance over the instances in rotation for the whole phase, max/mean and coefficient of variation; the headline is the steady phase's. Scale-out: one-second windows from the join, until the new instance carries 80% of an equal share.</li>
<li>Store round trips: operations the store server counted (NATS messages in, Redis commands processed) over requests answered, all parts included. CPU: user + system time of the instance processes from /proc.</li>
<li>The balancer, the simulated users and the embedded NATS server share the experiment's own process, as in the demo; the app instances are processes of their own. The architectures run one after the other on the same machine, so a busy machine (see its load average below) weighs on them at different moments: compare latencies within a run with care, and losses anywhere.</li>
</ul>
{{.Model}}
<p class="note">Machine: {{.Machine}}</p>
<p class="note">Command: <code>{{.R.Parameters.Command}}</code></p>
</body></html>
`))
