package report

import (
	"fmt"
	"html/template"

	"github.com/unstuck-dev/unstuck/internal/experiment/chart"
)

// size is a chart's size in pixels; zero fields take the chart's default.
type size struct{ w, h int }

var (
	full  = size{}
	small = size{w: 640, h: 270}
)

// overviewCSS lays the overview out as a grid two charts wide, wider than
// the text column (charts need the room, prose does not), one column on a
// narrow window.
const overviewCSS = `
.overview{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:10px;width:min(1340px,calc(100vw - 40px));position:relative;left:50%;transform:translateX(-50%);margin:12px 0 8px}
.overview .cell{min-width:0}
.overview svg{display:block;width:100%;height:auto;border:1px solid #e3e6ea;border-radius:6px}
.overview table{margin:0;font-size:13px;width:100%}
.overview th,.overview td{padding:3px 8px}
@media (max-width:900px){.overview{grid-template-columns:1fr}}
`

// overview is the page's top grid: each architecture's load per instance
// over time (phases shaded), the latency over time, the imbalance per
// phase with its noise floor, the scale-out, and the losses per
// architecture; the full-size charts and the per-phase tables follow
// further down.
func overview(r *Results, bands []chart.Band) []template.HTML {
	var cells []template.HTML
	for _, name := range ranArchs(r) {
		cells = append(cells, loadChart(name, r.Architectures[name], bands, small))
	}
	cells = append(cells, latencyChart(r, bands, small), imbalanceChart(r, small), scaleOutChart(r, small), lossSummary(r))
	return cells
}

// lossSummary is the whole run's losses, one row per architecture.
func lossSummary(r *Results) template.HTML {
	head := []string{"architecture", "sessions lost", "cart items lost", "updates lost (concurrent)", "uploads lost", "chat msgs lost / dup", "errors"}
	var rows [][]string
	var classes []string
	for _, name := range ranArchs(r) {
		f := &r.Architectures[name].Figures
		rows = append(rows, []string{name, itoa(f.SessionsLost), itoa(f.CartItemsLost), itoa(f.UpdatesLost), itoa(f.UploadsLost),
			fmt.Sprintf("%d / %d", f.MessagesLost, f.MessagesDuplicated), itoa(f.Errors)})
		if stateLost(f)+f.UpdatesLost+f.MessagesLost > 0 {
			classes = append(classes, "bad")
		} else {
			classes = append(classes, "good")
		}
	}
	return chart.Table{Caption: "What users lost over the whole timeline (per phase below)", Head: head, Rows: rows,
		Numeric: []bool{false, true, true, true, true, true, true}, Classes: classes}.HTML()
}
