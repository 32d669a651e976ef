// Package report holds the experiment's results (the schema of
// results.json) and turns them into the terminal table, the self-contained
// report.html and the verdict in plain words.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// Results is results.json: the run's parameters, the machine and, per
// architecture, the figures overall and per phase. Keys are snake_case and
// stable: tools and the simulator's calibration read them.
type Results struct {
	// SchemaVersion changes only when a key changes meaning.
	SchemaVersion int        `json:"schema_version"`
	Parameters    Parameters `json:"parameters"`
	Machine       Machine    `json:"machine"`
	StartedAt     time.Time  `json:"started_at"`
	FinishedAt    time.Time  `json:"finished_at"`
	// Complete is false when the run was interrupted: what was measured
	// until then is kept.
	Complete bool `json:"complete"`
	// Order is the order in which the architectures ran.
	Order         []string                 `json:"architecture_order"`
	Architectures map[string]*Architecture `json:"architectures"`
	// Calibration compares this run's figures with the simulation at this
	// run's parameters; nil when it was not done.
	Calibration *Calibration `json:"calibration,omitempty"`
}

// Calibration is how this live run's figures compare with the simulated
// spread at its own parameters (package sim computes it from this very
// results.json).
type Calibration struct {
	// Tolerance says in words when a figure agrees.
	Tolerance    string `json:"tolerance"`
	Replications int    `json:"replications"`
	Instances    int    `json:"instances"`
	Users        int    `json:"users"`
	// Agree of Total checks passed.
	Agree  int                `json:"agree"`
	Total  int                `json:"total"`
	Checks []CalibrationCheck `json:"checks"`
	// Error says why the calibration could not run, if it could not.
	Error string `json:"error,omitempty"`
}

// CalibrationCheck is one figure: live against the simulated 95% range,
// widened by Slack.
type CalibrationCheck struct {
	Architecture string  `json:"architecture"`
	Metric       string  `json:"metric"`
	Live         float64 `json:"live"`
	SimMean      float64 `json:"sim_mean"`
	SimLow       float64 `json:"sim_low"`
	SimHigh      float64 `json:"sim_high"`
	Slack        float64 `json:"slack"`
	Within       bool    `json:"within"`
}

// Parameters are what the run was asked to do.
type Parameters struct {
	Architectures []string `json:"architectures"`
	Users         int      `json:"users"`
	DurationS     float64  `json:"duration_s"`
	Instances     int      `json:"instances"`
	Store         string   `json:"store"`
	Seed          uint64   `json:"seed"`
	Quick         bool     `json:"quick"`
	// Phases are the timeline's phases, the same for every architecture.
	Phases []PhaseSpan `json:"phases"`
	// Model is the workload model's parameters, as the model package
	// states them.
	Model []model.Param `json:"model,omitempty"`
	// Command is the command line that reproduces the run.
	Command string `json:"command"`
}

// PhaseSpan is one phase of the timeline, in seconds from the start.
type PhaseSpan struct {
	Name   string  `json:"name"`
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
}

// Machine is where the run happened, and how busy the machine was.
type Machine struct {
	CPUs        int        `json:"cpus"`
	CPUModel    string     `json:"cpu_model,omitempty"`
	OS          string     `json:"os"`
	Arch        string     `json:"arch"`
	Kernel      string     `json:"kernel,omitempty"`
	GoVersion   string     `json:"go_version"`
	LoadAvg     [3]float64 `json:"load_average_start"`
	LoadAvgEnd  [3]float64 `json:"load_average_end"`
	MemoryBytes uint64     `json:"memory_bytes,omitempty"`
}

// Architecture is one architecture's run.
type Architecture struct {
	// Description says in a sentence what the architecture is.
	Description string `json:"description"`
	// Balancer is how the balancer was configured for it.
	Balancer string `json:"balancer"`
	// App is how the app instances were started.
	App string `json:"app"`
	// Store is the shared store of this run.
	Store string `json:"store"`
	// Status is "complete", "interrupted" or "failed" (it could not run;
	// the notes say why).
	Status string `json:"status"`
	// Complete is true when Status is "complete".
	Complete bool `json:"complete"`
	// Figures are the whole run's.
	Figures
	// Phases holds the same figures per phase, by phase name.
	Phases map[string]*Figures `json:"phases"`
	// Events are what the timeline did, when.
	Events []Event `json:"events"`
	// Series are the figures over time, for the charts.
	Series Series `json:"series"`
	// Notes are things the reader must know about this run (a phase that
	// could not do what it should, a store the experiment did not start).
	Notes []string `json:"notes,omitempty"`
}

// Figures are the measured numbers of a run or a phase. A nil pointer is a
// figure that could not be measured (shown as "n/a").
type Figures struct {
	DurationS float64 `json:"duration_s"`
	// Requests are HTTP requests sent (streams opened included); Streams
	// those that opened a WebSocket or an event stream.
	Requests int64 `json:"requests"`
	Streams  int64 `json:"streams"`
	// Users that were in the system during this span.
	Users int `json:"users,omitempty"`

	SessionsLost       int64 `json:"sessions_lost"`
	CartItemsLost      int64 `json:"cart_items_lost"`
	UpdatesLost        int64 `json:"updates_lost"`
	UploadsLost        int64 `json:"uploads_lost"`
	MessagesLost       int64 `json:"messages_lost"`
	MessagesDuplicated int64 `json:"messages_duplicated"`
	CartItemsExtra     int64 `json:"cart_items_extra"`
	StaleReads         int64 `json:"stale_reads"`
	UploadsUnfinished  int64 `json:"uploads_unfinished"`

	// Errors are requests without an answer or answered 5xx;
	// ErrorsByStatus splits them, and also counts 4xx answers.
	Errors         int64            `json:"errors"`
	ErrorsByStatus map[string]int64 `json:"errors_by_status"`

	// Imbalance of the requests served by the instances in rotation for
	// the whole span: max/mean and coefficient of variation. The run's
	// headline figure is its steady phase's.
	ImbalanceMaxOverMean *float64 `json:"imbalance_max_over_mean"`
	ImbalanceCV          *float64 `json:"imbalance_cv"`
	// ImbalanceNoiseFloor is the max/mean chance alone gives for the same
	// requests over the same instances, each request sent to a uniformly
	// random one (model.ImbalanceNoise), and ImbalanceNoiseP95 its 95th
	// percentile: an imbalance at or below the P95 is within noise of
	// perfectly even, and two architectures' imbalances differ only by
	// more than the noise.
	ImbalanceNoiseFloor *float64 `json:"imbalance_noise_floor"`
	ImbalanceNoiseP95   *float64 `json:"imbalance_noise_p95"`
	// ScaleOutSecondsToFairShare is how long the instance that joined
	// took to carry 80% of its fair share; nil if it never did.
	ScaleOutSecondsToFairShare *float64 `json:"scale_out_seconds_to_fair_share"`

	// Latency from each request's scheduled time to its answer.
	P50ms  *float64 `json:"p50_ms"`
	P99ms  *float64 `json:"p99_ms"`
	P999ms *float64 `json:"p99_9_ms"`
	MaxMs  *float64 `json:"max_ms"`
	// ThroughputRPS is requests answered (not errors) per second.
	ThroughputRPS float64 `json:"throughput_rps"`

	// StoreRoundTripsPerRequest is the store's operations (sessions,
	// chat, jobs, presence) per request answered; nil if the store could
	// not be asked.
	StoreRoundTripsPerRequest *float64 `json:"store_round_trips_per_request"`
	// CPUMsPerRequest is the app instances' CPU time per request answered.
	CPUMsPerRequest *float64 `json:"cpu_ms_per_request"`

	// RequestsPerInstance counts answered requests by instance.
	RequestsPerInstance map[string]int64 `json:"requests_per_instance"`
}

// Event is one thing the timeline did.
type Event struct {
	AtS    float64 `json:"at_s"`
	Phase  string  `json:"phase"`
	Action string  `json:"action"`
	Detail string  `json:"detail,omitempty"`
}

// Series are figures over time.
type Series struct {
	// BucketS is the width of the load buckets in seconds.
	BucketS float64 `json:"bucket_s"`
	// Instances names the columns of Load.
	Instances []string `json:"instances"`
	// Load[i][j] is requests answered by instance j in bucket i.
	Load [][]int64 `json:"load"`
	// Latency is per second: p50 and p99 of requests scheduled then.
	LatencyP50ms []float64 `json:"latency_p50_ms"`
	LatencyP99ms []float64 `json:"latency_p99_ms"`
	// ErrorsPerS is errors per second.
	ErrorsPerS []int64 `json:"errors_per_s"`
}

// Load reads a results.json.
func Load(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}
