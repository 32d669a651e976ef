package chart

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// BarSeries is one colour of a grouped bar chart: a value per group.
type BarSeries struct {
	Name   string
	Values []float64 // NaN or infinite: no bar, a dash instead
	Color  string    // overrides the palette
}

// Bars is a grouped bar chart: Groups along x, one bar per series in each.
// The zero value of every field but Groups and Series is useful.
type Bars struct {
	Title         string
	Desc          string
	Width, Height int
	// Y is the value axis; a linear one starts at zero.
	Y      Axis
	Groups []string
	Series []BarSeries
	// Refs are horizontal reference lines.
	Refs []Ref
}

// SVG draws the chart.
func (c *Bars) SVG() template.HTML {
	w, h := c.Width, c.Height
	if w <= 0 {
		w = 720
	}
	if h <= 0 {
		h = 320
	}
	var seed strings.Builder
	var vals []float64
	items := make([]legendItem, 0, len(c.Series))
	for i, se := range c.Series {
		vals = append(vals, se.Values...)
		fmt.Fprintf(&seed, "%s:%v;", se.Name, firstLast(se.Values))
		items = append(items, legendItem{name: se.Name, color: barColor(se, i), bar: true})
	}
	for _, r := range c.Refs {
		vals = append(vals, r.Y)
	}
	if !c.Y.Log && c.Y.From == 0 && c.Y.To == 0 {
		vals = append(vals, 0) // bars grow from zero
	}
	s := newSVG(w, h, c.Title, c.Desc, seed.String()+strings.Join(c.Groups, "|"))

	f, ysc := s.head(c.Title, items, &c.Y, vals)
	s.yAxis(ysc, &c.Y, f)
	s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888"/>`, f.left, f.bottom, f.right, f.bottom)

	ng, ns := len(c.Groups), max(1, len(c.Series))
	gw := (f.right - f.left) / float64(max(1, ng))
	bw := gw * 0.8 / float64(ns)
	base := f.bottom
	if y, ok := ysc.pos(valueOrLow(ysc)); ok {
		base = math.Min(f.bottom, math.Max(f.top, y))
	}
	for g, name := range c.Groups {
		gx := f.left + float64(g)*gw
		s.text(gx+gw/2, f.bottom+17, "middle", ` fill="#333"`, fit(name, gw-4, fontSize))
		for i, se := range c.Series {
			x := gx + gw*0.1 + float64(i)*bw
			v := math.NaN()
			if g < len(se.Values) {
				v = se.Values[g]
			}
			y, ok := ysc.pos(v)
			if !ok {
				s.text(x+bw/2, base-4, "middle", ` font-size="10" fill="#888"`, "–")
				continue
			}
			y = math.Min(f.bottom, math.Max(f.top, y))
			y0, y1 := math.Min(y, base), math.Max(y, base)
			label := c.Y.format(v)
			s.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %s</title></rect>`,
				x+1, y0, math.Max(0.5, bw-2), math.Max(0.5, y1-y0), barColor(se, i), Esc(name), Esc(se.Name), Esc(label))
			if bw >= textWidth(label, 10)*0.9 || bw >= 22 {
				s.text(x+bw/2, y0-3, "middle", ` font-size="10" fill="#333"`, fit(label, bw+8, 10))
			}
		}
	}
	for _, r := range c.Refs {
		if y, ok := ysc.pos(r.Y); ok && y >= f.top && y <= f.bottom {
			s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#555" stroke-width="1.2" stroke-dasharray="6 4"/>`, f.left, y, f.right, y)
			s.text(f.right-4, y-4, "end", ` font-size="11" fill="#333"`, r.Label)
		}
	}
	return s.done()
}

// valueOrLow is where bars start: zero on a linear axis, the bottom of a
// log axis.
func valueOrLow(sc *scale) float64 {
	if sc.log {
		return math.Pow(10, sc.lo)
	}
	return 0
}

func barColor(se BarSeries, i int) string {
	if se.Color != "" {
		return se.Color
	}
	return Color(i)
}
