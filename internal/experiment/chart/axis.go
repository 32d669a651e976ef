package chart

import (
	"math"
	"strconv"
	"strings"
)

// Axis is one axis of a chart. The zero value is a linear axis whose range
// is taken from the data.
type Axis struct {
	// Label is the axis title, with its unit ("requests/s").
	Label string
	// Log makes the axis logarithmic (base 10); values <= 0 are not drawn.
	Log bool
	// From and To fix the range; both zero means automatic. A linear
	// automatic range starts at zero when the data do not sit far above it.
	From, To float64
	// Format writes tick labels; nil means Num.
	Format func(float64) string
}

func (a *Axis) format(v float64) string {
	if a.Format != nil {
		return a.Format(v)
	}
	return Num(v)
}

// scale maps data values to pixels along one axis.
type scale struct {
	log        bool
	lo, hi     float64 // data range (log10 of it for log axes)
	p0, p1     float64 // pixel range
	ticks      []float64
	minorTicks []float64
}

func (s *scale) pos(v float64) (float64, bool) {
	if s.log {
		if !(v > 0) {
			return 0, false
		}
		v = math.Log10(v)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	if s.hi == s.lo {
		return (s.p0 + s.p1) / 2, true
	}
	return s.p0 + (v-s.lo)/(s.hi-s.lo)*(s.p1-s.p0), true
}

// newScale fits an axis to the finite (and, for log, positive) values.
func newScale(a *Axis, values []float64, p0, p1 float64) *scale {
	s := &scale{log: a.Log, p0: p0, p1: p1}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range values {
		if !finite(v) || (a.Log && v <= 0) {
			continue
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if a.From != 0 || a.To != 0 {
		lo, hi = a.From, a.To
	}
	if a.Log {
		s.logRange(lo, hi)
		return s
	}
	if math.IsInf(lo, 1) { // no data
		lo, hi = 0, 1
	}
	if a.From == 0 && a.To == 0 && lo >= 0 && lo < 0.5*hi {
		lo = 0
	}
	if hi == lo {
		nonNegative := lo >= 0
		lo, hi = lo-1, hi+1
		if nonNegative && lo < 0 {
			lo = 0
		}
	}
	step := niceStep((hi - lo) / 6)
	if a.From == 0 && a.To == 0 {
		lo = math.Floor(lo/step+1e-9) * step
		hi = math.Ceil(hi/step-1e-9) * step
	}
	s.lo, s.hi = lo, hi
	for v := math.Ceil(lo/step-1e-9) * step; v <= hi+step*1e-9; v += step {
		s.ticks = append(s.ticks, cleanZero(v))
	}
	return s
}

func (s *scale) logRange(lo, hi float64) {
	if !(lo > 0) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		lo, hi = 1, 10
	}
	l, h := math.Floor(math.Log10(lo)+1e-9), math.Ceil(math.Log10(hi)-1e-9)
	if h <= l {
		h = l + 1
	}
	s.lo, s.hi = l, h
	decades := int(h - l)
	every := 1 + (decades-1)/9 // at most ~10 labelled powers of ten
	for e := l; e <= h; e++ {
		if int(e-l)%every == 0 {
			s.ticks = append(s.ticks, math.Pow(10, e))
		}
		if e < h {
			for _, m := range []float64{2, 5} {
				v := m * math.Pow(10, e)
				if decades <= 2 {
					s.ticks = append(s.ticks, v) // few decades: label 2 and 5 too
				} else {
					s.minorTicks = append(s.minorTicks, v)
				}
			}
		}
	}
	sortFloats(s.ticks)
}

func sortFloats(x []float64) {
	for i := 1; i < len(x); i++ {
		for j := i; j > 0 && x[j] < x[j-1]; j-- {
			x[j], x[j-1] = x[j-1], x[j]
		}
	}
}

// niceStep rounds a raw tick step to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) || !finite(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	}
	return 10 * p
}

func cleanZero(v float64) float64 {
	if math.Abs(v) < 1e-12 {
		return 0
	}
	return v
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Num writes a number compactly for an axis or a table: 3 significant
// digits, k/M/G suffixes from ten thousand, and no "NaN" or "Inf" ever
// ("–" for a value that is not a number).
func Num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.IsInf(v, 1):
		return "∞"
	case math.IsInf(v, -1):
		return "-∞"
	}
	switch a := math.Abs(v); {
	case a >= 1e9:
		return trimNum(v/1e9, 3) + "G"
	case a >= 1e6:
		return trimNum(v/1e6, 3) + "M"
	case a >= 1e4:
		return trimNum(v/1e3, 3) + "k"
	case a >= 1000 && math.Mod(a, 100) == 0:
		return trimNum(v/1e3, 3) + "k"
	case a >= 1000:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	}
	return trimNum(v, 3)
}

// trimNum formats v with about sig significant digits and no trailing
// zeros.
func trimNum(v float64, sig int) string {
	if v == 0 {
		return "0"
	}
	digits := sig - 1 - int(math.Floor(math.Log10(math.Abs(v))))
	if digits < 0 {
		digits = 0
	}
	if digits > 6 {
		return strconv.FormatFloat(v, 'g', sig, 64)
	}
	s := strconv.FormatFloat(v, 'f', digits, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// Seconds formats a time axis in seconds ("30s", "2m", "1.5h").
func Seconds(v float64) string {
	switch a := math.Abs(v); {
	case !finite(v):
		return Num(v)
	case a >= 3600 && math.Mod(a, 360) == 0:
		return trimNum(v/3600, 3) + "h"
	case a >= 120 && math.Mod(a, 6) == 0:
		return trimNum(v/60, 3) + "m"
	}
	return trimNum(v, 3) + "s"
}
