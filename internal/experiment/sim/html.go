package sim

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"

	"github.com/unstuck-dev/unstuck/internal/experiment/chart"
	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// archColor gives each architecture one colour on every chart.
var archColor = map[string]string{
	"sticky": chart.Palette[1], "store": chart.Palette[0], "affinity": chart.Palette[2], "cookie": chart.Palette[3],
}

// archDash draws cookie dashed: with the same seed its routing is store's,
// so its line often lies on store's.
var archDash = map[string]string{"cookie": "7 4"}

// figure is a chart with its caption.
type figure struct {
	SVG     template.HTML
	Caption string
}

// page is what the template fills.
type page struct {
	CSS         template.CSS
	Sub         string
	Verdict     []string
	Growth      []figure
	RowsTable   template.HTML
	OverTime    []figure
	Theory      template.HTML
	TheoryFig   figure
	Calibration template.HTML
	CalibNote   string
	CalibFigs   []figure
	Model       template.HTML
	Complete    bool
	MaxPoints   int
}

// WriteHTML writes simulation.html: one self-contained page (inline SVG,
// no script, no network) with the verdict, growth curves, the theory
// checks, the calibration and the model's parameters.
func (r *Report) WriteHTML(w io.Writer) error {
	p := page{CSS: template.CSS(chart.CSS), Verdict: r.Verdict(), Complete: r.Complete, MaxPoints: maxPoints}
	if big := r.largest(); len(big) > 0 {
		var any Row
		for _, row := range big {
			any = row
		}
		p.Sub = fmt.Sprintf("%d architectures, up to %s instances and %s users; %s s of simulated time per run, seed %d.",
			len(big), count(any.Instances), count(any.Users), chart.Num(any.DurationS), any.Seed)
	}
	p.Growth = r.growthFigures()
	p.RowsTable = r.rowsTable()
	p.OverTime = r.overTimeFigures()
	p.Theory, p.TheoryFig = r.theoryTable(), r.theoryFigure()
	p.Calibration, p.CalibNote, p.CalibFigs = r.calibrationParts()
	p.Model = r.modelTable()
	return pageTemplate.Execute(w, p)
}

// growth lists arch's rows as (x, y) points.
func (r *Report) growth(arch string, x func(Row) float64, y func(Row) float64) chart.Series {
	s := chart.Series{Name: arch, Color: archColor[arch], Dash: archDash[arch]}
	for _, row := range r.rowsOf(arch) {
		s.X = append(s.X, x(row))
		s.Y = append(s.Y, y(row))
	}
	return s
}

func instancesOf(r Row) float64 { return float64(r.Instances) }
func usersOf(r Row) float64     { return float64(r.Users) }

func (r *Report) growthFigures() []figure {
	names := r.archNames()
	if len(names) == 0 {
		return nil
	}
	line := func(title, desc string, x chart.Axis, y chart.Axis, xf func(Row) float64, yf func(Row) float64, refs []chart.Ref, extra ...chart.Series) figure {
		c := &chart.Line{Title: title, Desc: desc, X: x, Y: y, Refs: refs}
		for _, n := range names {
			c.Series = append(c.Series, r.growth(n, xf, yf))
		}
		c.Series = append(c.Series, extra...)
		return figure{SVG: c.SVG(), Caption: desc}
	}
	inst := chart.Axis{Label: "instances (log scale)", Log: true}
	users := chart.Axis{Label: "users (log scale)", Log: true}
	perCrash := chart.Series{Name: "users ÷ instances", Color: "#777", Dash: "5 4"}
	for _, row := range r.rowsOf(names[0]) {
		perCrash.X = append(perCrash.X, float64(row.Instances))
		perCrash.Y = append(perCrash.Y, float64(row.Users)/float64(row.Instances))
	}
	nan := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	return []figure{
		line("Load imbalance in steady state", "Busiest instance's requests over the mean, steady phase, as the system grows (users grow with instances along the sweep).",
			inst, chart.Axis{Label: "max / mean"}, instancesOf, func(r Row) float64 { return r.ImbalanceMaxOverMean }, []chart.Ref{{Y: 1, Label: "perfect"}}),
		line("Spread of load (coefficient of variation)", "Standard deviation of per-instance requests over their mean, steady phase.",
			inst, chart.Axis{Label: "CV", Log: true}, instancesOf, func(r Row) float64 { return r.ImbalanceCV }, nil),
		line("Sessions lost when one instance crashes", "Users who had to log in again after one instance was killed; the dashed line is one instance's share of the users.",
			inst, chart.Axis{Label: "sessions (log scale)", Log: true}, instancesOf, func(r Row) float64 { return r.SessionsLostPerCrash }, nil, perCrash),
		line("Seconds for a new instance to reach 80% of its fair share", "Gaps mean the new instance never got there within the run.",
			inst, chart.Axis{Label: "seconds", Format: chart.Seconds}, instancesOf, func(r Row) float64 { return nan(r.SecondsToFairShare) }, nil),
		line("Session-store operations per second", "Reads and writes of session state (revocation writes for cookie); sticky keeps sessions in memory and has none.",
			users, chart.Axis{Label: "ops/s (log scale)", Log: true}, usersOf, func(r Row) float64 { return r.StoreOpsPerS }, nil),
		line("The hottest key", "Busiest single key: the most active user's session (store, affinity) or the revocation feed (cookie); the dashed line is the one chat channel every architecture shares.",
			users, chart.Axis{Label: "ops/s (log scale)", Log: true}, usersOf, func(r Row) float64 { return r.HotKeyOpsPerS }, nil,
			r.growthStyled(names[0], "chat channel", usersOf, func(r Row) float64 { return r.ChatChannelOpsPerS })),
	}
}

func (r *Report) growthStyled(arch, name string, x, y func(Row) float64) chart.Series {
	s := r.growth(arch, x, y)
	s.Name, s.Color, s.Dash = name, "#777", "5 4"
	return s
}

func (r *Report) rowsTable() template.HTML {
	t := chart.Table{
		Head:    []string{"architecture", "instances", "users", "max/mean", "noise floor (p95)", "CV", "lost per crash", "s to fair share", "store ops/s", "hot key ops/s", "revocations delivered/s", "spills/s", "near-cache hits", "job workers per instance", "jobs waiting at the end", "wall s"},
		Numeric: []bool{false, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true},
	}
	rows := append([]Row(nil), r.Rows...)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Architecture < rows[j].Architecture })
	for _, row := range rows {
		fair, hit := "not reached", "–"
		if row.SecondsToFairShare != nil {
			fair = chart.Num(*row.SecondsToFairShare)
		}
		if row.NearCacheHitRatio != nil {
			hit = fmt.Sprintf("%.1f%%", 100**row.NearCacheHitRatio)
		}
		name := row.Architecture
		if !row.Complete {
			name += " (interrupted)"
		}
		t.Rows = append(t.Rows, []string{name, count(row.Instances), count(row.Users),
			fmt.Sprintf("%.3f", row.ImbalanceMaxOverMean), fmt.Sprintf("%.3f", row.ImbalanceNoiseP95), fmt.Sprintf("%.4f", row.ImbalanceCV),
			chart.Num(row.SessionsLostPerCrash), fair, chart.Num(row.StoreOpsPerS), chart.Num(row.HotKeyOpsPerS),
			chart.Num(row.FeedDeliveriesPerS), chart.Num(row.SpillsPerS), hit, count(row.JobWorkers),
			fmt.Sprintf("%s of %s", chart.Num(row.JobsWaitingAtEnd), chart.Num(row.JobsQueued)), fmt.Sprintf("%.1f", row.WallSeconds)})
	}
	return t.HTML()
}

// bands turns phases into chart bands.
func bands(spans []model.Span) []chart.Band {
	var out []chart.Band
	for _, s := range spans {
		out = append(out, chart.Band{From: s.Start.Seconds(), To: s.End.Seconds(), Label: s.Name})
	}
	return out
}

// overTimeFigures: imbalance over time at the largest scale, all
// architectures on one chart.
func (r *Report) overTimeFigures() []figure {
	c := &chart.Line{Title: "Imbalance over time at the largest scale",
		X: chart.Axis{Label: "simulated time", Format: chart.Seconds}, Y: chart.Axis{Label: "max / mean per 1 s window"}}
	var spans []model.Span
	for _, n := range r.archNames() {
		rs, ok := r.series[n]
		if !ok {
			continue
		}
		spans = rs.spans
		s := chart.Series{Name: n, Color: archColor[n], Dash: archDash[n]}
		for _, p := range rs.points {
			s.X = append(s.X, p.T)
			s.Y = append(s.Y, p.MaxOverMean)
		}
		c.Series = append(c.Series, s)
		c.Desc = fmt.Sprintf("Per-window max/mean of requests over the instances up, %s instances and %s users, with the phases shaded.", count(rs.instances), count(rs.users))
	}
	if len(c.Series) == 0 {
		return nil
	}
	c.Bands = bands(spans)
	return []figure{{SVG: c.SVG(), Caption: c.Desc + " Windows count Poisson noise too, so a perfect balancer is above 1."}}
}

func (r *Report) theoryTable() template.HTML {
	t := chart.Table{Head: []string{"check", "bins", "balls", "trials", "mean max load", "worst", "formula", "predicted", "sharper form", "within"},
		Numeric: []bool{false, true, true, true, true, true, false, true, true, false}}
	for _, th := range r.Theory {
		sharp := "–"
		if th.Sharper != nil {
			sharp = fmt.Sprintf("%.2f (%s)", *th.Sharper, th.SharperFormula)
		}
		ok := "yes"
		cls := "good"
		if !th.Within {
			ok, cls = "no: "+th.Criterion, "bad"
		}
		t.Rows = append(t.Rows, []string{th.Check, count(th.Bins), count(th.Balls), fmt.Sprint(th.Trials),
			fmt.Sprintf("%.2f", th.MeanMaxLoad), chart.Num(th.WorstMaxLoad), th.Formula, fmt.Sprintf("%.2f", th.Predicted), sharp, ok})
		t.Classes = append(t.Classes, cls)
	}
	return t.HTML()
}

func (r *Report) theoryFigure() figure {
	c := &chart.Line{Title: "Balls into bins: n balls, n bins", X: chart.Axis{Label: "n (log scale)", Log: true}, Y: chart.Axis{Label: "fullest bin"}}
	add := func(name, color, dash string, check string, y func(TheoryRow) float64) {
		s := chart.Series{Name: name, Color: color, Dash: dash}
		for _, t := range r.Theory {
			if t.Check == check {
				s.X = append(s.X, float64(t.Bins))
				s.Y = append(s.Y, y(t))
			}
		}
		if len(s.X) > 0 {
			c.Series = append(c.Series, s)
		}
	}
	add("one choice, measured", chart.Palette[1], "", "one_choice", func(t TheoryRow) float64 { return t.MeanMaxLoad })
	add("Γ⁻¹(n) − 3/2", chart.Palette[1], "2 3", "one_choice", func(t TheoryRow) float64 {
		if t.Sharper == nil {
			return math.NaN()
		}
		return *t.Sharper
	})
	add("ln n / ln ln n", chart.Palette[4], "6 3", "one_choice", func(t TheoryRow) float64 { return t.Predicted })
	add("two choices, measured", chart.Palette[0], "", "two_choices", func(t TheoryRow) float64 { return t.MeanMaxLoad })
	add("ln ln n / ln 2", chart.Palette[5], "6 3", "two_choices", func(t TheoryRow) float64 { return t.Predicted })
	c.Desc = "Mean fullest bin over the trials, against the formulas."
	return figure{SVG: c.SVG(), Caption: "The leading-order ln n / ln ln n is far below the measurement at practical n; Gonnet's Γ⁻¹(n) − 3/2 is the precise expectation. Two choices track ln ln n / ln 2 plus a constant."}
}

func (r *Report) calibrationParts() (template.HTML, string, []figure) {
	c := r.Calibration
	if !c.Available {
		return "", "Not calibrated: " + c.Reason + ".", nil
	}
	t := chart.Table{Head: []string{"architecture", "metric", "live", "sim, same seed", "sim mean", "sim 95% range", "within"},
		Numeric: []bool{false, false, true, true, true, false, false}}
	for _, ch := range c.Checks {
		ok, cls := "yes", "good"
		if !ch.Within {
			ok, cls = "no", "bad"
		}
		t.Rows = append(t.Rows, []string{ch.Architecture, ch.Metric, chart.Num(ch.Live), chart.Num(ch.SimSameSeed), chart.Num(ch.SimMean),
			fmt.Sprintf("%s – %s (± %s)", chart.Num(ch.SimLow), chart.Num(ch.SimHigh), chart.Num(ch.Slack)), ok})
		t.Classes = append(t.Classes, cls)
	}
	note := fmt.Sprintf("Live results %s; simulated at %d instances, %s users, seed %d, %s s, %d replications. Tolerance: %s.",
		c.Source, c.Instances, count(c.Users), c.Seed, chart.Num(c.DurationS), c.Replications, c.Tolerance)
	var figs []figure
	for _, n := range r.archNames() {
		rs, ok := r.series["calibration/"+n]
		if !ok || len(rs.points) == 0 || rs.points[0].PerInstance == nil {
			continue
		}
		lc := &chart.Line{Title: fmt.Sprintf("%s: requests per instance over time (simulated, live seed)", n),
			X: chart.Axis{Label: "simulated time", Format: chart.Seconds}, Y: chart.Axis{Label: "requests/s"}, Bands: bands(rs.spans)}
		for i := range rs.points[0].PerInstance {
			s := chart.Series{Name: fmt.Sprintf("instance %d", i)}
			if i == rs.joiner {
				s.Name += " (joins)"
			}
			for _, p := range rs.points {
				s.X = append(s.X, p.T)
				s.Y = append(s.Y, p.PerInstance[i])
			}
			lc.Series = append(lc.Series, s)
		}
		lc.Desc = "Per-instance load of the simulated run with the live run's seed, to set beside report.html's live chart."
		figs = append(figs, figure{SVG: lc.SVG(), Caption: lc.Desc})
	}
	return t.HTML(), note, figs
}

func (r *Report) modelTable() template.HTML {
	t := chart.Table{Head: []string{"parameter", "value", "meaning"}}
	for _, p := range r.Model {
		t.Rows = append(t.Rows, []string{p.Name, p.Value, p.Meaning})
	}
	return t.HTML()
}

var pageTemplate = template.Must(template.New("sim").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>unstuck experiment --simulate</title><style>{{.CSS}}</style></head><body>
<h1>Where does a user's state live? The simulation</h1>
<p class="sub">{{.Sub}}</p>
<div class="verdict"><strong>Verdict</strong><ul>{{range .Verdict}}<li>{{.}}</li>{{end}}</ul></div>
<h2>How the figures grow with scale</h2>
{{range .Growth}}<figure>{{.SVG}}<figcaption>{{.Caption}}</figcaption></figure>{{end}}
<h3>Every run</h3>
{{.RowsTable}}
{{range .OverTime}}<figure>{{.SVG}}<figcaption>{{.Caption}}</figcaption></figure>{{end}}
<h2>Checked against theory first</h2>
<p>Before trusting the simulator, its own placement code places balls into bins: uniformly at random (the baseline), by the better of two random choices (the simulator's p2c, as lb's), and by consistent hashing with bounded loads at c = 1.25 (the simulator's capacity rule with lb's rendezvous hashing).</p>
{{.Theory}}
<figure>{{.TheoryFig.SVG}}<figcaption>{{.TheoryFig.Caption}}</figcaption></figure>
<h2>Calibrated against the live run</h2>
<p>{{.CalibNote}}</p>
{{.Calibration}}
{{range .CalibFigs}}<figure>{{.SVG}}<figcaption>{{.Caption}}</figcaption></figure>{{end}}
<h2>The model</h2>
<p>The same model drives the live run (package internal/experiment/model); these are its parameters.</p>
{{.Model}}
<h2>How the simulation works</h2>
<ul>
<li>Events are users' logins and departures (a heap fed by a calendar of one-second buckets), the timeline's faults, phases and one-second windows, in a deterministic order for a seed.</li>
<li>Requests of store and cookie go one by one through p2c with real in-flight counts (each in flight for the service time), as do affinity's, whose bounded-load spill re-pins the requesting user, drawn in proportion to its rate. At scale affinity pins tokens (users counted per instance and rate class) instead of users: spills re-pin users so often that a user's place says nothing about its age; run both ways at 300 and at 1,000 users per instance, the shares of requests they spill differ by less than 0.002.</li>
<li>Sticky at scale does not route requests one by one: with a sticky cookie a request's instance does not depend on when it is sent, so an instance's requests in a window are Poisson with mean the integral of its pinned users' rates (the superposition of their Poisson processes), which is exact in distribution. New users are pinned by p2c on in-flight counts drawn from their stationary law, Poisson(rate × service time). Run both ways at 1,000 users per instance, imbalance, sessions lost and time to fair share agree within their seed-to-seed spread. Affinity is not aggregated so: its bound regulates the in-flight count, which then is not Poisson (tried: it overstated spills by 70%).</li>
<li>Uploads hold a request in flight for as long as their job runs, as lb counts them: the upload's progress stream (Server-Sent Events) stays open until its job ends, and jobs wait in one FIFO queue for a worker and then take a fixed time (the model's job time). p2c and the spill's bound compare in-flight counts, and at the default model a dozen or more streams are open against about one short request, so an instance holding one stream more gets fewer short requests: that is most of the imbalance of p2c. Chat WebSockets are not counted: lb stops counting a WebSocket once its 101 is relayed. The streams of an instance that goes away reconnect through p2c (with sessions in its memory they end: the session is gone).</li>
<li>Job workers are provisioned in proportion to load, as an operator would provision them: one per instance, as the live app runs, at the live run's scale (300 users on 3 instances: 1.5 uploads/s of 2 s jobs on 3 workers, a utilisation of 1.0), and elsewhere the fewest per instance that keep the utilisation (uploads/s × job time ÷ workers) at most the live run's: ceil(users per instance ÷ 100) with the default model, ten at 1,000 users an instance. With one worker an instance there, uploads would come ten times as fast as the workers clear them: the queue would grow for the whole run, to hundreds of streams per instance by its end, and the sweep would measure an overloaded queue, not the architecture. Provisioned so, an instance holds about as many streams per short request in flight as at the live scale (the live default runs its workers fully busy, so a few jobs still wait); p2c still follows the streams, as lb does live: without uploads its imbalance is at the noise floor. The calibration keeps the live run's own workers (one per instance), whatever its load. The table gives each run's workers and the jobs still waiting at its end.</li>
<li>Sticky's lost sessions are counted when the user would notice, as the live ledger counts them: a browse answered 401, a chat user's reconnection, an upload's progress stream, or the final check of a user still there at the end; an add, a cart view or a logout answered 401 counts nothing.</li>
<li>Memory follows the active users (slots are reused) and the time series is capped at {{.MaxPoints}} points by merging neighbours, so it does not grow with the simulated duration. Waiting jobs are kept one by one up to 65,536 and as counts per instance beyond, so a queue that grows because uploads outpace the workers does not grow memory either.</li>
</ul>
{{if not .Complete}}<p class="note">This run was interrupted; the page shows what was computed.</p>{{end}}
</body></html>
`))
