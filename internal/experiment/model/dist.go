package model

import (
	"math"
)

// BoundedPareto is a heavy-tailed length: density proportional to
// x^-(Alpha+1) on [Min, Max]. The few very long sessions it produces are
// what keeps users pinned to an instance long after it stopped being a good
// choice. Construct it with NewBoundedPareto, which derives Min from a
// stated mean.
type BoundedPareto struct {
	Alpha, Min, Max float64
}

// NewBoundedPareto returns the bounded Pareto with the given shape and cap
// whose mean is mean (Min solved for). It needs 0 < mean < max, alpha > 0.
func NewBoundedPareto(alpha, mean, max float64) BoundedPareto {
	lo, hi := 0.0, mean
	for range 200 { // mean grows with Min: bisect
		mid := (lo + hi) / 2
		if (BoundedPareto{alpha, mid, max}).Mean() < mean {
			lo = mid
		} else {
			hi = mid
		}
	}
	return BoundedPareto{Alpha: alpha, Min: (lo + hi) / 2, Max: max}
}

// Mean is the exact mean.
func (d BoundedPareto) Mean() float64 {
	l, h, a := d.Min, d.Max, d.Alpha
	if l <= 0 {
		return 0
	}
	norm := 1 - math.Pow(l/h, a)
	if math.Abs(a-1) < 1e-12 {
		return l / norm * math.Log(h/l)
	}
	return a * math.Pow(l, a) / norm * (math.Pow(h, 1-a) - math.Pow(l, 1-a)) / (1 - a)
}

// Sample draws one value by inversion (one uniform per draw).
func (d BoundedPareto) Sample(r *Rand) float64 {
	return invPowerLaw(d.Alpha, d.Min, d.Max, r.Float64())
}

// SampleResidual draws what is left of a length found in progress at a
// random instant of a stationary process: the equilibrium (forward
// recurrence) distribution, density P(X > x)/E[X]. It is how long a user
// already active when a run starts stays. It uses the length-biased law
// (density x f(x), a power law one shape lower) times a uniform.
func (d BoundedPareto) SampleResidual(r *Rand) float64 {
	biased := invPowerLaw(d.Alpha-1, d.Min, d.Max, r.Float64())
	return biased * r.Float64()
}

// invPowerLaw inverts the CDF of density proportional to x^-(beta+1) on
// [lo, hi] at u in [0, 1); beta may be zero (log-uniform) or negative.
func invPowerLaw(beta, lo, hi, u float64) float64 {
	if math.Abs(beta) < 1e-12 {
		return lo * math.Pow(hi/lo, u)
	}
	a, b := math.Pow(lo, -beta), math.Pow(hi, -beta)
	return math.Pow(a-u*(a-b), -1/beta)
}

// TruncLogNormal is a log-normal conditioned on being at most Max: the
// per-user request rate, so that a few users are much more active than
// the rest. Mu is solved for by NewTruncLogNormal from a stated mean.
type TruncLogNormal struct {
	Mu, Sigma, Max float64
	top            float64 // Phi at the cap; computed by NewTruncLogNormal
}

// NewTruncLogNormal returns the log-normal with shape sigma truncated at
// max whose mean (after truncation) is mean. It needs 0 < mean < max.
func NewTruncLogNormal(mean, sigma, max float64) TruncLogNormal {
	lo, hi := math.Log(mean)-10*sigma-10, math.Log(max)
	for range 200 {
		mid := (lo + hi) / 2
		if (TruncLogNormal{Mu: mid, Sigma: sigma, Max: max}).Mean() < mean {
			lo = mid
		} else {
			hi = mid
		}
	}
	d := TruncLogNormal{Mu: (lo + hi) / 2, Sigma: sigma, Max: max}
	d.top = d.cdfTop()
	return d
}

func (d TruncLogNormal) cdfTop() float64 { return phi((math.Log(d.Max) - d.Mu) / d.Sigma) }

// Mean is the exact mean after truncation.
func (d TruncLogNormal) Mean() float64 {
	h := math.Log(d.Max)
	s := d.Sigma
	return math.Exp(d.Mu+s*s/2) * phi((h-d.Mu-s*s)/s) / phi((h-d.Mu)/s)
}

// Sample draws one value by inversion (one uniform per draw, no
// rejection, so a user's later draws never shift).
func (d TruncLogNormal) Sample(r *Rand) float64 {
	top := d.top
	if top == 0 {
		top = d.cdfTop()
	}
	u := r.open01() * top
	return math.Min(d.Max, math.Exp(d.Mu+d.Sigma*phiInv(u)))
}

// phi is the standard normal CDF.
func phi(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

// phiInv is its inverse on (0, 1).
func phiInv(p float64) float64 { return -math.Sqrt2 * math.Erfcinv(2*p) }
