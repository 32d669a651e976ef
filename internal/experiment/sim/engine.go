package sim

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// engine simulates one architecture at one scale. It is a discrete-event
// simulation whose events are the users' logins and departures (a 4-ary
// heap), the timeline's faults, the phases and the LoadWindow ticks. The
// requests in between are either routed one by one ("exact": each goes
// through the balancer's decision with real in-flight counts, needed
// wherever a per-request decision depends on load: p2c for store and
// cookie, the bounded-load spill for affinity) or, for sticky at scale,
// counted per instance as Poisson(integral of the pinned users' rates):
// the superposition of the users' Poisson request processes, exact in
// distribution, because with a sticky cookie nothing about a request's
// destination depends on the moment it is sent.
type engine struct {
	p      *model.Params
	arch   model.Arch
	exact  bool // route requests one by one
	pinned bool // the balancer pins users (sticky, affinity)
	r      model.Rand
	std    *rand.Rand // the same stream, for its ziggurat exponential
	dur    float64
	svc    float64 // service time, seconds

	users   slab
	deps    departures
	ups     departures // uploads to come, packed like departures
	jobs    jobQueue
	pop     *model.Population
	arr     *arrivals
	next    model.User // next arrival; next.Start beyond dur: none
	initial []uint64   // initial users' logins, packed like departures, sorted
	initIdx int

	n0       int // instances at the start; instance n0 joins
	up       []bool
	draining []bool
	upN      int     // instances up
	chatKeep float64 // 1 - 1/upN: the chance a chatting user is elsewhere
	chatMiss float64 // chatKeep^chatUsers: an instance has no chatting user
	cands    []int32 // up and not draining: where new users go
	hot      []hotInst

	fw  *fenwick // pinned request rate per instance
	ro  *roster  // affinity: users per instance by rate class
	tok *tokens  // affinity at scale: the same without identity
	tx  []tokExtra
	// pendMost is at least the most users yet to upload on one instance
	// (tokens), the bound of pendingUploader's rejection draw.
	pendMost int32
	active   int64 // in-flight requests of the candidates
	q        completions
	acc      []float64 // aggregate mode: integral of the rate since lastT
	lastT    []float64

	totalRate  float64 // all active users' request rate
	twoTabRate float64
	chatUsers  int
	storeDown  bool
	lastIntT   float64 // when the integrals were last brought up to date

	// Counts of the current phase kept here, folded into the meter at
	// the phase's end: the request path then touches no pointer chain.
	reqN, scriptN, downN float64

	t         float64
	events    []model.Event
	evAt      []float64 // events[i].At in seconds
	evIdx     int
	nextAt    float64 // next.Start in seconds
	phaseIdx  int
	nextTick  float64
	m         *meter
	lostCrash float64
	lostStop  float64
	routed    int64
	userEvts  int64
}

func newEngine(p *model.Params, arch model.Arch, exact, useTokens bool) *engine {
	n := p.Instances + 1
	e := &engine{
		p: p, arch: arch, exact: exact, pinned: arch.Sticky,
		r:   model.NewRand(p.Seed, model.StreamSim),
		dur: p.Duration.Seconds(), svc: p.ServiceTime.Seconds(),
		pop: p.NewPopulation(), n0: p.Instances,
		up: make([]bool, n), draining: make([]bool, n),
		hot: make([]hotInst, n),
		acc: make([]float64, n), lastT: make([]float64, n),
		fw:     newFenwick(n),
		deps:   newDepartures(p.Duration.Seconds()),
		ups:    newDepartures(p.Duration.Seconds()),
		jobs:   jobQueue{took: p.Script.UploadJob.Seconds(), perInst: p.Script.JobWorkers},
		events: p.Events(),
		m:      newMeter(p, n),
	}
	e.std = e.r.Std()
	switch {
	case arch.Spill && useTokens:
		e.tok = newTokens(n, p.Rate.Max)
		e.tx = make([]tokExtra, n)
	case arch.Spill:
		e.ro = newRoster(n, p.Rate.Max)
	}
	for i := range n {
		e.hot[i].candPos = -1
	}
	for i := range p.Instances {
		e.setUp(int32(i), true)
		e.addCand(int32(i))
	}
	e.m.startPhase(0, e.up)
	// The first window ends a whole number of windows before the join, so
	// windows after it start at the join (the fair-share rule).
	w := model.LoadWindow.Seconds()
	e.nextTick = math.Mod(e.events[0].At.Seconds(), w)
	if e.nextTick <= 0 {
		e.nextTick = w
	}
	e.initial = make([]uint64, p.Users)
	e.users.u = make([]user, p.Users, p.Users+p.Users/8)
	e.users.live = p.Users
	initialUsers(e.pop, p.Users, e.users.u, e.initial)
	slices.Sort(e.initial)
	e.arr = startArrivals(e.pop, e.dur)
	e.next = e.arr.next()
	e.nextAt = e.next.Start.Seconds()
	for _, ev := range e.events {
		e.evAt = append(e.evAt, ev.At.Seconds())
	}
	return e
}

// hotInst is what every request touches of an instance, in one place so
// that a request costs one cache line per instance it looks at.
type hotInst struct {
	inflight int64   // requests in flight, progress streams included
	candPos  int32   // index in cands, -1 when not there
	streams  int32   // progress streams open here (part of inflight)
	dead     bool    // killed: its in-flight requests died with it
	win      float64 // requests in the current window
	ph       float64 // requests in the current phase
}

// served counts k requests at instance i.
func (e *engine) served(i int32, k float64) {
	h := &e.hot[i]
	h.win += k
	h.ph += k
	e.reqN += k
	if e.storeDown {
		e.downN += k
	}
}

// foldPhase hands the phase's counts to the meter.
func (e *engine) foldPhase() {
	ph := e.m.cur
	for i := range e.hot {
		ph.perInst[i] += e.hot[i].ph
		e.hot[i].ph = 0
	}
	ph.requests += e.reqN
	ph.script += e.scriptN
	ph.downReqs += e.downN
	e.reqN, e.scriptN, e.downN = 0, 0, 0
}

func toUser(u model.User) user {
	x := user{start: float32(u.Start.Seconds()), end: float32(u.End().Seconds()), rate: float32(u.Rate), inst: -1}
	for _, f := range []struct {
		on   bool
		flag uint8
	}{{u.LogsOut, flagLogsOut}, {u.TwoTabs, flagTwoTabs}, {u.Chats, flagChats}, {u.Uploads, flagUploads}} {
		if f.on {
			x.flags |= f.flag
		}
	}
	return x
}

// What happens next, in priority order when times are equal.
const (
	kPhase = iota
	kEvent
	kTick
	kLogin
	kUpload
	kJob
	kDepart
	kArrive
	kEnd
)

func (e *engine) nextThing() (float64, int) {
	t, k := e.dur, kEnd
	consider := func(at float64, kind int) {
		if at < t || (at == t && kind < k) {
			t, k = at, kind
		}
	}
	if e.phaseIdx+1 < len(e.m.phases) {
		consider(e.m.phases[e.phaseIdx+1].start, kPhase)
	}
	if e.evIdx < len(e.events) {
		consider(e.evAt[e.evIdx], kEvent)
	}
	consider(e.nextTick, kTick)
	if e.initIdx < len(e.initial) {
		at, _ := unpackDeparture(e.initial[e.initIdx])
		consider(at, kLogin)
	}
	if k, ok := e.ups.min(); ok {
		at, _ := unpackDeparture(k)
		consider(at, kUpload)
	}
	if at, ok := e.jobs.nextEnd(); ok {
		consider(at, kJob)
	}
	if k, ok := e.deps.min(); ok {
		at, _ := unpackDeparture(k)
		consider(at, kDepart)
	}
	consider(e.nextAt, kArrive)
	return t, k
}

// run simulates the whole duration, or until ctx is done; progress is
// called once per simulated LoadWindow.
func (e *engine) run(ctx context.Context, progress func(t float64)) error {
	defer e.arr.close()
	defer e.foldPhase() // also when cancelled: keep the counts so far
	for {
		tn, kind := e.nextThing()
		if e.exact {
			if err := e.requestsUntil(ctx, tn); err != nil {
				return err
			}
		}
		e.t = tn
		switch kind {
		case kEnd:
			e.closeWindow()
			e.integrate()
			return nil
		case kPhase:
			e.integrate()
			e.flush()
			e.foldPhase()
			e.phaseIdx++
			e.m.startPhase(e.phaseIdx, e.up)
		case kEvent:
			e.flush()
			e.event(e.events[e.evIdx])
			e.evIdx++
		case kTick:
			e.closeWindow()
			e.nextTick += model.LoadWindow.Seconds()
			if progress != nil {
				progress(e.t)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		case kLogin:
			_, s := unpackDeparture(e.initial[e.initIdx])
			e.initIdx++
			if e.initIdx == len(e.initial) {
				e.initial = nil // the initial users are all in: free the list
			}
			up := -1.0
			if e.users.u[s].flags&flagUploads != 0 { // the only initial users whose upload time is needed
				u := e.pop.Initial(int(s))
				up = (u.Start + u.UploadAt).Seconds()
			}
			e.login(s, up)
		case kUpload:
			_, s := unpackDeparture(e.ups.pop())
			e.upload(s)
		case kJob:
			e.endJob()
		case kDepart:
			_, s := unpackDeparture(e.deps.pop())
			e.depart(s)
		case kArrive:
			s := e.users.add(toUser(e.next))
			up := (e.next.Start + e.next.UploadAt).Seconds()
			e.next = e.arr.next()
			e.nextAt = e.next.Start.Seconds()
			e.login(s, up)
		}
	}
}

// requestsUntil routes the requests sent before tn one by one: a Poisson
// process at the total rate (memoryless, so drawing afresh after every
// event is exact).
func (e *engine) requestsUntil(ctx context.Context, tn float64) error {
	if !(e.totalRate > 0) {
		return nil
	}
	mean := 1 / e.totalRate
	for {
		t := e.t + e.std.ExpFloat64()*mean
		if t >= tn {
			return nil
		}
		e.t = t
		e.request()
		e.routed++
		if e.routed&(1<<20-1) == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
}

func (e *engine) closeWindow() {
	e.flush()
	for i := range e.hot {
		e.m.win.counts[i] = e.hot[i].win
		e.hot[i].win = 0
	}
	e.m.closeWindow(e.t, e.up)
	if e.exact && e.pinned {
		e.fw.rebuild()
	}
	if e.tok != nil {
		e.tok.tighten()
		e.pendMost = 0
		for _, x := range e.tx {
			e.pendMost = max(e.pendMost, x.pend)
		}
	}
	e.chatMiss = math.Pow(e.chatKeep, float64(e.chatUsers)) // no drift from the running product
}

// integrate brings the time integrals (two-tab rate, chatting users and
// their fan-out) up to now, into the current phase.
func (e *engine) integrate() {
	dt := e.t - e.lastIntT
	if dt <= 0 {
		return
	}
	ph := e.m.cur
	ph.twoTabInt += e.twoTabRate * dt
	ph.chatInt += float64(e.chatUsers) * dt
	ph.chatDeliver += float64(e.chatUsers) * e.chatFanout() * dt
	e.lastIntT = e.t
}

// chatFanout is the expected number of instances with a chatting user
// (each receives every chat message once): users spread evenly.
func (e *engine) chatFanout() float64 {
	if e.upN == 0 || e.chatUsers == 0 {
		return 0
	}
	return float64(e.upN) * (1 - e.chatMiss)
}

func (e *engine) upCount() int { return e.upN }

// setUp marks instance i up or down.
func (e *engine) setUp(i int32, up bool) {
	if e.up[i] != up {
		e.integrate()
		e.up[i] = up
		if up {
			e.upN++
		} else {
			e.upN--
		}
		e.chatKeep = 1 - 1/float64(max(1, e.upN))
		e.chatMiss = math.Pow(e.chatKeep, float64(e.chatUsers))
	}
}

// login activates user s: its first request logs in (and pins it). An
// uploading user's upload comes at uploadAt if its session and the run
// last that long.
func (e *engine) login(s int32, uploadAt float64) {
	e.userEvts++
	e.integrate()
	u := &e.users.u[s]
	e.totalRate += float64(u.rate)
	if u.flags&flagTwoTabs != 0 {
		e.twoTabRate += float64(u.rate)
	}
	if u.flags&flagChats != 0 {
		e.chatUsers++
		e.chatMiss *= e.chatKeep
	}
	ph := e.m.cur
	ph.maxRate = math.Max(ph.maxRate, float64(u.rate))
	if u.flags&flagUploads != 0 {
		ph.uploads++
	}
	ph.logins++
	if e.storeDown {
		ph.downWrites++
	}
	// The class is a function of the rate alone, which never changes: it
	// is worked out once here (a logarithm) and read back at departure.
	switch {
	case e.ro != nil:
		u.class = uint8(e.ro.class(u.rate))
	case e.tok != nil:
		u.class = uint8(e.tok.class(u.rate))
	}
	if e.pinned {
		i := e.pickNew(-1)
		if e.tok != nil {
			e.tok.add(i, int(u.class), float64(u.rate))
			e.fw.add(int(i), float64(u.rate))
			e.tokUsers(i, 1, u.flags&flagUploads != 0 && uploadAt >= e.t && uploadAt < math.Min(float64(u.end), e.dur))
		} else {
			e.pin(s, i)
		}
		e.count(i)
	} else {
		e.routeUnpinned()
	}
	if end := float64(u.end); end < e.dur {
		e.deps.push(packDeparture(end, s))
	}
	if u.flags&flagUploads != 0 && uploadAt >= e.t && uploadAt < float64(u.end) && uploadAt < e.dur {
		e.ups.push(packDeparture(uploadAt, s))
	}
}

// depart ends user s's session, with a logout request if it logs out.
func (e *engine) depart(s int32) {
	e.userEvts++
	e.integrate()
	u := &e.users.u[s]
	at := u.inst // where its last request goes
	if e.tok != nil {
		at = e.tok.leave(&e.r, int(u.class))
	}
	if u.flags&flagLogsOut != 0 {
		ph := e.m.cur
		ph.logouts++
		if e.storeDown {
			ph.downWrites++
		}
		if e.arch.Sessions == model.SessionsCookie {
			ph.feed += float64(e.upCount())
		}
		switch {
		case !e.pinned:
			e.routeUnpinned()
		case at >= 0:
			e.count(at)
		}
	}
	switch {
	case e.tok != nil:
		if at >= 0 {
			e.fw.add(int(at), -e.tok.take(at, int(u.class), float64(u.rate)))
			e.tokUsers(at, -1, false)
		}
	case e.pinned:
		e.unpin(s)
	}
	e.totalRate -= float64(u.rate)
	if u.flags&flagTwoTabs != 0 {
		e.twoTabRate -= float64(u.rate)
	}
	if u.flags&flagChats != 0 {
		e.chatUsers--
		if e.chatKeep > 0 {
			e.chatMiss /= e.chatKeep
		}
	}
	if e.users.live == 1 { // the last one: clear rounding leftovers
		e.totalRate, e.twoTabRate = 0, 0
	}
	e.users.remove(s)
}

// result is what one run measured.
type result struct {
	arch      string
	instances int
	users     int
	exact     bool
	phases    []*phaseStats
	series    []point
	fairT     float64 // -1: not reached
	lostCrash float64
	lostStop  float64
	routed    int64
	userEvts  int64
	elapsed   time.Duration
	complete  bool
	p         model.Params

	// jobsWaiting is the uploads' jobs still waiting for a worker at the
	// end; jobsQueued, all that were queued.
	jobsWaiting, jobsQueued float64
}

func (e *engine) result(elapsed time.Duration, complete bool) *result {
	// Two tabs: with state in the client, each concurrent add-to-cart pair
	// loses one item (the browser keeps the last cookie).
	if e.arch.Sessions == model.SessionsCookie {
		for _, ph := range e.m.phases {
			ph.cartLost += float64(e.r.Poisson(ph.twoTabInt * e.p.Script.AddToCart))
		}
	}
	return &result{
		arch: e.arch.Name, instances: e.n0, users: e.p.Users, exact: e.exact,
		phases: e.m.phases, series: e.m.series, fairT: e.m.fairT,
		lostCrash: e.lostCrash, lostStop: e.lostStop,
		routed: e.routed, userEvts: e.userEvts, elapsed: elapsed, complete: complete, p: *e.p,
		jobsWaiting: float64(e.jobs.waiting.n + e.jobs.overN), jobsQueued: float64(e.jobs.queued),
	}
}
