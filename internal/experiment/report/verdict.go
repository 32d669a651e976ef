package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Verdict says in plain words, from the figures, where each architecture
// won and lost: every sentence is computed from r, none is canned. It
// covers the architectures that produced figures.
func Verdict(r *Results) []string {
	var archs []string
	for _, name := range r.Order {
		if a := r.Architectures[name]; ran(a) {
			archs = append(archs, name)
		}
	}
	if len(archs) == 0 {
		return []string{"No architecture produced figures: see the notes."}
	}
	v := &verdict{r: r, archs: archs}
	v.losses()
	v.concurrency()
	v.uploadsAndChat()
	v.balance()
	v.scaleOut()
	v.latency()
	v.outage()
	v.cost()
	v.calibration()
	v.summary()
	if r.Parameters.Quick {
		v.add("This was a --quick run: phases of a second or two and few users, so the imbalance and latency figures are noisy; the losses are not.")
	}
	if !r.Complete {
		v.add("The run was interrupted: the figures cover only what ran.")
	}
	return v.out
}

type verdict struct {
	r     *Results
	archs []string
	out   []string
}

func (v *verdict) add(format string, args ...any) {
	v.out = append(v.out, fmt.Sprintf(format, args...))
}

func (v *verdict) fig(name string) *Figures { return &v.r.Architectures[name].Figures }

func (v *verdict) phase(name, phase string) *Figures {
	if f := v.r.Architectures[name].Phases[phase]; f != nil {
		return f
	}
	return &Figures{}
}

// stateLost is what a user notices: sessions, cart items, uploads.
func stateLost(f *Figures) int64 { return f.SessionsLost + f.CartItemsLost + f.UploadsLost }

func (v *verdict) losses() {
	var clean, lossy []string
	for _, a := range v.archs {
		if stateLost(v.fig(a)) == 0 {
			clean = append(clean, a)
		} else {
			lossy = append(lossy, a)
		}
	}
	if len(clean) > 0 {
		v.add("%s lost no session, cart item or upload through the scale-out, the drain, the crash and the store restart.", list(clean))
	}
	for _, a := range lossy {
		f := v.fig(a)
		var where []string
		for _, ph := range v.r.Parameters.Phases {
			if n := v.phase(a, ph.Name).SessionsLost; n > 0 {
				where = append(where, fmt.Sprintf("%d in %s", n, ph.Name))
			}
		}
		if f.SessionsLost == 0 {
			v.add("%s logged nobody out, but %s and %s went missing from live sessions.", a, plural(int(f.CartItemsLost), "cart item"), plural(int(f.UploadsLost), "upload"))
			continue
		}
		users := "users"
		if f.Users > 0 {
			users = fmt.Sprintf("of its %d users", f.Users)
		}
		why := ""
		if strings.Contains(v.r.Architectures[a].App, "--sessions memory") {
			why = ": state kept in an instance dies with it, and a drain cannot move it"
		}
		v.add("%s logged out %d %s, who had to log in again (%s), and lost %d cart items and %d uploads with them%s.",
			a, f.SessionsLost, users, strings.Join(where, ", "), f.CartItemsLost, f.UploadsLost, why)
	}
}

func (v *verdict) concurrency() {
	for _, a := range v.archs {
		if n := v.fig(a).UpdatesLost; n > 0 {
			v.add("%s lost %d cart updates to concurrent requests of one user (two tabs, or overlapping requests): each answer carried its own copy of the state and the last one won.", a, n)
		}
	}
	var none []string
	for _, a := range v.archs {
		if v.fig(a).UpdatesLost == 0 {
			none = append(none, a)
		}
	}
	if len(none) > 0 && len(none) < len(v.archs) {
		v.add("%s lost no update to concurrent requests.", list(none))
	}
	for _, a := range v.archs {
		if n := v.fig(a).StaleReads; n > 0 {
			v.add("%s served %d stale cart reads (an item missing, back on the next read).", a, n)
		}
	}
}

func (v *verdict) uploadsAndChat() {
	var lost []string
	for _, a := range v.archs {
		f := v.fig(a)
		if f.MessagesLost > 0 || f.MessagesDuplicated > 0 {
			lost = append(lost, fmt.Sprintf("%s %d lost and %d duplicated", a, f.MessagesLost, f.MessagesDuplicated))
		}
	}
	if len(lost) > 0 {
		v.add("Chat messages users should have received: %s.", strings.Join(lost, "; "))
	} else {
		v.add("No chat message was lost or duplicated in any architecture: chat goes through the backplane in all of them.")
	}
}

// balance compares the steady-phase imbalances against the noise floor:
// with few requests per instance, max/mean is well above 1 by chance
// alone, so an architecture is called uneven only above the floor's 95th
// percentile, and no winner is named among those within it.
func (v *verdict) balance() {
	type im struct {
		a        string
		x, floor float64
		p95      float64
	}
	var within, above []im
	for _, a := range v.archs {
		f := v.fig(a)
		if f.ImbalanceMaxOverMean == nil {
			continue
		}
		if f.ImbalanceNoiseFloor == nil || f.ImbalanceNoiseP95 == nil {
			v.balanceWithoutFloor() // a results.json from before the floor
			return
		}
		x := im{a: a, x: *f.ImbalanceMaxOverMean, floor: *f.ImbalanceNoiseFloor, p95: *f.ImbalanceNoiseP95}
		if x.x <= x.p95 {
			within = append(within, x)
		} else {
			above = append(above, x)
		}
	}
	if len(within)+len(above) < 2 {
		return
	}
	byX := func(p, q im) int { return cmpF(p.x, q.x) }
	slices.SortFunc(within, byX)
	slices.SortFunc(above, byX)
	if len(within) > 0 {
		lo, hi := within[0], within[len(within)-1]
		// The floor depends on the request count, which differs a little
		// between architectures: quote the widest.
		p95 := 0.0
		for _, x := range within {
			p95 = math.Max(p95, x.p95)
		}
		names := make([]string, len(within))
		for i, x := range within {
			names[i] = x.a
		}
		span := fmt.Sprintf("%.2f", lo.x)
		if hi.x-lo.x >= 0.005 {
			span = fmt.Sprintf("%.2f to %.2f", lo.x, hi.x)
		}
		v.add("In steady state %s spread the load as evenly as chance allows: busiest instance at %s x the mean, within the noise floor (the same requests sent to instances at random give up to %.2f x at the 95th percentile), so no winner among them.",
			list(names), span, p95)
	}
	for _, x := range above {
		v.add("%s's load was uneven beyond noise in steady state: busiest instance at %.2f x the mean (%.0f%% above it), where chance alone gives %.2f x (95th percentile %.2f).",
			x.a, x.x, 100*(x.x-1), x.floor, x.p95)
	}
	if len(above) >= 2 {
		lo, hi := above[0], above[len(above)-1]
		if hi.x-lo.x > math.Max(hi.p95, lo.p95)-1 {
			v.add("Of those, %s was the least even and %s the most.", hi.a, lo.a)
		} else {
			v.add("%s and %s differ by less than the noise.", hi.a, lo.a)
		}
	}
}

// balanceWithoutFloor compares imbalances that come without a noise floor
// (results written before it was recorded), and says so.
func (v *verdict) balanceWithoutFloor() {
	type im struct {
		a string
		x float64
	}
	var ims []im
	for _, a := range v.archs {
		if x := v.fig(a).ImbalanceMaxOverMean; x != nil {
			ims = append(ims, im{a, *x})
		}
	}
	slices.SortFunc(ims, func(p, q im) int { return cmpF(p.x, q.x) })
	var parts []string
	for _, x := range ims {
		parts = append(parts, fmt.Sprintf("%s %.2f", x.a, x.x))
	}
	v.add("In steady state the busiest instance carried, over the mean: %s (these results record no noise floor, so small differences may be chance).", strings.Join(parts, ", "))
}

func (v *verdict) scaleOut() {
	var fast, never []string
	for _, a := range v.archs {
		s := v.fig(a).ScaleOutSecondsToFairShare
		if s == nil {
			never = append(never, a)
		} else {
			fast = append(fast, fmt.Sprintf("%s in %.1f s", a, *s))
		}
	}
	if len(fast) > 0 {
		v.add("The instance added at scale-out carried 80%% of its fair share: %s.", strings.Join(fast, ", "))
	}
	if len(never) > 0 {
		v.add("With %s it never did within the run: pinned users stay where they are, so a new instance gets only new users.", list(never))
	}
}

func (v *verdict) latency() {
	type lat struct {
		a        string
		p50, p99 float64
	}
	var ls []lat
	for _, a := range v.archs {
		f := v.phase(a, "steady")
		if f.P50ms != nil && f.P99ms != nil {
			ls = append(ls, lat{a, *f.P50ms, *f.P99ms})
		}
	}
	if len(ls) < 2 {
		return
	}
	slices.SortFunc(ls, func(p, q lat) int { return cmpF(p.p50, q.p50) })
	best, worst := ls[0], ls[len(ls)-1]
	v.add("In steady state %s answered fastest (p50 %.2f ms, p99 %.1f ms) and %s slowest (p50 %.2f ms, p99 %.1f ms): %s.",
		best.a, best.p50, best.p99, worst.a, worst.p50, worst.p99, ratio(worst.p50, best.p50))
	for _, a := range v.archs {
		if !usesStoreForSessions(v.r.Architectures[a]) {
			continue
		}
		for _, b := range v.archs {
			if b == "sticky" && a != b {
				fa, fb := v.phase(a, "steady"), v.phase(b, "steady")
				if fa.P50ms != nil && fb.P50ms != nil && *fa.P50ms > *fb.P50ms {
					v.add("%s pays for its session store round trips: its median request took %.2f ms more than sticky's.", a, *fa.P50ms-*fb.P50ms)
				}
			}
		}
	}
}

func (v *verdict) outage() {
	for _, a := range v.archs {
		sr, st := v.phase(a, "store_restart"), v.phase(a, "steady")
		if sr.Requests == 0 {
			continue
		}
		errRate := float64(sr.Errors) / float64(sr.Requests)
		p99 := "n/a"
		if sr.P99ms != nil {
			p99 = fmt.Sprintf("%.0f ms", *sr.P99ms)
		}
		base := "n/a"
		if st.P99ms != nil {
			base = fmt.Sprintf("%.0f ms", *st.P99ms)
		}
		what := "its sessions do not live in the store, but chat and uploads do"
		if usesStoreForSessions(v.r.Architectures[a]) {
			what = "every request that reads a session needs the store"
		}
		v.add("While the store restarted, %s had %d errors (%.1f%% of its requests) and a p99 of %s against %s in steady state: %s.",
			a, sr.Errors, 100*errRate, p99, base, what)
		ejected := 0
		for _, e := range v.r.Architectures[a].Events {
			if e.Action == "balancer" && e.Phase == "store_restart" && strings.Contains(e.Detail, "(ejected)") {
				ejected++
			}
		}
		if ejected > 0 {
			v.add("In %s the balancer took %s out of rotation (ejected) for the 503s answered while the store was down, and kept them out after it came back.", a, plural(ejected, "healthy instance"))
		}
	}
}

func (v *verdict) cost() {
	var parts []string
	for _, a := range v.archs {
		f := v.fig(a)
		if f.StoreRoundTripsPerRequest != nil {
			s := fmt.Sprintf("%s %.2f", a, *f.StoreRoundTripsPerRequest)
			if f.CPUMsPerRequest != nil {
				s += fmt.Sprintf(" (%.2f ms of instance CPU)", *f.CPUMsPerRequest)
			}
			parts = append(parts, s)
		}
	}
	if len(parts) > 0 {
		v.add("Store round trips per request, all parts counted (sessions, chat, jobs, presence): %s.", strings.Join(parts, ", "))
	}
}

// summary says, per architecture, what it did best and worst among those
// compared.
func (v *verdict) summary() {
	if len(v.archs) < 2 {
		return
	}
	type measure struct {
		name  string
		value func(*Figures) (float64, bool)
	}
	measures := []measure{
		{"state lost", func(f *Figures) (float64, bool) { return float64(stateLost(f)), true }},
		{"updates lost", func(f *Figures) (float64, bool) { return float64(f.UpdatesLost), true }},
		// Imbalance counts only beyond the noise floor: architectures
		// within it tie.
		{"imbalance", func(f *Figures) (float64, bool) {
			if f.ImbalanceMaxOverMean == nil {
				return 0, false
			}
			if f.ImbalanceNoiseP95 == nil {
				return *f.ImbalanceMaxOverMean, true
			}
			return math.Max(0, *f.ImbalanceMaxOverMean-*f.ImbalanceNoiseP95), true
		}},
		{"scale-out", func(f *Figures) (float64, bool) {
			if f.ScaleOutSecondsToFairShare == nil {
				return math.Inf(1), true
			}
			return *f.ScaleOutSecondsToFairShare, true
		}},
		{"median latency", opt(func(f *Figures) *float64 { return f.P50ms })},
		{"p99 latency", opt(func(f *Figures) *float64 { return f.P99ms })},
		{"errors", func(f *Figures) (float64, bool) { return float64(f.Errors), true }},
		{"store round trips", opt(func(f *Figures) *float64 { return f.StoreRoundTripsPerRequest })},
	}
	for _, a := range v.archs {
		var wins, losses []string
		for _, m := range measures {
			mine, ok := m.value(v.fig(a))
			if !ok {
				continue
			}
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, b := range v.archs {
				if x, ok := m.value(v.fig(b)); ok {
					lo, hi = math.Min(lo, x), math.Max(hi, x)
				}
			}
			if lo == hi {
				continue
			}
			switch mine {
			case lo:
				wins = append(wins, m.name)
			case hi:
				losses = append(losses, m.name)
			}
		}
		s := a + ": "
		switch {
		case len(wins) > 0 && len(losses) > 0:
			s += fmt.Sprintf("best at %s; worst at %s.", strings.Join(wins, ", "), strings.Join(losses, ", "))
		case len(wins) > 0:
			s += fmt.Sprintf("best at %s, worst at nothing.", strings.Join(wins, ", "))
		case len(losses) > 0:
			s += fmt.Sprintf("best at nothing, worst at %s.", strings.Join(losses, ", "))
		default:
			s += "neither best nor worst at anything measured."
		}
		v.add("%s", s)
	}
}

func opt(get func(*Figures) *float64) func(*Figures) (float64, bool) {
	return func(f *Figures) (float64, bool) {
		if p := get(f); p != nil {
			return *p, true
		}
		return 0, false
	}
}

// usesStoreForSessions reports whether the architecture reads a session
// store on every request.
func usesStoreForSessions(a *Architecture) bool {
	return strings.Contains(a.App, "--sessions shared")
}

func ratio(a, b float64) string {
	if b <= 0 {
		return "no ratio"
	}
	return fmt.Sprintf("%.1f x", a/b)
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// list writes "a", "a and b", "a, b and c".
func list(xs []string) string {
	switch len(xs) {
	case 0:
		return ""
	case 1:
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

// plural writes "1 upload", "2 uploads".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
