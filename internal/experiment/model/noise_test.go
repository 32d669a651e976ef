package model

import (
	"math"
	"testing"
)

// The floor must match what is known of the maximum of k exchangeable
// counts: for many requests per instance, E[max/mean] = 1 + E[max of k
// standard normals] / sqrt(mean), and the exact draw (few requests) and
// the approximation (many) agree with it on both sides of the switch.
func TestImbalanceNoiseMatchesTheory(t *testing.T) {
	// E[max of k standard normals].
	emax := map[int]float64{2: 0.5642, 3: 0.8463, 4: 1.0294}
	for _, k := range []int{2, 3, 4} {
		for _, total := range []float64{1500, 2400, 30_000, 3e6} {
			m := total / float64(k)
			want := 1 + emax[k]/math.Sqrt(m)
			got := ImbalanceNoise(total, k)
			if d := math.Abs(got.Mean-want) / (want - 1); d > 0.08 {
				t.Errorf("k=%d total=%g: mean %.5f, theory %.5f (off by %.0f%% of the excess)", k, total, got.Mean, want, 100*d)
			}
			if !(got.P95 > got.Mean) {
				t.Errorf("k=%d total=%g: p95 %.5f not above mean %.5f", k, total, got.P95, got.Mean)
			}
		}
	}
}

// With ten requests over three instances, chance alone makes the busiest
// carry far more than the mean: a difference of 0.2 between two
// architectures there is noise, which is what the verdict must say.
func TestImbalanceNoiseFewRequests(t *testing.T) {
	n := ImbalanceNoise(30, 3)
	if n.Mean < 1.2 || n.P95 < 1.4 {
		t.Fatalf("30 requests over 3: floor %+v, want mean >= 1.2 and p95 >= 1.4", n)
	}
	if a, b := ImbalanceNoise(30, 3), ImbalanceNoise(30, 3); a != b {
		t.Fatalf("not deterministic: %+v then %+v", a, b)
	}
	for _, c := range []struct {
		total float64
		k     int
	}{{0, 3}, {100, 1}, {math.NaN(), 3}} {
		if n := ImbalanceNoise(c.total, c.k); n != (Noise{1, 1}) {
			t.Errorf("ImbalanceNoise(%g, %d) = %+v, want {1 1}", c.total, c.k, n)
		}
	}
}
