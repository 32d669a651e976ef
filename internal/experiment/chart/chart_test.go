package chart

import (
	"encoding/xml"
	"errors"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// wellFormed parses the SVG as XML and returns its elements' names and
// all numeric attribute values.
func wellFormed(t *testing.T, svg string) (elements []string, nums []string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	d.Strict = true
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			elements = append(elements, se.Name.Local)
			for _, a := range se.Attr {
				nums = append(nums, a.Value)
			}
		}
	}
	return elements, nums
}

func count(elems []string, name string) int {
	n := 0
	for _, e := range elems {
		if e == name {
			n++
		}
	}
	return n
}

func noBadNumbers(t *testing.T, svg string) {
	t.Helper()
	for _, bad := range []string{"NaN", "Inf", "inf"} {
		if strings.Contains(svg, bad) {
			t.Fatalf("SVG contains %q:\n%s", bad, svg)
		}
	}
}

func TestLineChartIsWellFormedAndSkipsBadPoints(t *testing.T) {
	c := &Line{
		Title: "Requests <per> instance & phase",
		Desc:  `load "over" time`,
		X:     Axis{Label: "time", Format: Seconds},
		Y:     Axis{Label: "requests/s"},
		Series: []Series{
			{Name: "app-1", X: []float64{0, 1, 2, 3, 4}, Y: []float64{10, math.NaN(), 12, math.Inf(1), 14}},
			{Name: "app-2 <new>", X: []float64{0, 1, 2, 3, 4}, Y: []float64{9, 9, 11, 13, 12},
				Low: []float64{8, 8, 10, 12, 11}, High: []float64{10, 10, 12, 14, 13}},
		},
		Bands: []Band{{0, 2, "steady"}, {2, 4, "scale_out"}},
		Refs:  []Ref{{11, "target"}},
	}
	svg := string(c.SVG())
	elems, _ := wellFormed(t, svg)
	noBadNumbers(t, svg)
	// app-1 breaks at NaN and at Inf: three runs (10), (12), (14); app-2 one.
	if got := count(elems, "path"); got != 4 {
		t.Errorf("%d paths, want 4 (one per unbroken run)", got)
	}
	if got := count(elems, "circle"); got != 3+5 {
		t.Errorf("%d markers, want 8 (finite points only)", got)
	}
	if count(elems, "polygon") != 1 {
		t.Error("the Low/High range is not shaded")
	}
	if count(elems, "rect") < 2 {
		t.Error("phase bands missing")
	}
	for _, want := range []string{"Requests &lt;per&gt; instance &amp; phase", "app-2 &lt;new&gt;", "load &#34;over&#34; time", ">steady<", ">scale_out<", ">target<", ">4s<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %s", want)
		}
	}
	if strings.Contains(svg, "<new>") || strings.Contains(svg, "<per>") {
		t.Error("a name reached the SVG unescaped")
	}
}

func TestLogAxesTickAtPowersOfTen(t *testing.T) {
	c := &Line{
		X: Axis{Label: "instances", Log: true},
		Y: Axis{Label: "ops/s", Log: true},
		Series: []Series{{Name: "s", X: []float64{3, 30, 300, 3000, 10000, 0, -5},
			Y: []float64{2e3, 2e4, 2e5, 2e6, 2e7, 5, 5}}},
	}
	svg := string(c.SVG())
	wellFormed(t, svg)
	noBadNumbers(t, svg)
	for _, want := range []string{">1<", ">10<", ">100<", ">1k<", ">10k<", ">100k<", ">1M<", ">10M<", ">100M<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("log axes lack tick %s", want)
		}
	}
	// Points at x <= 0 cannot sit on a log axis: 5 markers, not 7.
	if got := strings.Count(svg, "<circle"); got != 5 {
		t.Errorf("%d markers, want 5", got)
	}
	// Equal ratios are equal distances: x of 30 sits midway between 3 and 300.
	re := regexp.MustCompile(`<circle cx="([0-9.]+)"`)
	m := re.FindAllStringSubmatch(svg, -1)
	x := func(i int) float64 { v, _ := strconv.ParseFloat(m[i][1], 64); return v }
	if d := math.Abs((x(0)+x(2))/2 - x(1)); d > 0.2 {
		t.Errorf("log x not logarithmic: %g %g %g", x(0), x(1), x(2))
	}
}

func TestEmptyAndDegenerateChartsStillDraw(t *testing.T) {
	for _, c := range []*Line{
		{},
		{Series: []Series{{Name: "flat", X: []float64{1, 2}, Y: []float64{5, 5}}}},
		{Series: []Series{{Name: "all bad", X: []float64{math.NaN()}, Y: []float64{math.Inf(-1)}}}, Y: Axis{Log: true}},
		{Series: []Series{{Name: "one", X: []float64{7}, Y: []float64{0}}}, X: Axis{Log: true}},
	} {
		svg := string(c.SVG())
		wellFormed(t, svg)
		noBadNumbers(t, svg)
	}
}

func TestGroupedBars(t *testing.T) {
	c := &Bars{
		Title:  "Sessions lost",
		Y:      Axis{Label: "sessions"},
		Groups: []string{"crash", "maintenance <drain>"},
		Series: []BarSeries{
			{Name: "sticky", Values: []float64{97, 40}},
			{Name: "store", Values: []float64{0, math.NaN()}},
			{Name: "short", Values: []float64{1}},
		},
		Refs: []Ref{{50, "half"}},
	}
	svg := string(c.SVG())
	elems, _ := wellFormed(t, svg)
	noBadNumbers(t, svg)
	// 3 legend swatches + 4 bars (NaN and the missing value get none).
	if got := count(elems, "rect"); got != 3+4 {
		t.Errorf("%d rects, want 7", got)
	}
	if !strings.Contains(svg, "maintenance &lt;drain&gt;") || !strings.Contains(svg, ">97<") {
		t.Error("group label or value label missing")
	}
	// Log bars grow from the bottom of the axis.
	c.Y.Log = true
	svg = string(c.SVG())
	wellFormed(t, svg)
	noBadNumbers(t, svg)
}

func TestTableEscapesEveryCell(t *testing.T) {
	h := string(Table{Caption: "a<b", Head: []string{"x&y", "n"}, Rows: [][]string{{"<script>", "1"}},
		Numeric: []bool{false, true}, Classes: []string{`bad" onclick="x`}}.HTML())
	if strings.Contains(h, "<script>") || strings.Contains(h, `" onclick`) {
		t.Fatalf("unescaped: %s", h)
	}
	for _, want := range []string{"a&lt;b", "x&amp;y", `class="num"`, "&lt;script&gt;"} {
		if !strings.Contains(h, want) {
			t.Errorf("table lacks %s: %s", want, h)
		}
	}
}

func TestNumbers(t *testing.T) {
	cases := map[float64]string{
		0: "0", 1: "1", 1.25: "1.25", 0.000123: "0.000123", 999: "999", 1000: "1k", 1234: "1234",
		12345: "12.3k", 1e6: "1M", 2.5e7: "25M", 3e9: "3G", -1500: "-1.5k",
		math.NaN(): "–", math.Inf(1): "∞",
	}
	for v, want := range cases {
		if got := Num(v); got != want {
			t.Errorf("Num(%g) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[float64]string{0: "0s", 12.5: "12.5s", 120: "2m", 7200: "2h"} {
		if got := Seconds(v); got != want {
			t.Errorf("Seconds(%g) = %q, want %q", v, got, want)
		}
	}
}

func FuzzLineNeverEmitsBadNumbers(f *testing.F) {
	f.Add(1.0, 2.0, 3.0, false)
	f.Add(math.NaN(), math.Inf(1), -1.0, true)
	f.Add(1e-300, 1e300, 0.0, true)
	f.Fuzz(func(t *testing.T, a, b, c float64, log bool) {
		ch := &Line{X: Axis{Log: log}, Y: Axis{Log: log}, Series: []Series{{Name: "s", X: []float64{a, b, c}, Y: []float64{c, a, b}}}}
		svg := string(ch.SVG())
		noBadNumbers(t, svg)
		wellFormed(t, svg)
	})
}
