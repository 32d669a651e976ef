package model

import (
	"fmt"

	"github.com/unstuck-dev/unstuck/lb"
)

// Where an architecture keeps the session.
const (
	SessionsMemory = "memory" // in the instance's memory: lost with it
	SessionsStore  = "store"  // in the shared store
	SessionsCookie = "cookie" // sealed in the client's cookie
)

// Arch is one of the compared architectures and how the balancer and the
// instances are configured for it. All four use the same policy for
// requests no cookie pins, so the only variable is where state lives and
// whether users are pinned.
type Arch struct {
	Name string
	// Sticky: the balancer pins each user with its signed cookie at the
	// first request.
	Sticky bool
	// Spill is lb's sticky.spill: a pinned user is re-pinned elsewhere
	// when its instance carries more than Factor x the mean in-flight load,
	// or is draining.
	Spill bool
	// Factor is c of the bounded-load spill.
	Factor float64
	// Sessions is where the session lives (SessionsMemory, ...).
	Sessions string
	// NearCache: instances keep sessions they served and read the store
	// only when the cookie's version is newer than their copy.
	NearCache bool
	// Policy is the lb policy for requests no cookie pins.
	Policy string
}

// The four architectures of the experiment.
var (
	Sticky   = Arch{Name: "sticky", Sticky: true, Sessions: SessionsMemory, Policy: "p2c"}
	Store    = Arch{Name: "store", Sessions: SessionsStore, Policy: "p2c"}
	Affinity = Arch{Name: "affinity", Sticky: true, Spill: true, Factor: lb.DefaultBalanceFactor,
		Sessions: SessionsStore, NearCache: true, Policy: "p2c"}
	Cookie = Arch{Name: "cookie", Sessions: SessionsCookie, Policy: "p2c"}
)

// Archs lists the architectures in report order.
var Archs = []Arch{Sticky, Store, Affinity, Cookie}

// ArchNamed returns the architecture called name.
func ArchNamed(name string) (Arch, error) {
	for _, a := range Archs {
		if a.Name == name {
			return a, nil
		}
	}
	return Arch{}, fmt.Errorf("model: no architecture %q (want sticky, store, affinity or cookie)", name)
}

// SessionOps is what one request costs the session store, in round trips.
type SessionOps struct {
	Reads, Writes int
}

// Ops is the session-store cost of a request of kind act. cached says the
// instance's near cache holds the session at the cookie's version (only
// matters with NearCache). For SessionsCookie the only store writes are
// revocations (a logout), which the revocation feed then delivers to every
// instance: that fan-out is counted by the caller, not here.
//
// These are the round trips of the session package: a login creates the
// session (one write, nothing to read yet); every other request loads it
// once (unless cached); add-to-cart commits one compare-and-set; logout
// writes a tombstone. Idle-deadline touches are not counted.
func (a Arch) Ops(act Action, cached bool) SessionOps {
	switch a.Sessions {
	case SessionsStore:
		var o SessionOps
		if act != Login && !(a.NearCache && cached) {
			o.Reads = 1
		}
		if act == Login || act == AddToCart || act == Logout {
			o.Writes = 1
		}
		return o
	case SessionsCookie:
		if act == Logout {
			return SessionOps{Writes: 1}
		}
	}
	return SessionOps{}
}

// Backplane costs, the same for every architecture (chat and jobs use the
// shared store even for sticky).
const (
	// JobOps is the store round trips of one upload's job: payload put,
	// record create, enqueue, claim, running, done, payload delete, ack;
	// progress updates come on top (ProgressOps).
	JobOps = 8
	// ProgressOps is the progress updates a job writes.
	ProgressOps = 10
	// ChatPublishOps is one chat message's publish (stream append); each
	// instance with a chatting user then receives it once (fan-out).
	ChatPublishOps = 1
)
