package lb

import (
	"strconv"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

// defaultEjection is health.passive.ejection's default; Validate compares
// max_ejection with it when ejection is not set.
const defaultEjection = 30 * time.Second

// ApplyDefaults sets every zero field that has a default (the values in
// brackets in the field comments) to it, and leaves the others alone, so
// applying it twice changes nothing. It checks nothing: Validate does,
// before or after.
func (c *Config) ApplyDefaults() {
	setDefault(&c.Listen, ":8080")
	setDefault(&c.Admin.Listen, "127.0.0.1:9090")
	for i := range c.Backends {
		b := &c.Backends[i]
		setDefault(&b.Name, b.nameOrDefault(i))
		setDefault(&b.Weight, 1)
	}

	c.Policy.applyDefaults()

	s := &c.Sticky
	setDefault(&s.Mode, "cookie")
	setDefault(&s.Cookie, DefaultCookieName)
	setDefault(&s.TTL, max(24*time.Hour, s.MaxAge))

	a := &c.Health.Active
	setDefault(&a.Interval, 5*time.Second)
	setDefault(&a.Timeout, 2*time.Second)
	setDefault(&a.Rise, 2)
	setDefault(&a.Fall, 3)
	p := &c.Health.Passive
	setDefault(&p.Failures, 5)
	setDefault(&p.Ejection, defaultEjection)
	setDefault(&p.MaxEjection, max(5*time.Minute, p.Ejection))
	setDefault(&p.MaxEjectedPercent, 50)
	if len(p.Statuses) == 0 {
		p.Statuses = []int{500, 502, 504}
	}
	if c.Health.PanicThreshold == nil {
		pct := 50
		c.Health.PanicThreshold = &pct
	}

	if len(c.Retries.Methods) == 0 {
		c.Retries.Methods = proxy.DefaultRetryMethods()
	}
	setDefault(&c.Retries.BodyBytes, 64<<10)
	setDefault(&c.WebSocket.CloseWindow, 10*time.Second)
	setDefault(&c.Drain.Idle, 5*time.Minute)
	setDefault(&c.Drain.Deadline, time.Hour)
	setDefault(&c.Shutdown.Grace, 30*time.Second)
	setDefault(&c.Log.Level, "info")
	setDefault(&c.Log.Format, "text")
	c.applyDeployDefaults()
}

func (p *PolicyConfig) applyDefaults() {
	setDefault(&p.Name, PolicyRoundRobin)
	setDefault(&p.Key, "ip")
	setDefault(&p.Factor, DefaultBalanceFactor)
}

// defaultBackendName names the i-th backend (from 0) when it has no name.
func defaultBackendName(i int) string { return "b" + strconv.Itoa(i+1) }

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}
