// Package chart draws the experiment's charts as inline SVG for
// self-contained HTML reports: no JavaScript, no CDN, no dependency. Line
// charts (time series with shaded phase bands, growth curves on log axes,
// shaded ranges, reference lines) and grouped bar charts, with readable
// ticks, legends and a colour-blind-safe palette; tooltips are native SVG
// <title>s. Every text is escaped and no NaN or Inf ever reaches the SVG:
// such points are left out (a line breaks there).
package chart

import (
	"fmt"
	"hash/fnv"
	"html"
	"html/template"
	"math"
	"strings"
)

// Palette is the Okabe-Ito palette, safe for the common colour-vision
// deficiencies; series take its colours in order unless they name one.
var Palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C6D31"}

// Color is the palette's colour for series i (cycling).
func Color(i int) string { return Palette[((i%len(Palette))+len(Palette))%len(Palette)] }

// Esc escapes s for HTML text and attribute values (and SVG inside HTML).
func Esc(s string) string { return html.EscapeString(s) }

const (
	fontSize  = 12.0
	charWidth = 0.6 * fontSize // average glyph width, for layout estimates
)

func textWidth(s string, size float64) float64 {
	return float64(len([]rune(s))) * 0.6 * size
}

// fit shortens s with an ellipsis to fit width pixels, or returns "" when
// not even three characters fit.
func fit(s string, width, size float64) string {
	if textWidth(s, size) <= width {
		return s
	}
	n := int(width/(0.6*size)) - 1
	r := []rune(s)
	if n < 3 {
		return ""
	}
	return string(r[:n]) + "…"
}

// svg accumulates one chart's markup.
type svg struct {
	b    strings.Builder
	w, h float64
	id   string
}

func newSVG(w, h int, title, desc string, seed string) *svg {
	s := &svg{w: float64(w), h: float64(h)}
	f := fnv.New64a()
	fmt.Fprintf(f, "%s|%s|%d|%d|%s", title, desc, w, h, seed)
	s.id = fmt.Sprintf("c%x", f.Sum64()&0xffffffffff)
	fmt.Fprintf(&s.b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="%s-t %s-d" style="max-width:100%%;height:auto" font-family="system-ui,-apple-system,'Segoe UI',Roboto,sans-serif" font-size="%g">`,
		w, h, w, h, s.id, s.id, fontSize)
	fmt.Fprintf(&s.b, `<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, s.id, Esc(title), s.id, Esc(desc))
	return s
}

func (s *svg) printf(format string, args ...any) { fmt.Fprintf(&s.b, format, args...) }

// text writes an escaped text element; anchor is start, middle or end.
func (s *svg) text(x, y float64, anchor, extra, txt string) {
	if txt == "" {
		return
	}
	s.printf(`<text x="%.1f" y="%.1f" text-anchor="%s"%s>%s</text>`, x, y, anchor, extra, Esc(txt))
}

func (s *svg) done() template.HTML {
	s.b.WriteString("</svg>")
	return template.HTML(s.b.String()) // every text inside went through Esc
}

// frame is the plot area inside the margins.
type frame struct{ left, top, right, bottom float64 }

// legendItem is one entry of a legend: a swatch and a name.
type legendItem struct {
	name, color, dash string
	bar               bool
}

// legendRows lays the items out left to right from x0, wrapping at width;
// it returns each item's position and the rows used.
func legendRows(items []legendItem, x0, width float64) (pos [][2]float64, rows int) {
	x, row := x0, 0
	for _, it := range items {
		w := 22 + textWidth(it.name, fontSize) + 14
		if x > x0 && x+w > x0+width {
			x, row = x0, row+1
		}
		pos = append(pos, [2]float64{x, float64(row)})
		x += w
	}
	if len(items) > 0 {
		rows = row + 1
	}
	return pos, rows
}

func (s *svg) legend(items []legendItem, pos [][2]float64, y0 float64) {
	for i, it := range items {
		x, y := pos[i][0], y0+pos[i][1]*18
		if it.bar {
			s.printf(`<rect x="%.1f" y="%.1f" width="14" height="10" fill="%s"/>`, x+2, y-9, it.color)
		} else {
			s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2.5"%s/>`, x, y-4, x+18, y-4, it.color, dashAttr(it.dash))
		}
		s.text(x+22, y, "start", ` fill="#222"`, it.name)
	}
}

func dashAttr(d string) string {
	if d == "" {
		return ""
	}
	return fmt.Sprintf(` stroke-dasharray="%s"`, d)
}

// head draws the title and legend and returns the plot frame below them
// (its left edge still to be set from the y labels) and the y scale fitted
// to ys.
func (s *svg) head(title string, items []legendItem, y *Axis, ys []float64) (frame, *scale) {
	top := 10.0
	if title != "" {
		s.text(8, 20, "start", ` font-size="15" font-weight="600" fill="#111"`, title)
		top = 32
	}
	pos, rows := legendRows(items, 56, s.w-72)
	s.legend(items, pos, top+12)
	top += float64(rows)*18 + 8
	f := frame{top: top, right: s.w - 18, bottom: s.h - 44}
	ysc := newScale(y, ys, f.bottom, f.top)
	f.left = math.Max(48, yLabelWidth(ysc, y)+30)
	return f, ysc
}

// yAxis draws horizontal grid lines, tick labels and the rotated title.
func (s *svg) yAxis(sc *scale, a *Axis, f frame) {
	for _, v := range sc.minorTicks {
		if y, ok := sc.pos(v); ok && y >= f.top-0.5 && y <= f.bottom+0.5 {
			s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#f0f0f0"/>`, f.left, y, f.right, y)
		}
	}
	for _, v := range sc.ticks {
		y, ok := sc.pos(v)
		if !ok || y < f.top-0.5 || y > f.bottom+0.5 {
			continue
		}
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e3e3e3"/>`, f.left, y, f.right, y)
		s.text(f.left-6, y+4, "end", ` fill="#444"`, a.format(v))
	}
	s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888"/>`, f.left, f.top, f.left, f.bottom)
	if a.Label != "" {
		cy := (f.top + f.bottom) / 2
		s.printf(`<text x="14" y="%.1f" text-anchor="middle" fill="#222" transform="rotate(-90 14 %.1f)">%s</text>`, cy, cy, Esc(a.Label))
	}
}

// xAxis draws vertical tick marks, labels and the title under the plot.
func (s *svg) xAxis(sc *scale, a *Axis, f frame) {
	lastEnd := math.Inf(-1)
	for _, v := range sc.ticks {
		x, ok := sc.pos(v)
		if !ok || x < f.left-0.5 || x > f.right+0.5 {
			continue
		}
		label := a.format(v)
		w := textWidth(label, fontSize)
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888"/>`, x, f.bottom, x, f.bottom+4)
		if x-w/2 > lastEnd+4 { // skip labels that would overlap
			s.text(x, f.bottom+17, "middle", ` fill="#444"`, label)
			lastEnd = x + w/2
		}
	}
	s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888"/>`, f.left, f.bottom, f.right, f.bottom)
	if a.Label != "" {
		s.text((f.left+f.right)/2, f.bottom+36, "middle", ` fill="#222"`, a.Label)
	}
}

// yLabelWidth is the room the widest y tick label needs.
func yLabelWidth(sc *scale, a *Axis) float64 {
	w := 0.0
	for _, v := range sc.ticks {
		w = math.Max(w, textWidth(a.format(v), fontSize))
	}
	return w
}
