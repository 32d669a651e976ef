package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Table writes the terminal summary: one column per architecture, one row
// per figure, then the losses per phase.
func Table(w io.Writer, r *Results) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	archs := r.Order
	fmt.Fprint(tw, "\t")
	for _, a := range archs {
		fmt.Fprintf(tw, "%s\t", a)
	}
	fmt.Fprintln(tw)
	for _, row := range tableRows {
		fmt.Fprintf(tw, "%s\t", row.name)
		for _, a := range archs {
			fmt.Fprintf(tw, "%s\t", row.value(r.Architectures[a]))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nlosses per phase (sessions / cart items / updates / uploads / messages):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, a := range archs {
		fmt.Fprintf(tw, "%s\t", a)
	}
	fmt.Fprintln(tw)
	for _, ph := range r.Parameters.Phases {
		fmt.Fprintf(tw, "%s\t", ph.Name)
		for _, a := range archs {
			f := r.Architectures[a].Phases[ph.Name]
			if f == nil {
				fmt.Fprint(tw, "-\t")
				continue
			}
			fmt.Fprintf(tw, "%d/%d/%d/%d/%d\t", f.SessionsLost, f.CartItemsLost, f.UpdatesLost, f.UploadsLost, f.MessagesLost)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	for _, a := range archs {
		for _, n := range r.Architectures[a].Notes {
			fmt.Fprintf(w, "note (%s): %s\n", a, n)
		}
	}
}

type tableRow struct {
	name  string
	value func(*Architecture) string
}

var tableRows = []tableRow{
	{"sessions lost", count(func(f *Figures) int64 { return f.SessionsLost })},
	{"cart items lost", count(func(f *Figures) int64 { return f.CartItemsLost })},
	{"updates lost (concurrent)", count(func(f *Figures) int64 { return f.UpdatesLost })},
	{"uploads lost", count(func(f *Figures) int64 { return f.UploadsLost })},
	{"chat messages lost", count(func(f *Figures) int64 { return f.MessagesLost })},
	{"chat messages duplicated", count(func(f *Figures) int64 { return f.MessagesDuplicated })},
	{"errors (5xx, no answer)", func(a *Architecture) string {
		if !ran(a) {
			return "-"
		}
		return fmt.Sprintf("%d %s", a.Errors, topStatuses(a.ErrorsByStatus))
	}},
	{"imbalance max/mean (steady)", num(func(f *Figures) *float64 { return f.ImbalanceMaxOverMean }, "%.2f")},
	{"  noise floor: chance alone, p95", num(func(f *Figures) *float64 { return f.ImbalanceNoiseP95 }, "%.2f")},
	{"imbalance CV (steady)", num(func(f *Figures) *float64 { return f.ImbalanceCV }, "%.2f")},
	{"scale-out: s to 80% fair share", func(a *Architecture) string {
		if !ran(a) {
			return "-"
		}
		if a.ScaleOutSecondsToFairShare == nil {
			return "never"
		}
		return fmt.Sprintf("%.1f", *a.ScaleOutSecondsToFairShare)
	}},
	{"latency p50 ms", num(func(f *Figures) *float64 { return f.P50ms }, "%.1f")},
	{"latency p99 ms", num(func(f *Figures) *float64 { return f.P99ms }, "%.1f")},
	{"latency p99.9 ms", num(func(f *Figures) *float64 { return f.P999ms }, "%.1f")},
	{"throughput req/s", num(func(f *Figures) *float64 { return &f.ThroughputRPS }, "%.1f")},
	{"store round trips / request", num(func(f *Figures) *float64 { return f.StoreRoundTripsPerRequest }, "%.2f")},
	{"instance CPU ms / request", num(func(f *Figures) *float64 { return f.CPUMsPerRequest }, "%.2f")},
	{"requests", count(func(f *Figures) int64 { return f.Requests })},
}

// ran reports whether the architecture produced figures at all.
func ran(a *Architecture) bool { return a != nil && a.Requests > 0 }

func count(get func(*Figures) int64) func(*Architecture) string {
	return func(a *Architecture) string {
		if !ran(a) {
			return "-"
		}
		return fmt.Sprint(get(&a.Figures))
	}
}

func num(get func(*Figures) *float64, format string) func(*Architecture) string {
	return func(a *Architecture) string {
		if !ran(a) {
			return "-"
		}
		v := get(&a.Figures)
		if v == nil {
			return "n/a"
		}
		return fmt.Sprintf(format, *v)
	}
}

// topStatuses shows the most frequent failure kinds, "(503:12 timeout:3)".
func topStatuses(m map[string]int64) string {
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range m {
		if k == "401" || k == "404" || k == "400" {
			continue // answers, not failures
		}
		all = append(all, kv{k, v})
	}
	if len(all) == 0 {
		return ""
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[j].v > all[i].v || (all[j].v == all[i].v && all[j].k < all[i].k) {
				all[i], all[j] = all[j], all[i]
			}
		}
	}
	var parts []string
	for i, e := range all {
		if i == 3 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s:%d", e.k, e.v))
	}
	return "(" + strings.Join(parts, " ") + ")"
}
