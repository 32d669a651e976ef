package model

import (
	"math"
	"math/bits"
	"math/rand/v2"
)

// Rand is a deterministic random source: PCG from math/rand/v2 seeded with
// (seed, stream), plus the few samplers the workload needs. A Rand is a
// value of two words, so a per-user Rand costs no allocation; it is not safe
// for concurrent use (give each goroutine its own stream).
type Rand struct {
	pcg rand.PCG
}

// Streams separate the independent random sequences of one run, so that
// drawing more from one (say, a longer run drawing more arrivals) never
// shifts another (the users' own scripts).
const (
	StreamArrivals uint64 = 1 << 62 // arrival times
	StreamSim      uint64 = 2 << 62 // the simulator's routing and noise
	StreamUsers    uint64 = 3 << 62 // ORed with a user's id: its attributes and script
)

// NewRand returns the stream'th sequence of seed.
func NewRand(seed, stream uint64) Rand {
	// Mixing both words keeps nearby seeds and streams far apart.
	return Rand{pcg: *rand.NewPCG(mix64(seed^0x9e3779b97f4a7c15), mix64(stream+0x632be59bd9b4e019))}
}

// Std wraps r as a *rand.Rand for code that wants the standard API; the two
// share state.
func (r *Rand) Std() *rand.Rand { return rand.New(&r.pcg) }

// Uint64 returns 64 random bits.
func (r *Rand) Uint64() uint64 { return r.pcg.Uint64() }

// Float64 is uniform in [0, 1).
func (r *Rand) Float64() float64 { return float64(r.pcg.Uint64()>>11) / (1 << 53) }

// open01 is uniform in (0, 1): safe under a logarithm.
func (r *Rand) open01() float64 { return (float64(r.pcg.Uint64()>>11) + 0.5) / (1 << 53) }

// IntN is uniform in [0, n); n must be positive.
func (r *Rand) IntN(n int) int {
	// Lemire's multiply-shift; the bias for n far below 2^64 is negligible
	// for a simulation (below 2^-40 for n <= 2^24).
	hi, _ := bits.Mul64(r.pcg.Uint64(), uint64(n))
	return int(hi)
}

// Bernoulli is true with probability p.
func (r *Rand) Bernoulli(p float64) bool { return r.Float64() < p }

// Exp is exponential with the given mean.
func (r *Rand) Exp(mean float64) float64 { return -mean * math.Log(r.open01()) }

// Normal is standard normal (Marsaglia's polar method).
func (r *Rand) Normal() float64 {
	for {
		u := 2*r.Float64() - 1
		v := 2*r.Float64() - 1
		s := u*u + v*v
		if s > 0 && s < 1 {
			return u * math.Sqrt(-2*math.Log(s)/s)
		}
	}
}

// Poisson is Poisson with the given mean: exact for every mean, by
// multiplication of uniforms below 10 and by Hörmann's transformed
// rejection (PTRS, 1993) above, so the cost stays O(1) for large means.
func (r *Rand) Poisson(mean float64) int64 {
	switch {
	case !(mean > 0): // also NaN
		return 0
	case mean < 10:
		limit, k, p := math.Exp(-mean), int64(0), r.Float64()
		for p > limit {
			k++
			p *= r.Float64()
		}
		return k
	}
	smu := math.Sqrt(mean)
	b := 0.931 + 2.53*smu
	a := -0.059 + 0.02483*b
	invAlpha := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	logMean := math.Log(mean)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*a/us+b)*u + mean + 0.43)
		if us >= 0.07 && v <= vr {
			return int64(k)
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v*invAlpha/(a/(us*us)+b)) <= -mean+k*logMean-lg {
			return int64(k)
		}
	}
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
