package model

import (
	"math"
	"time"
)

// The measures both runs compute the same way.
//
// Imbalance of a phase: ImbalanceOf(the requests each instance served
// during the phase), over the instances that served for the whole phase
// (a joining or leaving instance is judged by its ramp, not counted here).
// An architecture's headline imbalance is its steady phase's.
//
// Seconds to fair share: after an instance joins, time is cut into
// LoadWindow-long windows starting at the join; the answer is the end of
// the first window in which ReachedFairShare holds for the new instance.
const (
	LoadWindow = time.Second
	FairShare  = 0.8
)

// Imbalance is how unevenly load is spread over instances.
type Imbalance struct {
	// MaxOverMean is the busiest instance's load over the mean load:
	// 1 is perfect.
	MaxOverMean float64
	// CV is the coefficient of variation: standard deviation over mean
	// (population form, over the instances).
	CV float64
}

// ImbalanceOf measures loads, one per instance. No loads, or no load at
// all, is perfectly balanced ({1, 0}).
func ImbalanceOf(loads []float64) Imbalance {
	if len(loads) == 0 {
		return Imbalance{1, 0}
	}
	sum, mx := 0.0, math.Inf(-1)
	for _, l := range loads {
		sum += l
		mx = math.Max(mx, l)
	}
	mean := sum / float64(len(loads))
	if !(mean > 0) {
		return Imbalance{1, 0}
	}
	ss := 0.0
	for _, l := range loads {
		ss += (l - mean) * (l - mean)
	}
	return Imbalance{MaxOverMean: mx / mean, CV: math.Sqrt(ss/float64(len(loads))) / mean}
}

// ReachedFairShare reports whether an instance that served newLoad
// requests in a window, out of total served by serving instances (itself
// included), carries FairShare of an equal share.
func ReachedFairShare(newLoad, total float64, serving int) bool {
	return serving > 0 && total > 0 && newLoad >= FairShare*total/float64(serving)
}
