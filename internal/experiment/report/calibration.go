package report

import (
	"fmt"
	"html/template"
	"strings"

	"github.com/unstuck-dev/unstuck/internal/experiment/chart"
)

// calibration says whether the simulation, run at this run's own
// parameters, agrees with the figures measured, and names those that do
// not.
func (v *verdict) calibration() {
	c := v.r.Calibration
	switch {
	case c == nil:
		return
	case c.Error != "":
		v.add("The simulation could not be checked against this run: %s.", c.Error)
		return
	case c.Total == 0:
		return
	}
	var off []string
	for _, ch := range c.Checks {
		if !ch.Within {
			off = append(off, fmt.Sprintf("%s %s (measured %s, simulated %s to %s)", ch.Architecture, ch.Metric,
				chart.Num(ch.Live), chart.Num(ch.SimLow-ch.Slack), chart.Num(ch.SimHigh+ch.Slack)))
		}
	}
	s := fmt.Sprintf("The simulation at this run's own parameters (%d instances, %d users, %d seeds) agrees with %d of the %d figures it models (inside its 95%% range, widened by the measurement's granularity)",
		c.Instances, c.Users, c.Replications, c.Agree, c.Total)
	if len(off) > 0 {
		s += "; outside: " + strings.Join(off, "; ")
	}
	v.add("%s.", s)
}

// calibrationTable lists every check of the calibration.
func calibrationTable(r *Results) template.HTML {
	c := r.Calibration
	if c == nil || len(c.Checks) == 0 {
		return ""
	}
	var rows [][]string
	var classes []string
	for _, ch := range c.Checks {
		agree := "yes"
		classes = append(classes, "good")
		if !ch.Within {
			agree, classes[len(classes)-1] = "no", "bad"
		}
		rows = append(rows, []string{ch.Architecture, ch.Metric, chart.Num(ch.Live), chart.Num(ch.SimMean),
			chart.Num(ch.SimLow) + " to " + chart.Num(ch.SimHigh), chart.Num(ch.Slack), agree})
	}
	return chart.Table{Caption: fmt.Sprintf("This run against the simulation at its parameters: %d of %d agree", c.Agree, c.Total),
		Head: []string{"architecture", "figure", "measured", "simulated mean", "simulated 95% range", "slack", "agrees"},
		Rows: rows, Numeric: []bool{false, false, true, true, true, true, false}, Classes: classes}.HTML()
}
