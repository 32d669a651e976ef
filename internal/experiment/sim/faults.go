package sim

import (
	"math"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// event applies one of the timeline's faults.
func (e *engine) event(ev model.Event) {
	i := int32(ev.Instance)
	if i >= 0 {
		e.m.touched(i)
	}
	switch ev.Kind {
	case model.Join:
		e.setUp(i, true)
		e.addCand(i)
		e.startJobs() // its workers take waiting jobs at once
		e.m.joiner, e.m.joinT = i, e.t
	case model.Drain:
		e.draining[i] = true
		e.removeCand(i)
	case model.Stop:
		e.setUp(i, false)
		e.removeCand(i)
		e.lostStop += e.evacuate(i)
		e.moveStreams(i)
	case model.Kill:
		e.setUp(i, false)
		e.removeCand(i)
		if e.exact {
			e.m.cur.errors += float64(e.hot[i].inflight - int64(e.hot[i].streams))
		} else {
			e.m.cur.errors += float64(e.r.Poisson(e.inflightMean(i)))
		}
		e.hot[i].inflight = 0
		e.hot[i].dead = true
		e.lostCrash += e.evacuate(i)
		e.moveStreams(i)
	case model.StoreDown:
		e.storeDown = true
	case model.StoreUp:
		e.storeDown = false
	}
}

// evacuate moves the users pinned to instance i, gone, to the policy's
// choices, and returns the sessions that were lost with it. With in-memory
// sessions a user counts as lost when it notices, as the live run's ledger
// counts it (workload): a browse (the page header's /api/me) answered 401;
// a chat user at once, its WebSocket breaking and the reconnection refused;
// a user following an upload's progress at once, the stream's reconnection
// answered 404; a user still there when the run ends, at its final check.
// An add to the cart, a cart view or a logout answered 401 says nothing (the
// script logs in again at its next step), so a user who only adds, views
// or logs out before its session ends is never counted. With a shared
// store nothing is lost, but that next request misses the new instance's
// near cache. It scans all users: a fault is rare, a scan is a few
// milliseconds even for ten million users.
func (e *engine) evacuate(i int32) float64 {
	if !e.pinned {
		return 0
	}
	ph := e.m.cur
	if e.tok != nil { // affinity at scale: nothing is lost; every user moves
		for c := range rosterClasses {
			for e.tok.held(i, c) > 0 {
				j := e.pickNew(-1)
				if j < 0 {
					return 0
				}
				e.moveToken(i, j, c)
				ph.misses++ // counted for every user, even one who never returns
			}
		}
		return 0
	}
	lost := 0.0
	for s := range e.users.u {
		u := &e.users.u[s]
		if u.flags&flagLive == 0 || u.inst != i {
			continue
		}
		if e.arch.Sessions == model.SessionsMemory {
			left := math.Min(float64(u.end), e.dur) - e.t
			seen := u.flags&(flagChats|flagStreaming) != 0 || float64(u.end) >= e.dur ||
				e.r.Bernoulli(1-math.Exp(-float64(u.rate)*e.p.Script.Browse*left))
			if seen {
				lost++
				age := e.t - float64(u.start)
				u.start = float32(e.t) // its next login starts an empty cart
				adds := e.r.Poisson(float64(u.rate) * e.p.Script.AddToCart * math.Max(0, age))
				ph.cartLost += float64(adds) * model.ItemsPerAdd
			}
		} else if u.flags&flagLogsOut != 0 || e.r.Bernoulli(1-math.Exp(-float64(u.rate)*(float64(u.end)-e.t))) {
			ph.misses++
		}
		if j := e.pickNew(-1); j >= 0 {
			e.move(int32(s), j)
		}
	}
	ph.lost += lost
	return lost
}
