package chart

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// Series is one line of a line chart: points (X[i], Y[i]). A point whose
// X or Y is NaN or infinite (or not positive on a log axis) is left out
// and breaks the line.
type Series struct {
	Name string
	X, Y []float64
	// Low and High, when set (same length as X), shade the range between
	// them in the series' colour: a spread, or a tolerance band.
	Low, High []float64
	// Color overrides the palette; Dash is an SVG dash array ("6 3").
	Color, Dash string
}

// Band is a shaded interval of the x axis with a label: a phase.
type Band struct {
	From, To float64
	Label    string
}

// Ref is a labelled horizontal reference line (a bound, a target).
type Ref struct {
	Y     float64
	Label string
}

// Line is a line chart. The zero value of every field but Series is
// useful: 720x340 pixels, linear axes fitted to the data.
type Line struct {
	Title string
	// Desc is the accessible description (what the chart shows, in words).
	Desc          string
	Width, Height int
	X, Y          Axis
	Series        []Series
	Bands         []Band
	Refs          []Ref
	// Markers draws a dot at every point (with a tooltip); it is on by
	// itself for series of at most 40 points.
	Markers bool
}

func (c *Line) size() (int, int) {
	w, h := c.Width, c.Height
	if w <= 0 {
		w = 720
	}
	if h <= 0 {
		h = 340
	}
	return w, h
}

// SVG draws the chart.
func (c *Line) SVG() template.HTML {
	w, h := c.size()
	s := newSVG(w, h, c.Title, c.Desc, c.seed())

	var xs, ys []float64
	for _, se := range c.Series {
		xs = append(xs, se.X...)
		ys = append(ys, se.Y...)
		ys = append(ys, se.Low...)
		ys = append(ys, se.High...)
	}
	for _, b := range c.Bands {
		xs = append(xs, b.From, b.To)
	}
	for _, r := range c.Refs {
		ys = append(ys, r.Y)
	}

	items := make([]legendItem, 0, len(c.Series))
	for i, se := range c.Series {
		items = append(items, legendItem{name: se.Name, color: seriesColor(se, i), dash: se.Dash})
	}
	f, ysc := s.head(c.Title, items, &c.Y, ys)
	xsc := newScale(&c.X, xs, f.left, f.right)
	if !c.X.Log && len(xsc.ticks) > 0 && c.X.From == 0 && c.X.To == 0 {
		// Time runs exactly over the data, not to the next round tick.
		xsc.lo, xsc.hi = minMax(xs, xsc.lo, xsc.hi)
	}

	s.printf(`<clipPath id="%s-clip"><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"/></clipPath>`,
		s.id, f.left, f.top-1, f.right-f.left, f.bottom-f.top+2)
	c.bands(s, xsc, f)
	s.yAxis(ysc, &c.Y, f)
	s.xAxis(xsc, &c.X, f)
	c.refs(s, ysc, f)

	s.printf(`<g clip-path="url(#%s-clip)">`, s.id)
	for i, se := range c.Series {
		col := seriesColor(se, i)
		if len(se.Low) == len(se.X) && len(se.High) == len(se.X) {
			for _, poly := range rangePolys(se, xsc, ysc) {
				s.printf(`<polygon points="%s" fill="%s" fill-opacity="0.15" stroke="none"/>`, poly, col)
			}
		}
		for _, d := range linePaths(se, xsc, ysc) {
			s.printf(`<path d="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"%s/>`, d, col, dashAttr(se.Dash))
		}
	}
	s.printf(`</g>`)
	for i, se := range c.Series {
		if c.Markers || len(se.X) <= 40 {
			c.markers(s, se, seriesColor(se, i), xsc, ysc, f)
		}
	}
	return s.done()
}

func (c *Line) seed() string {
	var b strings.Builder
	for _, se := range c.Series {
		fmt.Fprintf(&b, "%s:%d:%v;", se.Name, len(se.X), firstLast(se.Y))
	}
	return b.String()
}

func firstLast(v []float64) [2]float64 {
	if len(v) == 0 {
		return [2]float64{}
	}
	return [2]float64{v[0], v[len(v)-1]}
}

func seriesColor(se Series, i int) string {
	if se.Color != "" {
		return se.Color
	}
	return Color(i)
}

func minMax(v []float64, lo, hi float64) (float64, float64) {
	l, h := math.Inf(1), math.Inf(-1)
	for _, x := range v {
		if finite(x) {
			l, h = math.Min(l, x), math.Max(h, x)
		}
	}
	if h > l {
		return l, h
	}
	return lo, hi
}

// bands shades alternate phases and labels each at the top of the plot.
func (c *Line) bands(s *svg, xsc *scale, f frame) {
	for i, b := range c.Bands {
		x0, ok0 := xsc.pos(b.From)
		x1, ok1 := xsc.pos(b.To)
		if !ok0 || !ok1 {
			continue
		}
		x0, x1 = math.Max(x0, f.left), math.Min(x1, f.right)
		if x1 <= x0 {
			continue
		}
		fill := "#f3f5f8"
		if i%2 == 1 {
			fill = "#e8ecf2"
		}
		s.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`,
			x0, f.top, x1-x0, f.bottom-f.top, fill, Esc(b.Label))
		if i > 0 {
			s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#b8c0cc" stroke-dasharray="3 3"/>`, x0, f.top, x0, f.bottom)
		}
		s.text((x0+x1)/2, f.top+12, "middle", ` font-size="10" fill="#556"`, fit(b.Label, x1-x0-4, 10))
	}
}

func (c *Line) refs(s *svg, ysc *scale, f frame) {
	for _, r := range c.Refs {
		y, ok := ysc.pos(r.Y)
		if !ok || y < f.top || y > f.bottom {
			continue
		}
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#555" stroke-width="1.2" stroke-dasharray="6 4"/>`, f.left, y, f.right, y)
		s.text(f.right-4, y-4, "end", ` font-size="11" fill="#333"`, r.Label)
	}
}

// linePaths turns a series into SVG path data, one path per unbroken run.
func linePaths(se Series, xsc, ysc *scale) []string {
	var out []string
	var b strings.Builder
	n := min(len(se.X), len(se.Y))
	for i := range n {
		x, okx := xsc.pos(se.X[i])
		y, oky := ysc.pos(se.Y[i])
		if !okx || !oky {
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
			continue
		}
		cmd := "L"
		if b.Len() == 0 {
			cmd = "M"
		}
		fmt.Fprintf(&b, "%s%.1f %.1f", cmd, x, y)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// rangePolys outlines the shaded Low..High range, one polygon per
// unbroken run of valid points.
func rangePolys(se Series, xsc, ysc *scale) []string {
	var out []string
	var hi, lo [][2]float64
	flush := func() {
		if len(hi) > 1 {
			var b strings.Builder
			for _, p := range hi {
				fmt.Fprintf(&b, "%.1f,%.1f ", p[0], p[1])
			}
			for i := len(lo) - 1; i >= 0; i-- {
				fmt.Fprintf(&b, "%.1f,%.1f ", lo[i][0], lo[i][1])
			}
			out = append(out, strings.TrimSpace(b.String()))
		}
		hi, lo = hi[:0], lo[:0]
	}
	for i := range se.X {
		x, okx := xsc.pos(se.X[i])
		yh, okh := ysc.pos(se.High[i])
		yl, okl := ysc.pos(se.Low[i])
		if !okx || !okh || !okl {
			flush()
			continue
		}
		hi = append(hi, [2]float64{x, yh})
		lo = append(lo, [2]float64{x, yl})
	}
	flush()
	return out
}

func (c *Line) markers(s *svg, se Series, col string, xsc, ysc *scale, f frame) {
	n := min(len(se.X), len(se.Y))
	for i := range n {
		x, okx := xsc.pos(se.X[i])
		y, oky := ysc.pos(se.Y[i])
		if !okx || !oky || x < f.left-1 || x > f.right+1 || y < f.top-1 || y > f.bottom+1 {
			continue
		}
		s.printf(`<circle cx="%.1f" cy="%.1f" r="3.2" fill="%s" stroke="#fff" stroke-width="1"><title>%s: %s, %s</title></circle>`,
			x, y, col, Esc(se.Name), Esc(c.X.format(se.X[i])), Esc(c.Y.format(se.Y[i])))
	}
}
