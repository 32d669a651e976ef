package chart

import (
	"html/template"
	"strings"
)

// Table is an HTML table whose every cell is escaped.
type Table struct {
	Caption string
	Head    []string
	Rows    [][]string
	// Numeric marks columns to right-align (by index).
	Numeric []bool
	// Classes, when set, gives a CSS class per row ("good", "bad", "") so
	// a report can colour a verdict.
	Classes []string
}

// HTML renders the table.
func (t Table) HTML() template.HTML {
	var b strings.Builder
	b.WriteString(`<table>`)
	if t.Caption != "" {
		b.WriteString("<caption>" + Esc(t.Caption) + "</caption>")
	}
	if len(t.Head) > 0 {
		b.WriteString("<thead><tr>")
		for i, h := range t.Head {
			b.WriteString("<th" + t.align(i) + ">" + Esc(h) + "</th>")
		}
		b.WriteString("</tr></thead>")
	}
	b.WriteString("<tbody>")
	for r, row := range t.Rows {
		if r < len(t.Classes) && t.Classes[r] != "" {
			b.WriteString(`<tr class="` + Esc(t.Classes[r]) + `">`)
		} else {
			b.WriteString("<tr>")
		}
		for i, cell := range row {
			b.WriteString("<td" + t.align(i) + ">" + Esc(cell) + "</td>")
		}
		b.WriteString("</tr>")
	}
	b.WriteString("</tbody></table>")
	return template.HTML(b.String()) // every cell went through Esc
}

func (t Table) align(i int) string {
	if i < len(t.Numeric) && t.Numeric[i] {
		return ` class="num"`
	}
	return ""
}

// CSS is a stylesheet for a self-contained report page with these charts
// and tables: readable type, figures that scale to the window, zebra
// tables with right-aligned numbers, and .good/.bad/.note accents.
const CSS = `
:root{color-scheme:light}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;background:#fff;max-width:1040px;margin:0 auto;padding:24px 20px 64px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:36px 0 8px;border-bottom:1px solid #e3e6ea;padding-bottom:4px}
h3{font-size:16px;margin:24px 0 6px}
p,li{max-width:78ch}
.sub{color:#57606a;margin:0 0 20px}
figure{margin:16px 0 24px}
figure svg{display:block;background:#fff;border:1px solid #e3e6ea;border-radius:6px}
figcaption{color:#57606a;font-size:13px;margin-top:6px;max-width:78ch}
table{border-collapse:collapse;margin:12px 0 20px;font-size:14px}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{padding:5px 10px;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
tbody tr:nth-child(even){background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.good td:first-child{border-left:4px solid #009E73}
tr.bad td:first-child{border-left:4px solid #D55E00}
.verdict{background:#f6f8fa;border-left:4px solid #0072B2;padding:10px 16px;margin:16px 0}
.verdict li{margin:4px 0}
.note{color:#57606a;font-size:13px}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;padding:1px 4px;border-radius:3px}
`
