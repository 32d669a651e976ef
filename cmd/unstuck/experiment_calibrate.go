package main

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/report"
	"github.com/unstuck-dev/unstuck/internal/experiment/sim"
)

// calibrationReplications is how many seeds the simulation runs per
// architecture at the live run's parameters: enough for a stable 95%
// range, and a few seconds at the live run's scale.
const calibrationReplications = 100

// calibrateRun checks the simulation against the live run just measured:
// res is encoded as the results.json it becomes and read back the way
// `--simulate --calibrate` reads one, so the figures compared are this
// run's own, and the check is the simulation's.
func calibrateRun(ctx context.Context, res *report.Results) *report.Calibration {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	b, err := json.Marshal(res)
	if err != nil {
		return &report.Calibration{Error: err.Error()}
	}
	l, err := sim.DecodeLive(bytes.NewReader(b))
	if err != nil {
		return &report.Calibration{Error: err.Error()}
	}
	c, err := sim.CalibrateLive(ctx, l, calibrationReplications)
	out := &report.Calibration{Tolerance: c.Tolerance, Replications: c.Replications, Instances: c.Instances,
		Users: c.Users, Agree: c.Agree, Total: c.Total}
	switch {
	case err != nil:
		out.Error = err.Error()
	case !c.Available:
		out.Error = c.Reason
	}
	for _, ch := range c.Checks {
		out.Checks = append(out.Checks, report.CalibrationCheck{Architecture: ch.Architecture, Metric: ch.Metric,
			Live: ch.Live, SimMean: ch.SimMean, SimLow: ch.SimLow, SimHigh: ch.SimHigh, Slack: ch.Slack, Within: ch.Within})
	}
	return out
}
