package sim

// count serves one request (a login or logout) at a pinned instance.
func (e *engine) count(i int32) {
	if e.exact {
		e.completeUntil()
		e.serve(i)
		return
	}
	e.served(i, 1)
}

// routeUnpinned sends one request by the policy (store, cookie).
func (e *engine) routeUnpinned() {
	e.completeUntil()
	if i := e.pickNew(-1); i >= 0 {
		e.serve(i)
	} else {
		e.m.cur.errors++
	}
}

// request routes one browse/add/view request (exact mode).
func (e *engine) request() {
	e.completeUntil()
	e.scriptN++
	if !e.pinned {
		if i := e.pickNew(-1); i >= 0 {
			e.serve(i)
		} else {
			e.m.cur.errors++
		}
		return
	}
	ph := e.m.cur
	i := int32(e.fw.draw(&e.r))
	if i < 0 {
		return
	}
	if e.arch.Spill && (e.draining[i] || overCapacity(e.hot[i].inflight, e.active, len(e.cands), e.arch.Factor)) {
		if j := e.pickNew(int(e.hot[i].candPos)); j >= 0 && j != i {
			if e.spillUser(i, j) {
				ph.spills++
				ph.misses++
				if e.storeDown {
					ph.downMisses++
				}
				i = j
			}
		}
	}
	e.serve(i)
}

// serve starts a request at instance i.
func (e *engine) serve(i int32) {
	e.hot[i].inflight++
	if e.hot[i].candPos >= 0 {
		e.active++
	}
	e.q.push(e.t+e.svc, i)
	e.served(i, 1)
}

// completeUntil ends the requests done by now (nothing for a killed
// instance: its requests died with it).
func (e *engine) completeUntil() {
	q := &e.q
	mask := len(q.ring) - 1
	for q.n > 0 && q.ring[q.head].at <= e.t {
		h := &e.hot[q.ring[q.head].inst]
		q.head = (q.head + 1) & mask
		q.n--
		if h.dead {
			continue
		}
		h.inflight--
		if h.candPos >= 0 {
			e.active--
		}
	}
}

// pickNew is the policy's choice among the candidates, leaving out the one
// at index skip. Exact mode compares real in-flight counts; aggregate mode
// draws each instance's in-flight count from its stationary law, Poisson
// with mean rate x service time (an M/G/infinity queue; PASTA: an arrival
// sees the time-average), since requests are not tracked one by one, plus
// the progress streams open there, which are.
func (e *engine) pickNew(skip int) int32 {
	if e.exact { // pickP2C without the closure: this is every request's path
		a, b, ok := twoOf(&e.r, e.cands, skip)
		if ok && e.hot[b].inflight < e.hot[a].inflight {
			return b
		}
		return a
	}
	// Progress streams are tracked one by one in both modes: inflight
	// holds only them here.
	return pickP2C(&e.r, e.cands, skip, func(i int32) int64 { return e.r.Poisson(e.inflightMean(i)) + e.hot[i].inflight })
}

// pin assigns user s to instance i.
func (e *engine) pin(s, i int32) {
	u := &e.users.u[s]
	u.inst = i
	e.accrue(i)
	e.fw.add(int(i), float64(u.rate))
	if e.ro != nil {
		e.ro.add(e.users.u, i, s)
	}
}

func (e *engine) unpin(s int32) {
	u := &e.users.u[s]
	i := u.inst
	if i < 0 {
		return
	}
	e.accrue(i)
	e.fw.add(int(i), -float64(u.rate))
	if e.ro != nil {
		e.ro.remove(e.users.u, i, s)
	}
	u.inst = -1
	u.gen++
}

// spillUser moves the user whose request at i spilled to j: drawn in
// proportion to rate among i's users (by identity, or as a token).
func (e *engine) spillUser(i, j int32) bool {
	if e.tok == nil {
		s := e.ro.pick(&e.r, e.users.u, i)
		if s >= 0 {
			e.move(s, j)
		}
		return s >= 0
	}
	c := e.tok.spillClass(&e.r, i)
	if c < 0 {
		return false
	}
	e.moveToken(i, j, c)
	return true
}

// moveToken moves one user of class c from i to j, with the class's mean
// rate at i.
func (e *engine) moveToken(i, j int32, c int) {
	e.accrue(i)
	e.accrue(j)
	r := e.tok.take(i, c, e.tok.mean(i, c))
	e.fw.add(int(i), -r)
	e.tok.add(j, c, r)
	e.tokMove(i, j)
	e.fw.add(int(j), r)
	e.m.cur.repins++
}

func (e *engine) move(s, j int32) {
	e.unpin(s)
	e.pin(s, j)
	e.m.cur.repins++
}

func (e *engine) addCand(i int32) {
	e.hot[i].candPos = int32(len(e.cands))
	e.cands = append(e.cands, i)
	e.active += e.hot[i].inflight
}

func (e *engine) removeCand(i int32) {
	k := e.hot[i].candPos
	if k < 0 {
		return
	}
	last := e.cands[len(e.cands)-1]
	e.cands[k] = last
	e.hot[last].candPos = k
	e.cands = e.cands[:len(e.cands)-1]
	e.hot[i].candPos = -1
	e.active -= e.hot[i].inflight
}
