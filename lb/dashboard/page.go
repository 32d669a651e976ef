package dashboard

import (
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/unstuck-dev/unstuck/lb"
)

//go:embed page.html
var pageHTML string

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"clock": func(t time.Time) string { return t.Format("15:04:05") },
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"ms": func(v *float64) string {
		if v == nil {
			return "–"
		}
		return fmtMS(*v)
	},
	"pct": func(v float64) string {
		if v == 0 {
			return "0%"
		}
		return fmt.Sprintf("%.1f%%", v*100)
	},
	"rate":     func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"fixed2":   func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"drainish": func(s string) bool { return s == lb.StateDraining || s == lb.StateDrained },
	"count":    func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) },
	"span":     fmtSpan,
}).Parse(pageHTML))

// fmtSpan names a window of seconds the way the health cell reads: "1m"
// for the full window, "25s" while it fills.
func fmtSpan(seconds float64) string {
	if seconds >= checkWindow.Seconds()-0.5 {
		return fmt.Sprintf("%gm", math.Round(seconds/60))
	}
	return fmt.Sprintf("%.0fs", seconds)
}

// fmtMS prints a latency in milliseconds with sensible precision.
func fmtMS(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// pageData is what the template renders.
type pageData struct {
	Rows          []backendView
	Up            int
	Imbalance     float64
	Panic         bool
	Events        []Event
	At            time.Time
	Locked        bool // a token is needed and the request has none
	TokenRequired bool
	APIPath       string
	History       int
}

// maxPageEvents is how many events the server-rendered page lists.
const maxPageEvents = 50

func (d *Dashboard) servePage(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-store")
	ok := d.authorized(r)
	if _, login := r.URL.Query()["login"]; login {
		// Sign-in for browsers without JavaScript: the native Basic
		// prompt, with the token as password.
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="unstuck lb admin (password: the admin token)", charset="UTF-8"`)
			http.Error(w, "the admin token is needed (as the password)", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, "./", http.StatusSeeOther)
		return
	}
	pd := pageData{
		TokenRequired: d.opts.Token != "",
		Locked:        !ok,
		APIPath:       d.opts.APIPath,
		History:       d.opts.History,
	}
	if ok {
		rows, imb, panic, events, at := d.s.current()
		pd.Rows, pd.Imbalance, pd.Panic, pd.At = rows, imb, panic, at
		if len(events) > maxPageEvents {
			events = events[:maxPageEvents]
		}
		pd.Events = events
		for _, b := range rows {
			if b.Healthy {
				pd.Up++
			}
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTmpl.Execute(w, pd); err != nil {
		d.log.Warn("dashboard: rendering the page", "err", err)
	}
}
