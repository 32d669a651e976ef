package sim

import (
	"encoding/json"
	"io"
	"math"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// Report is what Run measured. Its JSON form (WriteJSON) is
// simulation.json: {"rows": [...], "theory": [...], "calibration": {...}}.
type Report struct {
	// Rows are one per architecture and sweep point, in increasing scale.
	Rows []Row `json:"rows"`
	// Theory are the balls-into-bins checks of the placement code.
	Theory []TheoryRow `json:"theory"`
	// Calibration compares the simulation with a live run at 3 instances.
	Calibration Calibration `json:"calibration"`

	// Model states the parameters (for the HTML page).
	Model []model.Param `json:"-"`
	// Complete is false when Run was cancelled before the end.
	Complete bool `json:"-"`
	// series keeps each run's load over time for the page's charts: the
	// largest scale and the calibration scale of each architecture.
	series map[string]runSeries
}

// runSeries is one run's time series and phases, for a chart.
type runSeries struct {
	instances, users int
	points           []point
	spans            []model.Span
	joiner           int
}

// Row is one architecture at one scale. Counts are per run; rates are per
// second of the steady phase unless the name says otherwise.
type Row struct {
	Architecture string `json:"architecture"`
	Instances    int    `json:"instances"`
	Users        int    `json:"users"`
	// ImbalanceMaxOverMean and ImbalanceCV are the steady phase's, per
	// model.ImbalanceOf of the requests each instance served.
	ImbalanceMaxOverMean float64 `json:"imbalance_max_over_mean"`
	ImbalanceCV          float64 `json:"imbalance_cv"`
	// ImbalanceNoiseP95 is the noise floor: the 95th percentile of the
	// max/mean that sending the same requests to the same instances at
	// random gives (model.ImbalanceNoise). At or below it, an imbalance
	// is chance, and differences between architectures are too.
	ImbalanceNoiseP95 float64 `json:"imbalance_noise_p95"`
	// SessionsLostPerCrash is the sessions lost when one instance is
	// killed: users who had to log in again.
	SessionsLostPerCrash float64 `json:"sessions_lost_per_crash"`
	// SecondsToFairShare is how long the joined instance took to carry
	// model.FairShare of an equal share; null: not within the run.
	SecondsToFairShare *float64 `json:"seconds_to_fair_share"`
	// StoreOpsPerS is the session store's round trips per second (reads,
	// writes, revocation writes); the revocation feed's deliveries to the
	// instances are counted apart.
	StoreOpsPerS       float64 `json:"store_ops_per_s"`
	StoreReadsPerS     float64 `json:"store_reads_per_s"`
	StoreWritesPerS    float64 `json:"store_writes_per_s"`
	FeedDeliveriesPerS float64 `json:"revocation_deliveries_per_s"`
	// HotKey names the busiest store key and HotKeyOpsPerS its load.
	HotKey        string  `json:"hot_key"`
	HotKeyOpsPerS float64 `json:"hot_key_ops_per_s"`
	// Backplane is chat and jobs, the same design in every architecture:
	// ops/s on the store, and the one chat channel's share of them.
	BackplaneOpsPerS   float64 `json:"backplane_ops_per_s"`
	ChatChannelOpsPerS float64 `json:"chat_channel_ops_per_s"`
	RequestsPerS       float64 `json:"requests_per_s"`
	// SpillsPerS: affinity's re-pins by the load bound or a drain.
	SpillsPerS float64 `json:"spills_per_s"`
	// NearCacheHitRatio: affinity's requests served without a store read.
	NearCacheHitRatio *float64 `json:"near_cache_hit_ratio"`
	SessionsLost      float64  `json:"sessions_lost"`
	CartItemsLost     float64  `json:"cart_items_lost"`
	Errors            float64  `json:"errors"`
	// JobWorkers is the job workers per instance this run had
	// (model.Params.WorkersAtScale in the sweep, the live run's in the
	// calibration), JobUtilisation the share of their time the uploads
	// keep busy (model.Params.JobUtilisation). JobsQueued is the uploads'
	// jobs queued over the run and JobsWaitingAtEnd those still waiting
	// for a worker when it ended: a queue that keeps up leaves a few.
	JobWorkers       int     `json:"job_workers_per_instance"`
	JobUtilisation   float64 `json:"job_utilisation"`
	JobsQueued       float64 `json:"jobs_queued"`
	JobsWaitingAtEnd float64 `json:"jobs_waiting_at_end"`
	// Exact: requests were routed one by one (else counted per instance).
	Exact       bool    `json:"requests_routed_one_by_one"`
	Seed        uint64  `json:"seed"`
	DurationS   float64 `json:"duration_s"`
	WallSeconds float64 `json:"wall_seconds"`
	// Complete is false for a run cut short by cancellation.
	Complete bool                    `json:"complete"`
	Phases   map[string]PhaseFigures `json:"phases"`
}

// PhaseFigures are one phase's figures.
type PhaseFigures struct {
	ImbalanceMaxOverMean float64 `json:"imbalance_max_over_mean"`
	ImbalanceCV          float64 `json:"imbalance_cv"`
	Requests             float64 `json:"requests"`
	SessionsLost         float64 `json:"sessions_lost"`
	CartItemsLost        float64 `json:"cart_items_lost"`
	Errors               float64 `json:"errors"`
	StoreOpsPerS         float64 `json:"store_ops_per_s"`
	SpillsPerS           float64 `json:"spills_per_s"`
}

// WriteJSON writes simulation.json.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// storeOps is a phase's session-store traffic per the model's Arch.Ops.
type storeOps struct {
	reads, writes, feed, errors float64
}

func phaseStoreOps(a model.Arch, p *model.Params, ph *phaseStats) storeOps {
	s := p.Script
	twoTabAdds := ph.twoTabInt * s.AddToCart // the second tab's adds
	mix := []struct {
		act model.Action
		n   float64
	}{
		{model.Browse, ph.script * s.Browse},
		{model.AddToCart, ph.script*s.AddToCart + twoTabAdds},
		{model.ViewCart, ph.script * s.ViewCart},
		{model.Login, ph.logins},
		{model.Logout, ph.logouts},
	}
	var o storeOps
	for _, m := range mix {
		ops := a.Ops(m.act, true)
		o.reads += float64(ops.Reads) * m.n
		o.writes += float64(ops.Writes) * m.n
	}
	o.reads += float64(a.Ops(model.Browse, false).Reads-a.Ops(model.Browse, true).Reads) * ph.misses
	o.feed = ph.feed
	// Requests that needed the store while it was down failed.
	switch a.Sessions {
	case model.SessionsStore:
		if a.NearCache {
			o.errors = ph.downMisses + ph.downWrites + ph.downReqs*s.AddToCart
		} else {
			o.errors = ph.downReqs
		}
	case model.SessionsCookie:
		o.errors = ph.downReqs // the revocation feed is down: fail closed
	}
	return o
}

// rowFrom turns a run's result into a row.
func rowFrom(res *result, a model.Arch) Row {
	p := &res.p
	steady := res.phases[0]
	im := steady.imbalance()
	load, k := steady.eligibleLoad()
	row := Row{
		Architecture: res.arch, Instances: res.instances, Users: res.users,
		ImbalanceMaxOverMean: im.MaxOverMean, ImbalanceCV: im.CV,
		ImbalanceNoiseP95:    model.ImbalanceNoise(load, k).P95,
		SessionsLostPerCrash: res.lostCrash,
		JobWorkers:           p.Script.JobWorkers, JobUtilisation: p.JobUtilisation(p.Script.JobWorkers),
		JobsQueued: res.jobsQueued, JobsWaitingAtEnd: res.jobsWaiting,
		Exact: res.exact, Seed: p.Seed, DurationS: p.Duration.Seconds(),
		WallSeconds: math.Round(res.elapsed.Seconds()*100) / 100,
		Complete:    res.complete,
		Phases:      map[string]PhaseFigures{},
	}
	if res.fairT >= 0 {
		v := res.fairT
		row.SecondsToFairShare = &v
	}
	so := phaseStoreOps(a, p, steady)
	secs := steady.seconds()
	row.StoreReadsPerS = so.reads / secs
	row.StoreWritesPerS = so.writes / secs
	row.StoreOpsPerS = (so.reads + so.writes) / secs
	row.FeedDeliveriesPerS = so.feed / secs
	row.RequestsPerS = steady.requests / secs
	row.SpillsPerS = steady.spills / secs
	perReq := 0.0
	if steady.requests > 0 {
		perReq = (so.reads + so.writes) / steady.requests
	}
	switch a.Sessions {
	case model.SessionsStore:
		row.HotKey = "session of the most active user"
		row.HotKeyOpsPerS = steady.maxRate * perReq
	case model.SessionsCookie:
		row.HotKey = "revocation feed"
		row.HotKeyOpsPerS = so.writes / secs
	default:
		row.HotKey = "none (sessions in memory)"
	}
	if a.NearCache && steady.requests > 0 {
		v := 1 - steady.misses/steady.requests
		row.NearCacheHitRatio = &v
	}
	chat := p.Script.ChatRate * (steady.chatInt*model.ChatPublishOps + steady.chatDeliver) / secs
	row.ChatChannelOpsPerS = chat
	row.BackplaneOpsPerS = chat + steady.uploads*(model.JobOps+model.ProgressOps)/secs
	for _, ph := range res.phases {
		im := ph.imbalance()
		o := phaseStoreOps(a, p, ph)
		errs := ph.errors + o.errors
		row.SessionsLost += ph.lost
		row.CartItemsLost += ph.cartLost
		row.Errors += errs
		row.Phases[ph.name] = PhaseFigures{
			ImbalanceMaxOverMean: im.MaxOverMean, ImbalanceCV: im.CV,
			Requests: ph.requests, SessionsLost: ph.lost, CartItemsLost: ph.cartLost,
			Errors: errs, StoreOpsPerS: (o.reads + o.writes) / ph.seconds(),
			SpillsPerS: ph.spills / ph.seconds(),
		}
	}
	return row
}
