package model

import (
	"math"
	"strings"
	"testing"
	"time"
)

// within fails unless got is within rel (relative) of want.
func within(t *testing.T, what string, got, want, rel float64) {
	t.Helper()
	if math.Abs(got-want) > rel*math.Abs(want) {
		t.Errorf("%s = %.6g, want %.6g within %.1f%%", what, got, want, 100*rel)
	}
}

func meanVar(n int, draw func() float64) (mean, variance float64) {
	sum, sq := 0.0, 0.0
	for range n {
		x := draw()
		sum += x
		sq += x * x
	}
	mean = sum / float64(n)
	return mean, sq/float64(n) - mean*mean
}

func TestPoissonMeanAndVarianceAcrossRegimes(t *testing.T) {
	r := NewRand(7, StreamSim)
	for _, mu := range []float64{0.3, 4, 9.9, 10, 37, 1000, 1e6} {
		m, v := meanVar(200_000, func() float64 { return float64(r.Poisson(mu)) })
		// Standard error of the mean is sqrt(mu/n): 5 of them, plus 1%
		// on the variance estimate.
		if se := math.Sqrt(mu / 200_000); math.Abs(m-mu) > 5*se {
			t.Errorf("Poisson(%g) mean %.6g, off by more than 5 standard errors (%.3g)", mu, m, se)
		}
		within(t, "Poisson variance", v, mu, 0.02)
	}
	if r.Poisson(0) != 0 || r.Poisson(-1) != 0 || r.Poisson(math.NaN()) != 0 {
		t.Error("Poisson of a non-positive or NaN mean must be 0")
	}
}

func TestExpAndNormal(t *testing.T) {
	r := NewRand(1, 2)
	m, v := meanVar(200_000, func() float64 { return r.Exp(3) })
	within(t, "Exp mean", m, 3, 0.02)
	within(t, "Exp variance", v, 9, 0.05)
	m, v = meanVar(200_000, r.Normal)
	if math.Abs(m) > 0.01 {
		t.Errorf("Normal mean %g", m)
	}
	within(t, "Normal variance", v, 1, 0.02)
}

func TestIntNIsUniform(t *testing.T) {
	r := NewRand(3, 4)
	var counts [7]int
	for range 70_000 {
		counts[r.IntN(7)]++
	}
	for i, c := range counts {
		if c < 9_500 || c > 10_500 {
			t.Errorf("IntN(7) gave %d %d times of 70000", i, c)
		}
	}
}

func TestBoundedParetoHasItsStatedMean(t *testing.T) {
	for _, alpha := range []float64{0.8, 1, 1.5, 2.5} {
		d := NewBoundedPareto(alpha, 20, 600)
		within(t, "solved mean", d.Mean(), 20, 1e-9)
		if d.Min <= 0 || d.Min >= 20 {
			t.Fatalf("alpha %g: Min %g", alpha, d.Min)
		}
		r := NewRand(11, 0)
		m, _ := meanVar(400_000, func() float64 {
			x := d.Sample(&r)
			if x < d.Min || x > d.Max {
				t.Fatalf("sample %g outside [%g, %g]", x, d.Min, d.Max)
			}
			return x
		})
		within(t, "sample mean", m, 20, 0.03)
	}
}

func TestResidualFollowsTheEquilibriumLaw(t *testing.T) {
	// The mean remaining length seen at a random instant is E[X^2]/(2 E[X]).
	d := NewBoundedPareto(1.5, 20, 600)
	r := NewRand(5, 0)
	_, v := meanVar(400_000, func() float64 { return d.Sample(&r) })
	want := (v + 20*20) / (2 * 20)
	m, _ := meanVar(400_000, func() float64 { return d.SampleResidual(&r) })
	within(t, "residual mean", m, want, 0.05)
}

func TestTruncLogNormalHasItsStatedMean(t *testing.T) {
	d := NewTruncLogNormal(1, 1, 20)
	within(t, "solved mean", d.Mean(), 1, 1e-9)
	r := NewRand(9, 0)
	m, _ := meanVar(400_000, func() float64 {
		x := d.Sample(&r)
		if !(x > 0) || x > 20 {
			t.Fatalf("rate %g outside (0, 20]", x)
		}
		return x
	})
	within(t, "sample mean", m, 1, 0.01)
}

func TestPopulationStaysNearUsers(t *testing.T) {
	// Little's law: with the initial users drawn from the stationary state
	// and Poisson arrivals, the number active stays near Users all along.
	p := Default()
	p.Users = 2000
	pop := p.NewPopulation()
	var ends []time.Duration
	for i := range p.Users {
		ends = append(ends, pop.Initial(i).End())
	}
	for {
		u := pop.Next()
		if u.Start > p.Duration {
			break
		}
		ends = append(ends, u.End())
	}
	starts := make([]time.Duration, 0, len(ends))
	pop = p.NewPopulation()
	for i := range p.Users {
		starts = append(starts, pop.Initial(i).Start)
	}
	for len(starts) < len(ends) {
		starts = append(starts, pop.Next().Start)
	}
	for _, at := range []time.Duration{5 * time.Second, 30 * time.Second, 59 * time.Second} {
		active := 0
		for i := range ends {
			if starts[i] <= at && at < ends[i] {
				active++
			}
		}
		// Poisson(2000) has a standard deviation of 45.
		if active < 1800 || active > 2200 {
			t.Errorf("at %v: %d users active, want about %d", at, active, p.Users)
		}
	}
}

func TestUsersAreDeterministicPerSeed(t *testing.T) {
	p := Default()
	a, b := p.NewPopulation(), p.NewPopulation()
	if a.Initial(17) != b.Initial(17) {
		t.Fatal("the same initial user differs between two populations of one seed")
	}
	for range 100 {
		if a.Next() != b.Next() {
			t.Fatal("arrivals differ between two populations of one seed")
		}
	}
	// A user does not depend on the order it is asked for.
	c := p.NewPopulation()
	_ = c.Initial(3)
	if c.Initial(17) != a.Initial(17) {
		t.Fatal("an initial user depends on what was drawn before it")
	}
	p.Seed = 2
	if p.NewPopulation().Initial(17) == a.Initial(17) {
		t.Fatal("another seed gives the same user")
	}
}

func TestScriptFollowsTheMix(t *testing.T) {
	p := Default()
	pop := p.NewPopulation()
	counts := map[Action]int{}
	requests, seconds, twoTab := 0, 0.0, 0
	for range 3000 {
		u := pop.Next()
		s := p.NewUserScript(u)
		last := time.Duration(-1)
		first := true
		for {
			st, ok := s.Next()
			if !ok {
				break
			}
			if first && st.Action != Login {
				t.Fatalf("first request %v, want login", st.Action)
			}
			first = false
			if st.At < last || st.At < u.Start || st.At > u.End() {
				t.Fatalf("step at %v outside the session [%v, %v] or out of order", st.At, u.Start, u.End())
			}
			if st.Concurrent && (!u.TwoTabs || st.Action != AddToCart) {
				t.Fatalf("concurrent %v for a user with TwoTabs=%v", st.Action, u.TwoTabs)
			}
			if st.Concurrent {
				twoTab++
			}
			last = st.At
			counts[st.Action]++
			if st.Action == Browse || st.Action == AddToCart || st.Action == ViewCart {
				requests++
			}
		}
		seconds += u.Rate * u.Length.Seconds()
	}
	within(t, "browse share", float64(counts[Browse])/float64(requests), p.Script.Browse, 0.05)
	within(t, "add share", float64(counts[AddToCart])/float64(requests), p.Script.AddToCart, 0.05)
	within(t, "requests per rate x length", float64(requests), seconds, 0.05)
	within(t, "logout share", float64(counts[Logout])/3000, p.Script.Logout, 0.1)
	if counts[Upload] == 0 || twoTab == 0 {
		t.Errorf("no uploads (%d) or two-tab adds (%d)", counts[Upload], twoTab)
	}
	// Same user, same script.
	u := p.NewPopulation().Next()
	a, b := p.NewUserScript(u), p.NewUserScript(u)
	for {
		x, ok := a.Next()
		y, _ := b.Next()
		if x != y {
			t.Fatal("two scripts of one user differ")
		}
		if !ok {
			break
		}
	}
}

func TestChatTimes(t *testing.T) {
	p := Default()
	pop := p.NewPopulation()
	msgs, secs := 0, 0.0
	for range 2000 {
		u := pop.Next()
		next := p.ChatTimes(u)
		if !u.Chats {
			if _, ok := next(); ok {
				t.Fatal("a user who does not chat sends a message")
			}
			continue
		}
		secs += u.Length.Seconds()
		for {
			at, ok := next()
			if !ok {
				break
			}
			if at < u.Start || at >= u.End() {
				t.Fatalf("message at %v outside the session", at)
			}
			msgs++
		}
	}
	within(t, "chat messages per second", float64(msgs)/secs, p.Script.ChatRate, 0.1)
}

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		change func(*Params)
		field  string
	}{
		{func(p *Params) { p.Users = 0 }, "Users"},
		{func(p *Params) { p.Instances = 1 }, "Instances"},
		{func(p *Params) { p.Duration = -1 }, "Duration"},
		{func(p *Params) { p.Session.Mean = p.Session.Max }, "Session.Mean"},
		{func(p *Params) { p.Rate.Sigma = 0 }, "Rate.Sigma"},
		{func(p *Params) { p.Script.Browse = 0.9 }, "Script.Browse"},
		{func(p *Params) { p.Script.TwoTabs = 2 }, "Script.TwoTabs"},
		{func(p *Params) { p.ServiceTime = 0 }, "ServiceTime"},
		{func(p *Params) { p.Timeline.Phases[2].Name = "x" }, "Timeline.Phases[2]"},
		{func(p *Params) { p.Timeline.Phases[0].Share = 0.5 }, "sum to 1"},
		{func(p *Params) { p.Timeline.StoreDowntime = time.Hour }, "StoreDowntime"},
	}
	for _, c := range cases {
		p := Default()
		p.Timeline.Phases = append([]Phase(nil), p.Timeline.Phases...)
		c.change(&p)
		err := p.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("want an error naming %s, got %v", c.field, err)
		}
	}
	for _, p := range []Params{Default(), Quick()} {
		if err := p.Validate(); err != nil {
			t.Errorf("preset invalid: %v", err)
		}
	}
}

func TestTimeline(t *testing.T) {
	p := Default()
	spans := p.Spans()
	if len(spans) != 6 || spans[0].Start != 0 || spans[5].End != p.Duration {
		t.Fatalf("spans %v", spans)
	}
	for i := 1; i < len(spans); i++ {
		if spans[i].Start != spans[i-1].End || spans[i].Name != PhaseNames[i] {
			t.Fatalf("spans not contiguous or misnamed: %v", spans)
		}
	}
	if got := p.Timeline.PhaseAt(p.Duration, 13*time.Second); got != ScaleOut {
		t.Errorf("13s of 60s is in %s", got)
	}
	ev := p.Events()
	for i := 1; i < len(ev); i++ {
		if ev[i].At < ev[i-1].At {
			t.Fatalf("events out of order: %v", ev)
		}
	}
	if ev[0].Kind != Join || ev[0].Instance != p.Instances || ev[0].At != spans[1].Start {
		t.Errorf("first event %+v", ev[0])
	}
	if ev[2].Kind != Stop || ev[2].At != spans[2].Start+6*time.Second {
		t.Errorf("stop %+v", ev[2])
	}
	if ev[5].Kind != StoreUp || ev[5].At-ev[4].At != p.Timeline.StoreDowntime || ev[5].Kind.String() != "store_up" {
		t.Errorf("store events %+v %+v", ev[4], ev[5])
	}
}

func TestImbalanceOf(t *testing.T) {
	im := ImbalanceOf([]float64{1, 1, 4})
	within(t, "max/mean", im.MaxOverMean, 2, 1e-12)
	within(t, "cv", im.CV, math.Sqrt(2)/2, 1e-12)
	if im := ImbalanceOf(nil); im.MaxOverMean != 1 || im.CV != 0 {
		t.Errorf("empty: %+v", im)
	}
	if im := ImbalanceOf([]float64{0, 0}); im.MaxOverMean != 1 || im.CV != 0 {
		t.Errorf("all zero: %+v", im)
	}
	if !ReachedFairShare(80, 400, 4) || ReachedFairShare(79, 400, 4) || ReachedFairShare(1, 0, 3) {
		t.Error("ReachedFairShare wrong at the 80% boundary")
	}
}

func TestArchsAndTheirStoreCost(t *testing.T) {
	for _, a := range Archs {
		b, err := ArchNamed(a.Name)
		if err != nil || b != a {
			t.Errorf("ArchNamed(%q) = %v, %v", a.Name, b, err)
		}
	}
	if _, err := ArchNamed("jwt"); err == nil || !strings.Contains(err.Error(), "jwt") {
		t.Errorf("unknown architecture: %v", err)
	}
	if o := Store.Ops(Browse, true); o != (SessionOps{Reads: 1}) {
		t.Errorf("store browse %+v", o)
	}
	if o := Affinity.Ops(AddToCart, true); o != (SessionOps{Writes: 1}) {
		t.Errorf("affinity cached add %+v", o)
	}
	if o := Affinity.Ops(Browse, false); o != (SessionOps{Reads: 1}) {
		t.Errorf("affinity miss %+v", o)
	}
	if o := Sticky.Ops(AddToCart, false); o != (SessionOps{}) {
		t.Errorf("sticky %+v", o)
	}
	if o := Cookie.Ops(Logout, false); o != (SessionOps{Writes: 1}) {
		t.Errorf("cookie logout %+v", o)
	}
	if Affinity.Factor != 1.25 {
		t.Errorf("affinity c = %g", Affinity.Factor)
	}
}

func TestDescribeStatesEveryParameter(t *testing.T) {
	p := Default()
	rows := p.Describe()
	text := ""
	for _, r := range rows {
		if r.Name == "" || r.Value == "" {
			t.Errorf("empty row %+v", r)
		}
		text += r.Name + " " + r.Value + "\n"
	}
	for _, want := range []string{"alpha 1.5", "sigma 1", "300", "5ms", "scale_out 20%", "300 requests/s", "1 at the live run's scale (job utilisation 1.00)"} {
		if !strings.Contains(text, want) {
			t.Errorf("description lacks %q:\n%s", want, text)
		}
	}
}

// Job workers are provisioned in proportion to load: one per instance at
// the live run's scale, where uploads keep it exactly busy, and at other
// scales the fewest that keep the utilisation no higher.
func TestWorkersAtScaleKeepTheLiveUtilisation(t *testing.T) {
	within(t, "the live default's job utilisation", LiveJobUtilisation(), 1, 1e-12)
	cases := []struct{ users, instances, want int }{
		{300, 3, 1},       // the live run: unchanged
		{100, 3, 1},       // never fewer than JobWorkers
		{301, 3, 2},       // just past the live load
		{450, 3, 2},       // 150 an instance
		{3000, 3, 10},     // 1,000 an instance
		{1e7, 1e4, 10},    // the sweep's largest point
		{4642, 10, 5},     // a sweep point: 464 an instance
		{1e7, 2, 50_000},  // 5e6 an instance
		{1e8, 2, 100_000}, // capped
	}
	for _, c := range cases {
		p := Default()
		p.Users, p.Instances = c.users, c.instances
		w := p.WorkersAtScale()
		if w != c.want {
			t.Errorf("%d users on %d instances: %d workers an instance, want %d", c.users, c.instances, w, c.want)
		}
		if u := p.JobUtilisation(w); w < MaxJobWorkers && u > LiveJobUtilisation()+1e-9 {
			t.Errorf("%d users on %d instances: utilisation %.3f with %d workers, above the live run's", c.users, c.instances, u, w)
		}
		if u := p.JobUtilisation(w - 1); w > 1 && u <= LiveJobUtilisation() {
			t.Errorf("%d users on %d instances: %d workers would do (utilisation %.3f)", c.users, c.instances, w-1, u)
		}
	}
	p := Default()
	p.Script.UploadJob *= 3 // longer jobs need more workers at the same load
	if w := p.WorkersAtScale(); w != 3 {
		t.Errorf("jobs three times as long at the live scale: %d workers, want 3", w)
	}
}
