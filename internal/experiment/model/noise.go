package model

import (
	"math"
	"slices"
)

// Noise is the imbalance that chance alone produces: what ImbalanceOf
// gives when a number of requests is spread over instances perfectly
// evenly in expectation (each request to a uniformly random instance, a
// multinomial). With few requests per instance max/mean is well above 1
// even then, so a measured imbalance means something only above this
// floor, and two architectures differ only by more than it.
type Noise struct {
	// Mean is the expected max/mean under even assignment.
	Mean float64
	// P95 is its 95th percentile: a measured max/mean at or below it is
	// within noise of perfectly even.
	P95 float64
}

// noiseTrials is how many assignments ImbalanceNoise draws up to a
// thousand instances: the P95's own sampling error is then below 0.5% of
// its excess over 1. Beyond, fewer, so that a floor at ten thousand
// instances costs four million normal draws, not forty (the maximum of
// many counts varies less from draw to draw).
const (
	noiseTrials    = 4000
	noiseMinTrials = 400
	noiseDraws     = 4e6
)

// ImbalanceNoise is the noise floor for total requests over k instances.
// It is deterministic (a fixed stream), so a report can be regenerated
// identically. Up to a few thousand requests it draws the multinomial
// itself; above, its normal approximation with the multinomial's exact
// covariance (mean m = total/k each, variance m(1-1/k), covariance -m/k),
// which is sharp there. k < 2 or no requests: {1, 1}.
func ImbalanceNoise(total float64, k int) Noise {
	if k < 2 || !(total >= 1) {
		return Noise{1, 1}
	}
	r := NewRand(0x401e, StreamSim)
	m := total / float64(k)
	counts := make([]float64, k)
	z := make([]float64, k)
	trials := max(noiseMinTrials, min(noiseTrials, int(noiseDraws)/k))
	maxes := make([]float64, trials)
	exact := total*float64(trials) <= 1e7
	n := int(math.Round(total))
	sum := 0.0
	for t := range maxes {
		if exact {
			clear(counts)
			for range n {
				counts[r.IntN(k)]++
			}
		} else {
			zbar := 0.0
			for j := range z {
				z[j] = r.Normal()
				zbar += z[j]
			}
			zbar /= float64(k)
			sd := math.Sqrt(m)
			for j := range counts {
				counts[j] = math.Max(0, m+sd*(z[j]-zbar))
			}
		}
		maxes[t] = slices.Max(counts) / m
		sum += maxes[t]
	}
	slices.Sort(maxes)
	return Noise{Mean: sum / float64(trials), P95: maxes[trials*95/100]}
}
