package sim

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// Range is an inclusive range of whole numbers from a flag such as
// --instances 3..10000; Min == Max is a single value.
type Range struct {
	Min, Max int
}

// The ranges `--simulate` accepts (issue 12: 3..10000 instances, 1e3..1e7
// users), and the defaults.
var (
	InstancesLimit   = Range{2, 10_000}
	UsersLimit       = Range{1, 10_000_000}
	DefaultInstances = Range{3, 10_000}
	DefaultUsers     = Range{1_000, 10_000_000}
)

// maxRangeText bounds what ParseRange reads: flags are short.
const maxRangeText = 64

// ParseRange parses a flag value "N" or "MIN..MAX" of whole numbers, which
// may be written in e-notation ("1e3..1e7") or with underscores
// ("10_000"). Errors name the flag: "--users: ...".
func ParseRange(flag, s string) (Range, error) {
	name := "--" + strings.TrimLeft(flag, "-")
	bad := func(why string) (Range, error) {
		return Range{}, fmt.Errorf("%s: %s (want N or MIN..MAX, like 3..10000 or 1e3..1e7)", name, why)
	}
	if len(s) > maxRangeText {
		return bad(fmt.Sprintf("value longer than %d characters", maxRangeText))
	}
	s = strings.TrimSpace(s)
	lo, hi, isRange := strings.Cut(s, "..")
	a, err := parseWhole(lo)
	if err != nil {
		return bad(fmt.Sprintf("%q: %v", lo, err))
	}
	b := a
	if isRange {
		if b, err = parseWhole(hi); err != nil {
			return bad(fmt.Sprintf("%q: %v", hi, err))
		}
	}
	if a > b {
		return bad(fmt.Sprintf("%d..%d runs backwards", a, b))
	}
	return Range{Min: a, Max: b}, nil
}

func parseWhole(s string) (int, error) {
	s = strings.ReplaceAll(strings.TrimSpace(s), "_", "")
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("not a number")
	}
	if f != math.Trunc(f) {
		return 0, fmt.Errorf("not a whole number")
	}
	if f < 1 || f > 1e9 {
		return 0, fmt.Errorf("out of range 1..1e9")
	}
	return int(f), nil
}

// String writes the range as ParseRange reads it.
func (r Range) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(r.Min)
	}
	return fmt.Sprintf("%d..%d", r.Min, r.Max)
}

func (r Range) within(lim Range) bool { return r.Min >= lim.Min && r.Max <= lim.Max }

// Config is one `--simulate` run. Its zero value simulates all four
// architectures from 3 to 10,000 instances and 1e3 to 1e7 users with
// model.Default(), without calibration.
type Config struct {
	// Model is the workload (model.Default() when Users is zero). Users
	// and Instances are set by each sweep point; the rest is kept.
	Model model.Params
	// Archs names the architectures; empty means all four.
	Archs []string
	// Instances and Users are the sweep (zero: the defaults). Points are
	// the 1-3-10 ladder between Min and Max, plus Min and Max themselves;
	// when both vary, users grow with instances along the diagonal (log
	// scale), so users per instance stays within a few times of each other.
	Instances, Users Range
	// Live is a live run's results for calibration (LoadLive); nil: the
	// report says calibration was not done.
	Live *Live
	// Replications is how many seeds the calibration simulates at the
	// live run's parameters to get the model's spread [100].
	Replications int
	// TheoryMaxBins caps the theory checks' largest placement [1e6].
	TheoryMaxBins int
	// ExactLimit: sticky routes requests one by one when a run would send
	// at most this many, else counts them per instance (aggregate) [2e7].
	// Negative: always aggregate. The other architectures always route
	// one by one.
	ExactLimit float64
}

func (c *Config) defaults() error {
	if c.Model.Users == 0 {
		c.Model = model.Default()
	}
	if len(c.Archs) == 0 {
		for _, a := range model.Archs {
			c.Archs = append(c.Archs, a.Name)
		}
	}
	for _, name := range c.Archs {
		if _, err := model.ArchNamed(name); err != nil {
			return fmt.Errorf("--arch: %w", err)
		}
	}
	if c.Instances == (Range{}) {
		c.Instances = DefaultInstances
	}
	if c.Users == (Range{}) {
		c.Users = DefaultUsers
	}
	if !c.Instances.within(InstancesLimit) {
		return fmt.Errorf("--instances: %v is outside %v", c.Instances, InstancesLimit)
	}
	if !c.Users.within(UsersLimit) {
		return fmt.Errorf("--users: %v is outside %v", c.Users, UsersLimit)
	}
	if c.Replications <= 0 {
		c.Replications = 100
	}
	if c.TheoryMaxBins <= 0 {
		c.TheoryMaxBins = 1_000_000
	}
	if c.ExactLimit == 0 {
		c.ExactLimit = 2e7
	}
	p := c.Model
	p.Users, p.Instances = c.Users.Max, c.Instances.Max
	if err := p.Validate(); err != nil {
		return err
	}
	if p.Duration.Hours() > 24 {
		return fmt.Errorf("--duration: the simulation runs at most 24h of simulated time")
	}
	return nil
}

// Point is one scale of the sweep.
type Point struct {
	Instances, Users int
}

// ladder is 1, 3, 10, 30, ... between lo and hi, with lo and hi.
func ladder(r Range) []int {
	out := []int{r.Min}
	for v := 1.0; v < float64(r.Max); v *= 10 {
		for _, x := range []int{int(v), int(3 * v)} {
			if x > r.Min && x < r.Max {
				out = append(out, x)
			}
		}
	}
	if r.Max != r.Min {
		out = append(out, r.Max)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Points lists the sweep in increasing scale.
func (c *Config) Points() []Point {
	inst, users := c.Instances, c.Users
	if inst == (Range{}) {
		inst = DefaultInstances
	}
	if users == (Range{}) {
		users = DefaultUsers
	}
	var out []Point
	switch {
	case inst.Min == inst.Max:
		for _, u := range ladder(users) {
			out = append(out, Point{inst.Min, u})
		}
	default:
		// Users follow instances along the diagonal in log scale.
		span := math.Log(float64(inst.Max) / float64(inst.Min))
		for _, n := range ladder(inst) {
			f := math.Log(float64(n)/float64(inst.Min)) / span
			u := float64(users.Min) * math.Pow(float64(users.Max)/float64(users.Min), f)
			out = append(out, Point{n, int(math.Round(u))})
		}
	}
	return out
}
