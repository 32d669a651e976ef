package sim

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// Calibration compares the simulation with a live run at the live run's
// own parameters (3 instances by default), metric by metric.
type Calibration struct {
	// Available is false when no live results were given; Reason says why.
	Available bool    `json:"available"`
	Reason    string  `json:"reason,omitempty"`
	Source    string  `json:"source,omitempty"`
	Instances int     `json:"instances"`
	Users     int     `json:"users"`
	Seed      uint64  `json:"seed"`
	DurationS float64 `json:"duration_s"`
	// Replications is how many seeds the simulation ran at these
	// parameters; the tolerance is their spread.
	Replications int                `json:"replications"`
	Tolerance    string             `json:"tolerance"`
	Checks       []CalibrationCheck `json:"checks"`
	Agree        int                `json:"agree"`
	Total        int                `json:"total"`
}

// CalibrationCheck is one metric of one architecture, live against
// simulated.
type CalibrationCheck struct {
	Architecture string  `json:"architecture"`
	Metric       string  `json:"metric"`
	Live         float64 `json:"live"`
	// SimSameSeed is the simulation with the live run's seed: the same
	// users, logins, rates and session lengths as the live run.
	SimSameSeed float64 `json:"sim_same_seed"`
	// SimMean, SimLow and SimHigh are the mean and the central 95% of the
	// replications (2.5th and 97.5th percentiles).
	SimMean float64 `json:"sim_mean"`
	SimLow  float64 `json:"sim_low"`
	SimHigh float64 `json:"sim_high"`
	// Slack widens the interval for measurement granularity (Tolerance).
	Slack         float64 `json:"slack"`
	Within        bool    `json:"within"`
	ServiceTimeMs float64 `json:"service_time_ms"`
}

// calibrationTolerance explains how a check passes; the report quotes it.
const calibrationTolerance = "a live figure agrees when it lies inside the central 95% of the simulated " +
	"replications (2.5th to 97.5th percentile over seeds) at the live run's parameters, widened by the " +
	"measurement's own granularity: 1 s for the time to fair share (both runs count in 1 s windows whose " +
	"alignment to the join differs by up to one window) and 1 for counts. The live run is one draw of the " +
	"same random process, so even a perfect model puts about 1 in 20 figures outside; several misses in " +
	"one architecture point at the model"

// calibrate simulates the live run's parameters cfg.Replications times
// per architecture and compares.
func calibrate(ctx context.Context, cfg *Config, rep *Report) (Calibration, error) {
	if cfg.Live == nil {
		return Calibration{Reason: "no live results.json given (run `unstuck experiment` first, then --simulate with its results)",
			Tolerance: calibrationTolerance}, nil
	}
	l := cfg.Live
	p := cfg.Model
	if l.Quick { // the live run's model, not this run's
		p = model.Quick()
		p.Seed = cfg.Model.Seed
	}
	p.Instances = 3
	if l.Instances > 0 {
		p.Instances = l.Instances
	}
	if l.Users > 0 {
		p.Users = l.Users
	}
	if l.Seed != 0 {
		p.Seed = l.Seed
	}
	if l.Duration > 0 {
		p.Duration = l.Duration
	}
	if err := p.Validate(); err != nil {
		return Calibration{}, fmt.Errorf("calibration at the live run's parameters: %w", err)
	}
	c := Calibration{Available: true, Source: l.Path, Instances: p.Instances, Users: p.Users, Seed: p.Seed,
		DurationS: p.Duration.Seconds(), Replications: cfg.Replications, Tolerance: calibrationTolerance}
	for _, name := range cfg.Archs {
		la, ok := l.Archs[name]
		if !ok {
			continue
		}
		a, _ := model.ArchNamed(name)
		ap := p
		if la.P50Ms != nil && *la.P50Ms > 0 {
			// In-flight counts are rate x latency (Little): take the live
			// run's own latency as the service time.
			ap.ServiceTime = time.Duration(*la.P50Ms * float64(time.Millisecond))
		}
		samples := map[string][]float64{}
		var same map[string]float64
		for k := range cfg.Replications {
			rp := ap
			rp.Seed = p.Seed + uint64(k)
			res, err := simulate(ctx, &rp, a, math.Inf(1), nil)
			if err != nil {
				return c, err
			}
			m := calibrationMetrics(rowFrom(res, a), rp.Duration.Seconds())
			for key, v := range m {
				samples[key] = append(samples[key], v)
			}
			if k == 0 {
				same = m
				rep.series["calibration/"+name] = runSeries{instances: res.instances, users: res.users,
					points: res.series, spans: rp.Spans(), joiner: res.instances}
			}
		}
		// The model's cart items lost include those lost to a user's
		// concurrent requests (cookie's two tabs), which the live ledger
		// counts apart as updates lost: compare the sum.
		cart := la.CartItemsLost
		if cart != nil && la.UpdatesLost != nil {
			cart = new(*cart + *la.UpdatesLost)
		}
		live := map[string]*float64{
			"imbalance_max_over_mean": la.ImbalanceMaxOverMean,
			"sessions_lost":           la.SessionsLost,
			"cart_items_lost":         cart,
			"seconds_to_fair_share":   la.ScaleOutSecondsToFairShare,
		}
		if ph, ok := la.Phases[model.Crash]; ok {
			live["crash_sessions_lost"] = ph.SessionsLost
		}
		for _, key := range calibrationKeys {
			lv := live[key]
			if lv == nil {
				continue
			}
			xs := samples[key]
			slices.Sort(xs)
			slack := 1.0
			if key == "imbalance_max_over_mean" {
				slack = 0
			}
			ch := CalibrationCheck{Architecture: name, Metric: key, Live: *lv, SimSameSeed: same[key],
				SimMean: mean(xs), SimLow: quantile(xs, 0.025), SimHigh: quantile(xs, 0.975), Slack: slack,
				ServiceTimeMs: float64(ap.ServiceTime) / float64(time.Millisecond)}
			ch.Within = *lv >= ch.SimLow-slack && *lv <= ch.SimHigh+slack
			c.Checks = append(c.Checks, ch)
			c.Total++
			if ch.Within {
				c.Agree++
			}
		}
	}
	return c, nil
}

// calibrationKeys are the compared metrics, in report order.
var calibrationKeys = []string{"imbalance_max_over_mean", "sessions_lost", "crash_sessions_lost", "cart_items_lost", "seconds_to_fair_share"}

// calibrationMetrics picks the compared figures of a simulated row; a fair
// share never reached counts as the whole duration.
func calibrationMetrics(r Row, duration float64) map[string]float64 {
	fair := duration
	if r.SecondsToFairShare != nil {
		fair = *r.SecondsToFairShare
	}
	return map[string]float64{
		"imbalance_max_over_mean": r.ImbalanceMaxOverMean,
		"sessions_lost":           r.SessionsLost,
		"crash_sessions_lost":     r.Phases[model.Crash].SessionsLost,
		"cart_items_lost":         r.CartItemsLost,
		"seconds_to_fair_share":   fair,
	}
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// quantile of sorted xs by linear interpolation.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	pos := q * float64(len(xs)-1)
	i := int(pos)
	if i+1 >= len(xs) {
		return xs[len(xs)-1]
	}
	f := pos - float64(i)
	return xs[i]*(1-f) + xs[i+1]*f
}

// CalibrateLive is the calibration alone, as `unstuck experiment` runs it
// on the results it has just measured: the simulation at the live run's
// own parameters (instances, users, seed, duration, quick model),
// replications seeds per architecture the live run measured, each figure
// of that run checked against the simulated spread.
func CalibrateLive(ctx context.Context, l *Live, replications int) (Calibration, error) {
	cfg := Config{Live: l, Replications: replications}
	for _, a := range model.Archs {
		if _, ok := l.Archs[a.Name]; ok {
			cfg.Archs = append(cfg.Archs, a.Name)
		}
	}
	if len(cfg.Archs) == 0 {
		return Calibration{Reason: "the live run measured no architecture", Tolerance: calibrationTolerance}, nil
	}
	if err := cfg.defaults(); err != nil {
		return Calibration{}, err
	}
	return calibrate(ctx, &cfg, &Report{series: map[string]runSeries{}})
}
