package sim

import (
	"fmt"
	"math"
	"strings"

	"github.com/unstuck-dev/unstuck/internal/experiment/chart"
	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// rowsOf returns arch's rows in sweep order.
func (r *Report) rowsOf(arch string) []Row {
	var out []Row
	for _, row := range r.Rows {
		if row.Architecture == arch {
			out = append(out, row)
		}
	}
	return out
}

// archNames lists the architectures present, in model order.
func (r *Report) archNames() []string {
	var out []string
	for _, a := range model.Archs {
		if len(r.rowsOf(a.Name)) > 0 {
			out = append(out, a.Name)
		}
	}
	return out
}

// largest returns each architecture's row at the largest scale simulated.
func (r *Report) largest() map[string]Row {
	out := map[string]Row{}
	for _, row := range r.Rows {
		if cur, ok := out[row.Architecture]; !ok || scale(row) >= scale(cur) {
			out[row.Architecture] = row
		}
	}
	return out
}

func scale(r Row) float64 { return float64(r.Instances) * float64(r.Users) }

func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%d million", n/1_000_000)
	case n >= 10_000:
		return chart.Num(float64(n))
	}
	return fmt.Sprint(n)
}

// Verdict states what the figures say, in plain words, from the figures:
// every sentence is computed, none is canned.
func (r *Report) Verdict() []string {
	var out []string
	big := r.largest()
	names := r.archNames()
	if len(names) == 0 {
		return []string{"No architecture was simulated to the end, so there is nothing to conclude yet."}
	}
	any := big[names[0]]
	at := fmt.Sprintf("At %s instances and %s users", count(any.Instances), count(any.Users))

	// Imbalance: who is worst, and how it grew; differences within the
	// noise floor name no one.
	worst, best := names[0], names[0]
	var parts, within []string
	floor := 0.0
	for _, n := range names {
		row := big[n]
		parts = append(parts, fmt.Sprintf("%s %s×", n, chart.Num(row.ImbalanceMaxOverMean)))
		if row.ImbalanceMaxOverMean > big[worst].ImbalanceMaxOverMean {
			worst = n
		}
		if row.ImbalanceMaxOverMean < big[best].ImbalanceMaxOverMean {
			best = n
		}
		floor = math.Max(floor, row.ImbalanceNoiseP95)
		if row.ImbalanceMaxOverMean <= row.ImbalanceNoiseP95 {
			within = append(within, n)
		}
	}
	s := fmt.Sprintf("%s the busiest instance carries %s the mean load in steady state (%s; chance alone gives up to %s× at the 95th percentile)",
		at, chart.Num(big[worst].ImbalanceMaxOverMean)+"×", strings.Join(parts, ", "), chart.Num(floor))
	switch {
	case len(within) == len(names):
		s += ": all within noise, no winner."
	case len(within) > 0:
		s += fmt.Sprintf(": %s balances worst, beyond noise; %s within noise of even, no winner among them.", worst, strings.Join(within, ", "))
	default:
		s += fmt.Sprintf(": %s balances worst, %s best.", worst, best)
	}
	if rows := r.rowsOf(worst); len(rows) > 1 {
		first, last := rows[0], rows[len(rows)-1]
		verb := "grows"
		if last.ImbalanceMaxOverMean < first.ImbalanceMaxOverMean {
			verb = "shrinks"
		}
		s += fmt.Sprintf(" For %s it %s from %s× at %s instances (%s users) to %s× at %s.", worst, verb,
			chart.Num(first.ImbalanceMaxOverMean), count(first.Instances), count(first.Users),
			chart.Num(last.ImbalanceMaxOverMean), count(last.Instances))
	}
	out = append(out, s)

	// Crash losses.
	var losers, safe []string
	for _, n := range names {
		row := big[n]
		if row.SessionsLostPerCrash > 0 {
			share := row.SessionsLostPerCrash / (float64(row.Users) / float64(row.Instances)) // n instances up at the crash
			losers = append(losers, fmt.Sprintf("%s loses %s sessions (%.0f%% of an instance's share of users, who must log in again)",
				n, chart.Num(row.SessionsLostPerCrash), 100*share))
		} else {
			safe = append(safe, n)
		}
	}
	if len(losers) > 0 {
		out = append(out, fmt.Sprintf("One crash: %s; %s lose none.", strings.Join(losers, "; "), strings.Join(safe, ", ")))
	} else {
		out = append(out, "One crash loses no session in any simulated architecture.")
	}

	// Time to use a new instance.
	var fast, slow []string
	for _, n := range names {
		row := big[n]
		if row.SecondsToFairShare != nil {
			fast = append(fast, fmt.Sprintf("%s in %s s", n, chart.Num(*row.SecondsToFairShare)))
		} else {
			slow = append(slow, n)
		}
	}
	s = fmt.Sprintf("A new instance reaches %.0f%% of its fair share", 100*model.FairShare)
	if len(fast) > 0 {
		s += " with " + strings.Join(fast, ", ")
	}
	if len(slow) > 0 {
		if len(fast) > 0 {
			s += "; "
		} else {
			s += ": "
		}
		s += fmt.Sprintf("never within the %s s run with %s, which only gets new users", chart.Num(any.DurationS), strings.Join(slow, ", "))
	}
	out = append(out, s+".")

	// Store load.
	if st, ok := big["store"]; ok {
		s = fmt.Sprintf("The shared store serves %s operations/s for %s requests/s (%s per request); its hottest key, %s, sees %s/s.",
			chart.Num(st.StoreOpsPerS), chart.Num(st.RequestsPerS), chart.Num(st.StoreOpsPerS/math.Max(1, st.RequestsPerS)),
			st.HotKey, chart.Num(st.HotKeyOpsPerS))
		if af, ok := big["affinity"]; ok && st.StoreOpsPerS > 0 {
			s += fmt.Sprintf(" Affinity's near cache cuts that to %s/s (%.0f%% fewer)", chart.Num(af.StoreOpsPerS), 100*(1-af.StoreOpsPerS/st.StoreOpsPerS))
			if af.NearCacheHitRatio != nil {
				s += fmt.Sprintf(", serving %.0f%% of requests without a read", 100**af.NearCacheHitRatio)
			}
			s += "."
		}
		out = append(out, s)
	}
	if af, ok := big["affinity"]; ok && af.RequestsPerS > 0 {
		// Whether the bound is crossed by chance or rarely depends on
		// what is in flight (a few short requests, or hundreds of upload
		// streams), so the sentence names the rule, not a cause.
		out = append(out, fmt.Sprintf("Affinity re-pins %s users/s, %s%% of requests: lb's bound spills a request when its instance's "+
			"in-flight count (upload streams included) would cross ceil(1.25 × mean).",
			chart.Num(af.SpillsPerS), chart.Num(100*af.SpillsPerS/af.RequestsPerS)))
	}
	if ck, ok := big["cookie"]; ok {
		out = append(out, fmt.Sprintf("Client-side state reads nothing from a store, but each logout's revocation goes to every instance: "+
			"%s revocations/s become %s deliveries/s across %s instances, and two tabs lost %s cart items in the run.",
			chart.Num(ck.StoreWritesPerS), chart.Num(ck.FeedDeliveriesPerS), count(ck.Instances), chart.Num(ck.CartItemsLost)))
	}

	// Trust: theory and calibration.
	held := 0
	var failed []string
	for _, t := range r.Theory {
		if t.Within {
			held++
		} else {
			failed = append(failed, fmt.Sprintf("%s at n = %s", t.Check, count(t.Bins)))
		}
	}
	s = fmt.Sprintf("The placement code passes %d of %d theory checks", held, len(r.Theory))
	if len(failed) > 0 {
		s += " (off: " + strings.Join(failed, ", ") + ")"
	}
	c := r.Calibration
	if c.Available {
		s += fmt.Sprintf("; against the live run, %d of %d calibration figures agree within tolerance.", c.Agree, c.Total)
	} else {
		s += "; it was not calibrated against a live run."
	}
	out = append(out, s)
	if !r.Complete {
		out = append(out, "The run was interrupted: the figures above cover only what was simulated.")
	}
	return out
}
