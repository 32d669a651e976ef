package sim

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// TheoryRow is one balls-into-bins check: the simulator's own placement
// code (pickP2C, overCapacity) against what the theory says.
type TheoryRow struct {
	// Check is one_choice, two_choices or bounded_load.
	Check  string `json:"check"`
	Bins   int    `json:"bins"`
	Balls  int    `json:"balls"`
	Trials int    `json:"trials"`
	// MeanMaxLoad and WorstMaxLoad are the fullest bin's load, averaged
	// over the trials and at its worst.
	MeanMaxLoad  float64 `json:"mean_max_load"`
	WorstMaxLoad float64 `json:"worst_max_load"`
	// Predicted is the classical formula's value (Formula); Sharper, when
	// set, a more precise known form (SharperFormula).
	Predicted      float64  `json:"predicted"`
	Formula        string   `json:"formula"`
	Sharper        *float64 `json:"sharper,omitempty"`
	SharperFormula string   `json:"sharper_formula,omitempty"`
	// Within says the measurement meets Criterion.
	Within    bool   `json:"within"`
	Criterion string `json:"criterion"`
}

// theoryChecks runs the three checks for growing n up to maxBins. When ctx
// is done it returns the rows so far, the smallest size's always among
// them (they take well under a millisecond): the checks run beside the
// simulation, so a run cancelled early still reports some.
func theoryChecks(ctx context.Context, seed uint64, maxBins int) ([]TheoryRow, error) {
	var rows []TheoryRow
	r := model.NewRand(seed, model.StreamSim^0x7e0)
	for n := 10; n <= maxBins; n *= 10 {
		if err := ctx.Err(); err != nil && n > 10 {
			return rows, err
		}
		trials := max(8, min(400, 20_000_000/n))
		rows = append(rows, oneChoice(&r, n, trials), twoChoices(&r, n, trials))
	}
	for n := 10; n <= min(maxBins, 10_000); n *= 10 {
		for _, per := range []int{1, 10} {
			if n*n*per > 200_000_000 {
				continue
			}
			if err := ctx.Err(); err != nil {
				return rows, err
			}
			rows = append(rows, boundedLoad(seed, n, n*per, model.Affinity.Factor))
		}
	}
	return rows, nil
}

// maxLoads places n balls into n bins trials times with place and
// returns the mean and worst of the fullest bin's load.
func maxLoads(n, trials int, place func(bins []int64) int32) (mean, worst float64) {
	bins := make([]int64, n)
	sum := 0.0
	for range trials {
		clear(bins)
		var mx int64
		for range n {
			b := place(bins)
			bins[b]++
			mx = max(mx, bins[b])
		}
		sum += float64(mx)
		worst = math.Max(worst, float64(mx))
	}
	return sum / float64(trials), worst
}

// oneChoice: every ball into a uniformly random bin. The fullest bin
// holds (1+o(1)) ln n / ln ln n balls w.h.p.: only the leading order,
// far off at practical n. Gonnet (1981) gave the expected maximum
// precisely: Gamma^-1(n) - 3/2 + o(1).
func oneChoice(r *model.Rand, n, trials int) TheoryRow {
	mean, worst := maxLoads(n, trials, func([]int64) int32 { return int32(r.IntN(n)) })
	ln := math.Log(float64(n))
	sharp := invGamma(float64(n)) - 1.5
	return TheoryRow{
		Check: "one_choice", Bins: n, Balls: n, Trials: trials,
		MeanMaxLoad: mean, WorstMaxLoad: worst,
		Predicted: ln / math.Log(ln), Formula: "ln n / ln ln n (leading order)",
		Sharper: &sharp, SharperFormula: "Γ⁻¹(n) − 3/2 (Gonnet 1981, expected maximum, + o(1))",
		Within:    math.Abs(mean-sharp) <= 0.5,
		Criterion: "mean within ±0.5 of Γ⁻¹(n) − 3/2",
	}
}

// twoChoices: each ball to the less loaded of two distinct random bins,
// with the simulator's own p2c (ties to the first drawn, as in lb). Azar,
// Broder, Karlin and Upfal: ln ln n / ln 2 + O(1) w.h.p.; the check is
// that the O(1) stays a small constant as n grows 100,000-fold.
func twoChoices(r *model.Rand, n, trials int) TheoryRow {
	cands := make([]int32, n)
	for i := range cands {
		cands[i] = int32(i)
	}
	var bins []int64
	mean, worst := maxLoads(n, trials, func(b []int64) int32 {
		bins = b
		return pickP2C(r, cands, -1, func(i int32) int64 { return bins[i] })
	})
	pred := math.Log(math.Log(float64(n))) / math.Ln2
	return TheoryRow{
		Check: "two_choices", Bins: n, Balls: n, Trials: trials,
		MeanMaxLoad: mean, WorstMaxLoad: worst,
		Predicted: pred, Formula: "ln ln n / ln 2 (+ O(1))",
		Within:    mean-pred >= -0.5 && mean-pred <= 2,
		Criterion: "mean − ln ln n / ln 2 in [−0.5, 2]: a constant, whatever n",
	}
}

// boundedLoad places balls one by one by consistent hashing with bounded
// loads as lb's Hash policy does it (Mirrokni, Thorup, Zadimoghaddam,
// arXiv:1608.01350): rendezvous ranking of the bins by a per (key, bin)
// random score, the first bin in rank order with room under the
// simulator's overCapacity, which is lb's capacity ceil(c x (total+1) /
// n), and the least loaded bin if none has room. lb draws the score from
// hashes of the key and the backend's name (-1/ln(u), which with equal
// weights ranks bins as u does); here it comes from the model's random
// streams keyed by (key, bin): the same ranking law. The guarantee: no
// bin above ceil(c x balls / bins), ever.
func boundedLoad(seed uint64, n, m int, c float64) TheoryRow {
	loads := make([]int64, n)
	scores := make([]uint64, n)
	var total, mx int64
	violated := false
	for k := range m {
		for i := range scores {
			r := model.NewRand(seed^uint64(k)<<20, uint64(i))
			scores[i] = r.Uint64()
		}
		// Walk the ranking: the best-scored bin not yet tried, next.
		prev := uint64(math.MaxUint64)
		prevIdx := -1
		chosen := -1
		for range n {
			best := -1
			for i, s := range scores {
				if (s < prev || (s == prev && i > prevIdx)) && (best < 0 || s > scores[best]) {
					best = i
				}
			}
			if best < 0 {
				break
			}
			if !overCapacity(loads[best], total, n, c) {
				chosen = best
				break
			}
			prev, prevIdx = scores[best], best
		}
		if chosen < 0 { // cannot happen with c > 1; lb falls back to least-conn
			chosen = 0
			for i := range loads {
				if loads[i] < loads[chosen] {
					chosen = i
				}
			}
		}
		loads[chosen]++
		total++
		mx = max(mx, loads[chosen])
		if float64(loads[chosen]) > math.Ceil(c*float64(total)/float64(n)) {
			violated = true
		}
	}
	bound := math.Ceil(c * float64(m) / float64(n))
	return TheoryRow{
		Check: "bounded_load", Bins: n, Balls: m, Trials: 1,
		MeanMaxLoad: float64(mx), WorstMaxLoad: float64(mx),
		Predicted: bound, Formula: fmt.Sprintf("ceil(%g × balls / bins)", c),
		Within:    !violated && float64(mx) <= bound,
		Criterion: "no bin ever above ceil(c × placed / bins), c = " + strconv.FormatFloat(c, 'g', -1, 64),
	}
}

// invGamma solves Gamma(x) = y for x >= 2 (y >= 1) by bisection.
func invGamma(y float64) float64 {
	target := math.Log(y)
	lo, hi := 2.0, 200.0
	for range 200 {
		mid := (lo + hi) / 2
		if lg, _ := math.Lgamma(mid); lg < target {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}
