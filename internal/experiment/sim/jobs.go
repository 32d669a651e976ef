package sim

import (
	"math"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// Uploads and their progress streams. An upload is a short POST; the
// user then follows its job's progress over one Server-Sent Events
// stream, which the balancer counts as a request in flight until the
// job ends (lb calls Done when the streamed response ends; a WebSocket,
// by contrast, stops counting once its 101 is relayed, so chat sockets
// weigh nothing in p2c and are not modelled here). Jobs wait in one FIFO
// queue shared by every instance's workers (JobWorkers each) and take
// UploadJob once claimed, so a stream lasts the queueing plus the job:
// with the default model at three instances the workers run near
// saturation and a dozen or more streams are open at once, against about
// one short request in flight. Least-loaded policies then balance the
// streams, and an instance holding one more stream than the others gets
// fewer of the short requests, which are what the imbalance counts.
//
// Every job takes the same time, so jobs end in the order they started:
// two FIFOs (waiting, running) hold them and a job's end is the running
// queue's head. The sweep provisions workers in proportion to load
// (model.Params.WorkersAtScale); where uploads still outpace them (the
// calibration keeps the live run's one worker an instance whatever its
// users, and the default model loads one worker fully at 100 users an
// instance) the waiting queue grows with the run's length, as the live
// system's would; past maxWaiting the rest wait as counts (jobQueue.over),
// so memory does not.

// job is one upload's file job: where its progress stream is open (-1:
// nowhere, its follower gave up) and, once running, when it ends.
type job struct {
	done float64
	inst int32
	// slot is the uploading user's. Its streaming flag is cleared when
	// the job ends; if the user left and a new user took the slot
	// meanwhile, that user's flag is cleared too (rare, and it only makes
	// a lost session noticed a little later).
	slot int32
}

// fifo is a growable ring of jobs.
type fifo struct {
	ring []job // a power of two long
	head int
	n    int
}

func (q *fifo) push(j job) {
	if q.n == len(q.ring) {
		ring := make([]job, max(64, 2*len(q.ring)))
		for i := range q.n {
			ring[i] = q.ring[(q.head+i)&(len(q.ring)-1)]
		}
		q.ring, q.head = ring, 0
	}
	q.ring[(q.head+q.n)&(len(q.ring)-1)] = j
	q.n++
}

func (q *fifo) front() *job { return &q.ring[q.head] }

func (q *fifo) pop() job {
	j := q.ring[q.head]
	q.head = (q.head + 1) & (len(q.ring) - 1)
	q.n--
	return j
}

// each calls f on every job in the queue.
func (q *fifo) each(f func(*job)) {
	for k := range q.n {
		f(&q.ring[(q.head+k)&(len(q.ring)-1)])
	}
}

// jobQueue is the shared job queue and its workers.
type jobQueue struct {
	took    float64 // UploadJob, seconds
	perInst int     // JobWorkers
	waiting fifo
	running fifo
	// over holds the waiting jobs beyond maxWaiting as counts of
	// streams per instance, without order or owner: a job that waits
	// behind that many others starts so late that which of them came
	// first says nothing about where its stream is. When the exact queue
	// has room, its next job is drawn from here in proportion to the
	// counts. Memory so stays flat when uploads outpace the workers.
	over   *fenwick
	overN  int
	queued int64 // jobs ever queued
}

// maxWaiting is how many waiting jobs are kept one by one (1 MiB).
const maxWaiting = 1 << 16

// nextEnd is when the earliest running job ends; false when none runs.
func (q *jobQueue) nextEnd() (float64, bool) {
	if q.running.n == 0 {
		return 0, false
	}
	return q.running.front().done, true
}

// upload sends user s's upload (a short request) and opens its progress
// stream, both where the balancer sends the user's requests, and queues
// its job.
func (e *engine) upload(s int32) {
	u := &e.users.u[s]
	if u.flags&flagLive == 0 || u.flags&flagUploads == 0 {
		return
	}
	home := u.inst
	if e.tok != nil { // no identity: where the users yet to upload are
		home = e.pendingUploader()
	}
	if i := e.routeUser(s, home); i >= 0 {
		e.count(i)
		home = i // a spill re-pinned the user there
	} else {
		e.m.cur.errors++
	}
	i := e.routeUser(s, home)
	if i >= 0 {
		e.openStream(i)
	} else {
		e.m.cur.errors++
	}
	u.flags |= flagStreaming
	e.queueJob(job{inst: i, slot: s})
	e.startJobs()
}

// routeUser is the instance the balancer sends one of user s's requests
// to: p2c without stickiness; the pinned instance, home, with it, spilled
// (and the user re-pinned) as lb's bounded load decides for affinity.
func (e *engine) routeUser(s, home int32) int32 {
	if !e.pinned {
		return e.pickNew(-1)
	}
	u := &e.users.u[s]
	i := home
	if i < 0 {
		return -1
	}
	if e.arch.Spill && e.exact && (e.draining[i] || overCapacity(e.hot[i].inflight, e.active, len(e.cands), e.arch.Factor)) {
		if j := e.pickNew(int(e.hot[i].candPos)); j >= 0 && j != i {
			moved := true
			switch c := int(u.class); {
			case e.tok == nil:
				e.move(s, j)
			case e.tok.held(i, c) > 0:
				e.moveToken(i, j, c)
			default:
				moved = false
			}
			if moved {
				ph := e.m.cur
				ph.spills++
				ph.misses++
				if e.storeDown {
					ph.downMisses++
				}
				i = j
			}
		}
	}
	return i
}

// openStream opens a progress stream at i: one request answered (its
// head), then in flight until its job ends.
func (e *engine) openStream(i int32) {
	h := &e.hot[i]
	h.inflight++
	h.streams++
	if h.candPos >= 0 {
		e.active++
	}
	e.served(i, 1)
}

// closeStream ends the stream at i.
func (e *engine) closeStream(i int32) {
	h := &e.hot[i]
	if h.dead {
		return
	}
	h.inflight--
	h.streams--
	if h.candPos >= 0 {
		e.active--
	}
}

// queueJob puts a job at the back of the queue.
func (e *engine) queueJob(j job) {
	q := &e.jobs
	q.queued++
	if q.waiting.n < maxWaiting && q.overN == 0 {
		q.waiting.push(j)
		return
	}
	if q.over == nil {
		q.over = newFenwick(len(e.hot))
	}
	// Its owner is forgotten: the user's streaming flag stays on until it
	// leaves, as its upload, this far back in the queue, will be pending
	// for the rest of its session anyway.
	q.overN++
	if j.inst >= 0 {
		q.over.add(int(j.inst), 1)
	}
}

// refill moves jobs from the counts into the exact queue while it has
// room.
func (e *engine) refill() {
	q := &e.jobs
	for q.overN > 0 && q.waiting.n < maxWaiting {
		inst := int32(-1) // a job whose follower gave up has no stream
		if streams := math.Round(q.over.sum); e.r.Float64()*float64(q.overN) < streams {
			if i := q.over.draw(&e.r); i >= 0 {
				q.over.add(i, -1)
				inst = int32(i)
			}
		}
		q.overN--
		q.waiting.push(job{inst: inst, slot: -1})
	}
}

// startJobs hands waiting jobs to free workers: JobWorkers per instance
// up (a draining instance still works; a stopped or killed one does not).
func (e *engine) startJobs() {
	q := &e.jobs
	for q.waiting.n > 0 && q.running.n < q.perInst*e.upN {
		j := q.waiting.pop()
		j.done = e.t + q.took
		q.running.push(j)
		if q.overN > 0 {
			e.refill()
		}
	}
}

// endJob ends the earliest running job (its stream closes) and starts
// the next.
func (e *engine) endJob() {
	if e.exact {
		e.completeUntil()
	}
	j := e.jobs.running.pop()
	if j.inst >= 0 {
		e.closeStream(j.inst)
	}
	if j.slot >= 0 {
		e.users.u[j.slot].flags &^= flagStreaming
	}
	e.startJobs()
}

// moveStreams reconnects the progress streams open at instance i, which
// is gone, as EventSource does: through the balancer, which has no
// pinned instance to send them to and picks by p2c. With sessions in the
// gone instance's memory the reconnection finds the session lost (a 404,
// then a 401) and its follower stops: the stream just closes. Jobs that
// were running on i's workers go on (the live run's job visibility of 3 s
// delays them a little; not modelled).
func (e *engine) moveStreams(i int32) {
	follow := e.arch.Sessions != model.SessionsMemory
	move := func(j *job) {
		if j.inst != i {
			return
		}
		e.closeStreamGone(i)
		j.inst = -1
		if !follow {
			if j.slot >= 0 {
				e.users.u[j.slot].flags &^= flagStreaming
			}
			return
		}
		if k := e.pickNew(-1); k >= 0 {
			e.openStream(k)
			j.inst = k
		}
	}
	e.jobs.waiting.each(move)
	e.jobs.running.each(move)
	if q := &e.jobs; q.over != nil {
		for n := math.Round(q.over.w[i]); n > 0; n-- {
			q.over.add(int(i), -1)
			e.closeStreamGone(i)
			if !follow {
				continue
			}
			if k := e.pickNew(-1); k >= 0 {
				e.openStream(k)
				q.over.add(int(k), 1)
			}
		}
	}
}

// closeStreamGone forgets a stream of gone instance i (a killed instance's
// in-flight count is already zero).
func (e *engine) closeStreamGone(i int32) {
	h := &e.hot[i]
	h.streams--
	if !h.dead {
		h.inflight--
		if h.candPos >= 0 {
			e.active--
		}
	}
}

// tokExtra is what the tokens keep per instance beside the classes for
// uploads: users pinned there, and how many of them are yet to upload.
// A user uploads once, so the users of an instance that already carries
// their streams upload no more; drawing the uploader from all users
// instead would pile streams on the instances already holding them (the
// tokens' cross-check against identities caught it). 8 bytes an
// instance: cache-resident even at ten thousand instances.
type tokExtra struct {
	users, pend int32
}

// tokUsers counts d users in or out of instance i (tokens), one of them
// yet to upload if pending.
func (e *engine) tokUsers(i int32, d int32, pending bool) {
	x := &e.tx[i]
	x.users += d
	if pending {
		x.pend++
		e.pendMost = max(e.pendMost, x.pend)
	}
}

// tokMove moves one user from i to j (tokens): one yet to upload with
// probability their share of i's users, as upload and rate are drawn
// independently.
func (e *engine) tokMove(i, j int32) {
	x, y := &e.tx[i], &e.tx[j]
	if x.pend > 0 && e.r.IntN(int(max(x.users, x.pend))) < int(x.pend) {
		x.pend--
		y.pend++
		e.pendMost = max(e.pendMost, y.pend)
	}
	x.users--
	y.users++
}

// pendingUploader draws the instance of a user about to upload, in
// proportion to those yet to upload there (by rejection, as
// tokens.leave), and counts it as uploaded; -1 if none is pending.
func (e *engine) pendingUploader() int32 {
	n := len(e.tx)
	for range 1 << 16 {
		x := e.r.Uint64()
		i := int((x & 0xffffffff) * uint64(n) >> 32)
		if float64(x>>32)*(1.0/(1<<32))*float64(e.pendMost) < float64(e.tx[i].pend) {
			e.tx[i].pend--
			return int32(i)
		}
	}
	for i := range e.tx { // the bound was far too loose
		if e.tx[i].pend > 0 {
			e.tx[i].pend--
			return int32(i)
		}
	}
	return -1
}
