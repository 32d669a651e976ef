package model

import (
	"fmt"
	"strings"
)

// Param is one line of the model's description in a report.
type Param struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	Meaning string `json:"meaning"`
}

// Describe states every parameter of p, and the figures derived from them,
// for a report: the single place a reader learns the model.
func (p *Params) Describe() []Param {
	sl, rl := p.SessionLaw(), p.RateLaw()
	s := p.Script
	var phases []string
	for _, ph := range p.Timeline.Phases {
		phases = append(phases, fmt.Sprintf("%s %.0f%%", ph.Name, 100*ph.Share))
	}
	// users an instance one worker serves at the live utilisation
	usersPerWorker := LiveJobUtilisation() * float64(p.Users) / (p.UploadRate() * s.UploadJob.Seconds())
	return []Param{
		{"seed", fmt.Sprint(p.Seed), "every random draw derives from it"},
		{"users", fmt.Sprint(p.Users), "mean concurrently active users"},
		{"instances", fmt.Sprint(p.Instances), "app instances at the start"},
		{"duration", p.Duration.String(), "the whole timeline"},
		{"arrivals", fmt.Sprintf("%.4g users/s", p.ArrivalRate()), "Poisson; users / mean session (Little's law)"},
		{"session length", fmt.Sprintf("bounded Pareto, alpha %.3g, mean %v, min %.3gs, max %v",
			p.Session.Alpha, p.Session.Mean, sl.Min, p.Session.Max), "heavy tail: a few users stay very long"},
		{"request rate", fmt.Sprintf("log-normal, mean %.3g/s, sigma %.3g (mu %.3g), truncated at %.3g/s",
			p.Rate.Mean, p.Rate.Sigma, rl.Mu, p.Rate.Max), "per user; Poisson requests within a session"},
		{"offered load", fmt.Sprintf("%.4g requests/s", p.RequestRate()), "users x mean rate, open loop"},
		{"script", fmt.Sprintf("login, then browse %.0f%% / add to cart %.0f%% / view cart %.0f%%; logout at the end %.0f%%",
			100*s.Browse, 100*s.AddToCart, 100*s.ViewCart, 100*s.Logout), "per request after the login"},
		{"uploads", fmt.Sprintf("%.0f%% of users, one file each (%.4g/s); its job takes %v on a worker, after waiting in one FIFO queue for a free one", 100*s.Upload, p.UploadRate(), s.UploadJob),
			"progress followed to the end over one stream, in flight at the balancer until the job ends"},
		{"workers per instance", fmt.Sprintf("%d at the live run's scale (job utilisation %.2f); in the sweep the fewest that keep it at most %.2f, never fewer than %d: ceil(uploads/s per instance x %v / %.2f), here ceil(users per instance / %.4g)",
			s.JobWorkers, p.JobUtilisation(s.JobWorkers), LiveJobUtilisation(), s.JobWorkers, s.UploadJob, LiveJobUtilisation(), usersPerWorker),
			"provisioned in proportion to load, as an operator would: with the workers fixed, a queue loaded past 1 grows for the whole run and its streams swamp the balancer's in-flight counts, measuring the queue, not the architecture"},
		{"chat", fmt.Sprintf("%.0f%% of users, %.3g messages/s each", 100*s.Chat, s.ChatRate), "one WebSocket per chatting user, one shop channel"},
		{"two tabs", fmt.Sprintf("%.0f%% of users", 100*s.TwoTabs), "their add-to-cart is two concurrent requests"},
		{"service time", p.ServiceTime.String(), "time a request is in flight (the balancer's load signal)"},
		{"phases", strings.Join(phases, ", "), "instance n joins at scale_out; 0 drained then stopped; 1 killed"},
		{"drain", fmt.Sprintf("%.0f%% of maintenance, then stop", 100*p.Timeline.DrainShare), ""},
		{"store downtime", p.Timeline.StoreDowntime.String(), "at the start of store_restart"},
		{"spill factor c", fmt.Sprint(Affinity.Factor), "affinity: lb sticky.spill bound"},
		{"policy", Store.Policy, "for every request no cookie pins, in every architecture"},
	}
}
