package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// Live is what the calibration reads of a live run's results.json (issue
// 12's schema): per architecture the loss and balance figures, overall and
// per phase, and the run's parameters when present.
type Live struct {
	// Path is where it was read from ("" when decoded from a reader).
	Path string
	// Users, Instances, Seed and Duration are the run's parameters; zero
	// when results.json did not state them (the simulation's own are used).
	Users, Instances int
	Seed             uint64
	Duration         time.Duration
	// Quick: the live run used model.Quick(), so the calibration must too.
	Quick bool
	// Archs holds the known architectures found, by name.
	Archs map[string]LiveArch
}

// LiveArch is one architecture's live figures; nil: not reported.
type LiveArch struct {
	SessionsLost  *float64
	CartItemsLost *float64
	// UpdatesLost are cart items lost to a user's concurrent requests;
	// the model counts them as cart items lost (its cookie two-tab loss).
	UpdatesLost                *float64
	Errors                     *float64
	ImbalanceMaxOverMean       *float64
	ScaleOutSecondsToFairShare *float64
	P50Ms                      *float64
	Phases                     map[string]LivePhase
}

// LivePhase is one phase's live figures.
type LivePhase struct {
	SessionsLost         *float64
	CartItemsLost        *float64
	ImbalanceMaxOverMean *float64
}

// MaxLiveSize bounds the results.json LoadLive reads.
const MaxLiveSize = 64 << 20

// LoadLive reads a live run's results.json for calibration.
func LoadLive(path string) (*Live, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("live results: %w", err)
	}
	defer f.Close()
	l, err := DecodeLive(f)
	if err != nil {
		return nil, fmt.Errorf("live results %s: %w", path, err)
	}
	l.Path = path
	return l, nil
}

// The JSON shapes DecodeLive accepts; unknown fields are ignored, so the
// live run may add figures freely.
type (
	liveFile struct {
		Architectures map[string]liveArchJSON `json:"architectures"`
		Parameters    json.RawMessage         `json:"parameters"`
		Params        json.RawMessage         `json:"params"`
	}
	liveArchJSON struct {
		SessionsLost               *float64                 `json:"sessions_lost"`
		CartItemsLost              *float64                 `json:"cart_items_lost"`
		UpdatesLost                *float64                 `json:"updates_lost"`
		Errors                     *float64                 `json:"errors"`
		ImbalanceMaxOverMean       *float64                 `json:"imbalance_max_over_mean"`
		ScaleOutSecondsToFairShare *float64                 `json:"scale_out_seconds_to_fair_share"`
		P50Ms                      *float64                 `json:"p50_ms"`
		Phases                     map[string]livePhaseJSON `json:"phases"`
	}
	livePhaseJSON struct {
		SessionsLost         *float64 `json:"sessions_lost"`
		CartItemsLost        *float64 `json:"cart_items_lost"`
		ImbalanceMaxOverMean *float64 `json:"imbalance_max_over_mean"`
	}
	liveParams struct {
		Users     json.Number     `json:"users"`
		Instances json.Number     `json:"instances"`
		Seed      json.Number     `json:"seed"`
		Duration  json.RawMessage `json:"duration"`
		DurationS json.Number     `json:"duration_s"`
		Quick     bool            `json:"quick"`
	}
)

// liveCheck is a figure's range check.
type liveCheck struct {
	v     *float64
	field string
	min   float64
}

// DecodeLive decodes results.json from r (at most MaxLiveSize bytes).
// Errors say which field is wrong; it never panics on any input.
func DecodeLive(r io.Reader) (*Live, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxLiveSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxLiveSize {
		return nil, fmt.Errorf("larger than %d MiB", MaxLiveSize>>20)
	}
	var f liveFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not results.json: %w", err)
	}
	if len(f.Architectures) == 0 {
		return nil, errors.New(`no "architectures" object`)
	}
	l := &Live{Archs: map[string]LiveArch{}}
	for name, a := range f.Architectures {
		if _, err := model.ArchNamed(name); err != nil {
			continue // a design this simulation does not model
		}
		la := LiveArch{SessionsLost: a.SessionsLost, CartItemsLost: a.CartItemsLost, UpdatesLost: a.UpdatesLost, Errors: a.Errors,
			ImbalanceMaxOverMean: a.ImbalanceMaxOverMean, ScaleOutSecondsToFairShare: a.ScaleOutSecondsToFairShare,
			P50Ms: a.P50Ms, Phases: map[string]LivePhase{}}
		checks := []liveCheck{
			{la.SessionsLost, "sessions_lost", 0}, {la.CartItemsLost, "cart_items_lost", 0}, {la.UpdatesLost, "updates_lost", 0},
			{la.Errors, "errors", 0}, {la.ImbalanceMaxOverMean, "imbalance_max_over_mean", 1},
			{la.ScaleOutSecondsToFairShare, "scale_out_seconds_to_fair_share", 0}, {la.P50Ms, "p50_ms", 0},
		}
		for ph, p := range a.Phases {
			la.Phases[ph] = LivePhase(p)
			checks = append(checks,
				liveCheck{p.SessionsLost, "phases." + ph + ".sessions_lost", 0},
				liveCheck{p.CartItemsLost, "phases." + ph + ".cart_items_lost", 0},
				liveCheck{p.ImbalanceMaxOverMean, "phases." + ph + ".imbalance_max_over_mean", 1})
		}
		for _, c := range checks {
			// The JSON decoder already refuses NaN and Inf; ranges are ours.
			if c.v != nil && (*c.v < c.min || *c.v > 1e12) {
				return nil, fmt.Errorf("architectures.%s.%s = %g is out of range", name, c.field, *c.v)
			}
		}
		l.Archs[name] = la
	}
	if len(l.Archs) == 0 {
		return nil, errors.New("no known architecture (sticky, store, affinity, cookie) in \"architectures\"")
	}
	raw := f.Parameters
	if len(raw) == 0 {
		raw = f.Params
	}
	if len(raw) > 0 && string(raw) != "null" {
		if err := l.params(raw); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Live) params(raw json.RawMessage) error {
	var p liveParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	whole := func(n json.Number, field string, lim Range) (int, error) {
		if n == "" {
			return 0, nil
		}
		v, err := strconv.ParseFloat(string(n), 64)
		if err != nil || v != math.Trunc(v) || v < float64(lim.Min) || v > float64(lim.Max) {
			return 0, fmt.Errorf("parameters.%s = %s: want a whole number in %v", field, n, lim)
		}
		return int(v), nil
	}
	l.Quick = p.Quick
	var err error
	if l.Users, err = whole(p.Users, "users", UsersLimit); err != nil {
		return err
	}
	if l.Instances, err = whole(p.Instances, "instances", InstancesLimit); err != nil {
		return err
	}
	if p.Seed != "" {
		if l.Seed, err = strconv.ParseUint(string(p.Seed), 10, 64); err != nil {
			return fmt.Errorf("parameters.seed = %s: want a whole number", p.Seed)
		}
	}
	switch {
	case p.DurationS != "":
		s, err := strconv.ParseFloat(string(p.DurationS), 64)
		if err != nil || !(s > 0) || s > 86400 {
			return fmt.Errorf("parameters.duration_s = %s: want seconds in (0, 86400]", p.DurationS)
		}
		l.Duration = time.Duration(s * float64(time.Second))
	case len(p.Duration) > 0:
		var s string
		if json.Unmarshal(p.Duration, &s) == nil {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 || d > 24*time.Hour {
				return fmt.Errorf("parameters.duration = %q: want a duration like 60s, up to 24h", s)
			}
			l.Duration = d
		} else {
			var secs float64
			if err := json.Unmarshal(p.Duration, &secs); err != nil || !(secs > 0) || secs > 86400 {
				return fmt.Errorf("parameters.duration: want \"60s\" or seconds")
			}
			l.Duration = time.Duration(secs * float64(time.Second))
		}
	}
	return nil
}
