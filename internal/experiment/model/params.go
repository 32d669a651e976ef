// Package model is the workload of `unstuck experiment`: who the simulated
// users are, what they do, and the timeline of faults, in one place, so the
// live run (real processes and sockets) and the simulation (`--simulate`,
// package sim) run the same model and their figures can be compared.
//
// The model in one paragraph: Users is the mean number of users active at
// once. Users already active at the start are drawn from the stationary
// state (their remaining session from the equilibrium law of the session
// length); new users then arrive as a Poisson process of rate
// Users / E[session] (Little's law), so the population stays near Users.
// A session's length is bounded Pareto (heavy tail: a few users stay for
// very long). Each user has its own request rate, a truncated log-normal
// (heavy tail: a few users are very active); within a session, requests are
// a Poisson process at that rate. The first request logs in; the others
// browse, add to the cart or view it; some users upload a file, some hold
// the chat WebSocket, some add to the cart from two tabs at once; about
// half log out at the end. The timeline is steady, scale_out, maintenance,
// crash, store_restart, recovery (see Timeline).
//
// Time is compressed about twenty-fold against a real shop (a 20 s mean
// session with a request a second instead of minutes with a page every
// ten seconds) so that a one-minute run sees the population turn over;
// what stickiness depends on, requests per session and the spread of
// rates and lengths, is kept.
//
// Everything random comes from Rand streams derived from Params.Seed; a
// user's attributes and script come from its own stream keyed by its id,
// so they do not depend on the order in which a generator (or a goroutine
// per user) draws them.
package model

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Params is the whole workload model. Start from Default or Quick and
// change fields; Validate says what is wrong with a field by its name.
type Params struct {
	// Seed makes a run reproducible: same Seed, same users, same scripts.
	Seed uint64
	// Users is the mean number of concurrently active users.
	Users int
	// Instances is the number of app instances at the start.
	Instances int
	// Duration is the whole timeline, all phases.
	Duration time.Duration
	// Warmup spreads the first requests of the users active at the start
	// uniformly over this long, so the run does not open with one burst.
	Warmup time.Duration

	// Session is how long a user stays: bounded Pareto.
	Session SessionLength
	// Rate is each user's request rate: truncated log-normal.
	Rate RequestRate
	// Script is what users do.
	Script Script
	// ServiceTime is how long a request is in flight at the balancer (its
	// latency). The balancer's least-loaded policies and the bounded-load
	// spill compare in-flight counts, which are about rate x ServiceTime.
	// The live run measures it; the simulation takes it from here.
	ServiceTime time.Duration
	// Timeline is the sequence of phases and their faults.
	Timeline Timeline
}

// SessionLength is a bounded Pareto law stated by its mean.
type SessionLength struct {
	Alpha float64       // tail shape; below 2 the variance is huge
	Mean  time.Duration // exact mean (the minimum is derived from it)
	Max   time.Duration // cap
}

// RequestRate is a truncated log-normal law of requests per second stated
// by its mean.
type RequestRate struct {
	Mean  float64 // exact mean in requests/s (after truncation)
	Sigma float64 // shape: 1 makes the top 1% of users ~10x the median
	Max   float64 // cap in requests/s
}

// Script is the mix of what users do after logging in.
type Script struct {
	// Browse, AddToCart and ViewCart are the probabilities of each
	// request after the login; they sum to 1.
	Browse, AddToCart, ViewCart float64
	// Logout is the probability that a session ends with a logout
	// request (the others just stop, as most real users do).
	Logout float64
	// Upload is the share of users who upload one file, at a uniformly
	// random point of their session, and follow its progress to the end
	// (one Server-Sent Events stream).
	Upload float64
	// UploadJob is how long a worker takes over an upload's file job once
	// it has claimed it: the live app's 20 steps of --job-delay (the live
	// run passes 100ms). The progress stream stays open, and so counts as
	// a request in flight at the balancer, until the job ends, queueing
	// included: that is what least-loaded policies see of uploads.
	UploadJob time.Duration
	// JobWorkers is how many jobs each instance works on at once in the
	// live run (jobs.Config.Concurrency, 1 in the app); jobs wait in one
	// shared FIFO queue for a free worker. The simulation's sweep
	// provisions more at larger loads per instance (WorkersAtScale).
	JobWorkers int
	// Chat is the share of users who hold the chat WebSocket for their
	// whole session; each sends messages at ChatRate per second.
	Chat     float64
	ChatRate float64
	// TwoTabs is the share of users who add to the cart from two tabs at
	// once: each of their add-to-cart steps is two concurrent requests with
	// the same cookies. Designs that keep state in the client lose one of
	// the two items (the browser keeps the last cookie).
	TwoTabs float64
}

// AddQtyMax is the most of one product a user adds in one add-to-cart
// step: the live users add 1 to AddQtyMax of it, uniformly, and a two-tab
// user adds one from each tab.
const AddQtyMax = 3

// ItemsPerAdd is the mean number of items one add-to-cart step puts in
// the cart: (1 + AddQtyMax) / 2, and two for a two-tab user as well. A
// lost session loses its cart, so the items lost per session follow it.
const ItemsPerAdd = (1 + AddQtyMax) / 2.0

// Default is the model of a default run: meaningful in a few minutes on
// two cores for all four architectures.
func Default() Params {
	return Params{
		Seed:      1,
		Users:     300,
		Instances: 3,
		Duration:  60 * time.Second,
		Warmup:    time.Second,
		Session:   SessionLength{Alpha: 1.5, Mean: 20 * time.Second, Max: 10 * time.Minute},
		Rate:      RequestRate{Mean: 1, Sigma: 1, Max: 20},
		Script: Script{
			Browse: 0.6, AddToCart: 0.25, ViewCart: 0.15,
			Logout: 0.5, Upload: 0.1, Chat: 0.2, ChatRate: 0.2, TwoTabs: 0.1,
			UploadJob: 2 * time.Second, JobWorkers: 1,
		},
		ServiceTime: 5 * time.Millisecond,
		Timeline:    DefaultTimeline(),
	}
}

// Quick is the model for `--quick`: four architectures in under a minute.
// Sessions are shorter in proportion, so the population still turns over.
func Quick() Params {
	p := Default()
	p.Users = 100
	p.Duration = 10 * time.Second
	p.Warmup = 500 * time.Millisecond
	p.Session = SessionLength{Alpha: 1.5, Mean: 4 * time.Second, Max: 2 * time.Minute}
	p.Timeline.StoreDowntime = 500 * time.Millisecond
	return p
}

// Limits on Params, so a typo cannot ask for a year-long run or a billion
// users; the simulation's flags have their own, narrower ranges.
const (
	MaxUsers     = 100_000_000
	MaxInstances = 100_000
	MaxDuration  = 240 * time.Hour
)

// Validate reports the first field that is out of range, by its name.
func (p *Params) Validate() error {
	type check struct {
		ok    bool
		field string
		want  string
	}
	t := p.Timeline
	checks := []check{
		{p.Users >= 1 && p.Users <= MaxUsers, "Users", fmt.Sprintf("1..%d", MaxUsers)},
		{p.Instances >= 2 && p.Instances <= MaxInstances, "Instances", fmt.Sprintf("2..%d (one is drained and one crashes)", MaxInstances)},
		{p.Duration > 0 && p.Duration <= MaxDuration, "Duration", "above 0 and at most 240h"},
		{p.Warmup >= 0 && p.Warmup <= p.Duration, "Warmup", "0..Duration"},
		{p.Session.Alpha > 0 && p.Session.Alpha <= 10, "Session.Alpha", "in (0, 10]"},
		{p.Session.Mean > 0 && p.Session.Mean < p.Session.Max, "Session.Mean", "above 0 and below Session.Max"},
		{p.Session.Max <= MaxDuration, "Session.Max", "at most 240h"},
		{p.Rate.Mean > 0 && p.Rate.Mean < p.Rate.Max, "Rate.Mean", "above 0 and below Rate.Max"},
		{p.Rate.Sigma > 0 && p.Rate.Sigma <= 4, "Rate.Sigma", "in (0, 4]"},
		{p.Rate.Max <= 1e6, "Rate.Max", "at most 1e6 requests/s"},
		{prob(p.Script.Browse) && prob(p.Script.AddToCart) && prob(p.Script.ViewCart) &&
			math.Abs(p.Script.Browse+p.Script.AddToCart+p.Script.ViewCart-1) < 1e-9,
			"Script.Browse/AddToCart/ViewCart", "probabilities summing to 1"},
		{prob(p.Script.Logout), "Script.Logout", "a probability"},
		{prob(p.Script.Upload), "Script.Upload", "a probability"},
		{prob(p.Script.Chat), "Script.Chat", "a probability"},
		{p.Script.ChatRate >= 0 && p.Script.ChatRate <= 1e3, "Script.ChatRate", "0..1000 per second"},
		{prob(p.Script.TwoTabs), "Script.TwoTabs", "a probability"},
		{p.Script.UploadJob >= 0 && p.Script.UploadJob <= time.Hour, "Script.UploadJob", "0..1h"},
		{p.Script.JobWorkers >= 1 && p.Script.JobWorkers <= MaxJobWorkers, "Script.JobWorkers", fmt.Sprintf("1..%d", MaxJobWorkers)},
		{p.ServiceTime > 0 && p.ServiceTime <= time.Minute, "ServiceTime", "above 0 and at most 1m"},
		{t.DrainShare > 0 && t.DrainShare < 1, "Timeline.DrainShare", "in (0, 1)"},
		{t.StoreDowntime >= 0, "Timeline.StoreDowntime", "not negative"},
	}
	for _, c := range checks {
		if !c.ok {
			return fmt.Errorf("model: %s must be %s", c.field, c.want)
		}
	}
	if err := t.validate(); err != nil {
		return err
	}
	if d := t.span(p.Duration, StoreRestart); t.StoreDowntime > d.End-d.Start {
		return errors.New("model: Timeline.StoreDowntime must fit in the store_restart phase")
	}
	return nil
}

func prob(x float64) bool { return x >= 0 && x <= 1 }

// SessionLaw is the session length law in seconds.
func (p *Params) SessionLaw() BoundedPareto {
	return NewBoundedPareto(p.Session.Alpha, p.Session.Mean.Seconds(), p.Session.Max.Seconds())
}

// RateLaw is the per-user request rate law in requests per second.
func (p *Params) RateLaw() TruncLogNormal {
	return NewTruncLogNormal(p.Rate.Mean, p.Rate.Sigma, p.Rate.Max)
}

// ArrivalRate is the users arriving per second in steady state: Users
// over the mean session length (Little's law).
func (p *Params) ArrivalRate() float64 { return float64(p.Users) / p.Session.Mean.Seconds() }

// RequestRate is the mean total requests per second in steady state.
func (p *Params) RequestRate() float64 { return float64(p.Users) * p.Rate.Mean }

// UploadRate is the uploads per second in steady state: users arriving
// per second (ArrivalRate) times the share who upload, each once.
func (p *Params) UploadRate() float64 { return p.ArrivalRate() * p.Script.Upload }

// JobUtilisation is the share of the job workers' time the uploads keep
// busy in steady state with workers per instance: uploads per second x
// UploadJob / (Instances x workers). At or above 1 the queue does not
// settle: it grows for as long as the run lasts.
func (p *Params) JobUtilisation(workers int) float64 {
	return p.UploadRate() * p.Script.UploadJob.Seconds() / float64(p.Instances*max(workers, 1))
}

// LiveJobUtilisation is the job workers' utilisation of the live run as
// Default() provisions it (300 users on 3 instances, one worker each:
// 1.5 uploads/s x 2 s / 3 workers = 1.0): the level at which the
// simulation is calibrated against the live run.
func LiveJobUtilisation() float64 {
	d := Default()
	return d.JobUtilisation(d.Script.JobWorkers)
}

// WorkersAtScale is how many job workers each instance runs at p's scale
// when provisioned as an operator would: the fewest that keep the workers'
// utilisation (JobUtilisation) no higher than the live run's
// (LiveJobUtilisation), and never fewer than JobWorkers. At the live
// run's scale that is JobWorkers (one). With the default model it is
// ceil(users per instance / 100): ten at 1,000 users an instance. A queue
// provisioned for fewer users per instance than it serves grows without
// bound, and the progress streams waiting in it then outweigh every other
// request in the balancer's in-flight counts: a simulation would measure
// the queue, not the architecture.
func (p *Params) WorkersAtScale() int {
	need := p.JobUtilisation(1) / LiveJobUtilisation()
	// The tolerance keeps an exact multiple (1.0 at the live scale) from
	// rounding up on floating point error.
	w := int(math.Ceil(need - 1e-9))
	return min(max(w, p.Script.JobWorkers), MaxJobWorkers)
}

// MaxJobWorkers bounds JobWorkers and WorkersAtScale.
const MaxJobWorkers = 100_000
