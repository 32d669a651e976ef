package model

import (
	"time"
)

// User is one simulated user and everything random about it, drawn from
// its own stream (see Population).
type User struct {
	// ID is unique in the run: 0..Users-1 are the users active at the
	// start, later arrivals count on from Users.
	ID uint64
	// Start is when the user logs in (its first request), from the run's
	// start.
	Start time.Duration
	// Length is how long the session lasts from Start; for a user active
	// at the start it is the remaining part of a session in progress.
	Length time.Duration
	// Rate is the user's requests per second.
	Rate float64
	// LogsOut: the session ends with a logout request.
	LogsOut bool
	// Uploads: the user uploads one file, UploadAt after Start (if the
	// session lasts that long), and follows its progress.
	Uploads  bool
	UploadAt time.Duration
	// Chats: the user holds the chat WebSocket for the whole session.
	Chats bool
	// TwoTabs: the user's add-to-cart steps are two concurrent requests.
	TwoTabs bool
}

// End is when the session ends.
func (u User) End() time.Duration { return u.Start + u.Length }

// Population produces the run's users in order: first the Users users
// active at the start (Initial), then arrivals (Next). Not safe for
// concurrent use.
type Population struct {
	p       Params
	session BoundedPareto
	rate    TruncLogNormal
	arr     Rand
	meanGap float64 // seconds between arrivals
	t       float64 // last arrival, seconds
	nextID  uint64
}

// NewPopulation starts the population of a run of p.
func (p *Params) NewPopulation() *Population {
	return &Population{
		p:       *p,
		session: p.SessionLaw(),
		rate:    p.RateLaw(),
		arr:     NewRand(p.Seed, StreamArrivals),
		meanGap: 1 / p.ArrivalRate(),
		nextID:  uint64(p.Users),
	}
}

// Initial returns user i (0 <= i < Users) of those active when the run
// starts: it logs in at a uniform instant of the warm-up and stays for the
// remaining part of a session in progress (SampleResidual). The result
// depends only on the seed and i.
func (pop *Population) Initial(i int) User {
	r := NewRand(pop.p.Seed, StreamUsers|uint64(i))
	start := r.Float64() * pop.p.Warmup.Seconds()
	length := pop.session.SampleResidual(&r)
	return pop.finish(&r, uint64(i), start, length)
}

// Next returns the next user to arrive; arrivals are a Poisson process of
// rate ArrivalRate from the run's start. Callers stop when User.Start
// passes the duration.
func (pop *Population) Next() User {
	pop.t += pop.arr.Exp(pop.meanGap)
	id := pop.nextID
	pop.nextID++
	r := NewRand(pop.p.Seed, StreamUsers|id)
	length := pop.session.Sample(&r)
	return pop.finish(&r, id, pop.t, length)
}

// finish draws the attributes shared by both kinds of user, always all of
// them and in the same order, so a user's draws never depend on which
// attributes happen to be on.
func (pop *Population) finish(r *Rand, id uint64, start, length float64) User {
	s := pop.p.Script
	u := User{
		ID:     id,
		Start:  seconds(start),
		Length: seconds(length),
		Rate:   pop.rate.Sample(r),
	}
	u.LogsOut = r.Bernoulli(s.Logout)
	u.Uploads = r.Bernoulli(s.Upload)
	u.UploadAt = seconds(r.Float64() * length)
	u.Chats = r.Bernoulli(s.Chat)
	u.TwoTabs = r.Bernoulli(s.TwoTabs)
	return u
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Action is one kind of request of the script.
type Action int

// The script's requests.
const (
	Login     Action = iota // first request: log in (a new session)
	Browse                  // a product page: reads the session
	AddToCart               // changes the cart
	ViewCart                // reads the cart
	Upload                  // uploads a file (a job), then follows its progress
	Logout                  // ends the session
)

var actionNames = [...]string{"login", "browse", "add_to_cart", "view_cart", "upload", "logout"}

func (a Action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "action?"
}

// Step is one request of a user's script.
type Step struct {
	// At is when to send it, from the run's start. Load is open-loop: send
	// at At even if earlier requests are still waiting.
	At     time.Duration
	Action Action
	// Concurrent: send this request twice at once, from two tabs sharing
	// the cookie jar (only for AddToCart of a TwoTabs user).
	Concurrent bool
}

// UserScript is a user's requests in order. It draws from the user's own
// streams, so it is the same whoever runs it and whenever.
type UserScript struct {
	u        User
	mix      scriptMix
	r        Rand
	t        time.Duration
	loggedIn bool
	uploaded bool
	done     bool
}

type scriptMix struct{ browse, add float64 }

// Salts that separate a user's script and chat streams from its
// attribute stream (same stream number, different seed).
const (
	saltScript = 0x5c1217
	saltChat   = 0xc4a7
)

// NewUserScript returns u's script.
func (p *Params) NewUserScript(u User) *UserScript {
	return &UserScript{
		u:        u,
		mix:      scriptMix{browse: p.Script.Browse, add: p.Script.Browse + p.Script.AddToCart},
		r:        NewRand(p.Seed^saltScript, StreamUsers|u.ID),
		t:        u.Start,
		uploaded: !u.Uploads,
	}
}

// Next returns the next request, or false when the session is over.
// Requests after the login are a Poisson process at the user's rate; the
// upload, if any, comes at its time; the logout, if any, at the end.
func (s *UserScript) Next() (Step, bool) {
	if s.done {
		return Step{}, false
	}
	if !s.loggedIn {
		s.loggedIn = true
		return Step{At: s.u.Start, Action: Login}, true
	}
	next := s.t + seconds(s.r.Exp(1/s.u.Rate))
	x := s.r.Float64() // always drawn: the sequence does not depend on branches
	if up := s.u.Start + s.u.UploadAt; !s.uploaded && up < s.u.End() && up <= next {
		s.uploaded = true
		s.t = up
		return Step{At: up, Action: Upload}, true
	}
	if next >= s.u.End() {
		s.done = true
		if s.u.LogsOut {
			return Step{At: s.u.End(), Action: Logout}, true
		}
		return Step{}, false
	}
	s.t = next
	switch {
	case x < s.mix.browse:
		return Step{At: next, Action: Browse}, true
	case x < s.mix.add:
		return Step{At: next, Action: AddToCart, Concurrent: s.u.TwoTabs}, true
	default:
		return Step{At: next, Action: ViewCart}, true
	}
}

// ChatTimes returns a function giving the instants at which u sends its
// chat messages, in order, false once the session is over (at once if u
// does not chat).
func (p *Params) ChatTimes(u User) func() (time.Duration, bool) {
	r := NewRand(p.Seed^saltChat, StreamUsers|u.ID)
	t, rate := u.Start, p.Script.ChatRate
	return func() (time.Duration, bool) {
		if !u.Chats || rate <= 0 {
			return 0, false
		}
		t += seconds(r.Exp(1 / rate))
		if t >= u.End() {
			return 0, false
		}
		return t, true
	}
}
