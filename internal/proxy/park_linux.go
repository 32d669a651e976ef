package proxy

import (
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A keep-alive connection idle for parkAfter gives up its goroutine too:
// it is parked in an epoll set of the Server's own, watched by one
// goroutine for all parked connections, and a new goroutine serves it when
// its next request arrives. An idle connection then costs its clientConn
// and socket, not a goroutine stack (8 KiB once a request has grown it).
// Connections busier than that never park, so the hot path gains no
// system call: parking is armed from the same coarse read deadline as
// ClientIdle (io.go).
//
// Ownership: a parked connection belongs to whoever takes it out of the
// idler's map: the idler when it is readable (it resumes it) or expired
// (it closes and releases it), or Shutdown and Close (idler.stop).

// defaultParkAfter is how long a connection idles on its goroutine before
// it is parked. At 5 s and more the deadline that parks it is armed
// coarsely, like the ClientIdle deadline it replaces.
const defaultParkAfter = 5 * time.Second

type parked struct {
	cc      *clientConn
	fd      int
	expires int64 // unix nanoseconds: ClientIdle ends
}

// idler is the epoll set of parked connections.
type idler struct {
	once   sync.Once
	epfd   int
	err    error
	mu     sync.Mutex
	m      map[uint64]parked
	next   uint64
	closed bool
	// parks counts connections parked since the idler last gave freed
	// goroutine stacks back to the OS (freeStacks).
	parks     int
	recent    int // parks since the last sweep
	lastFreed time.Time
}

// A burst of connections that all went idle leaves their goroutines'
// stacks free but still resident: the runtime frees dead goroutines'
// stacks at the next GC (forced only every 2 minutes when nothing
// allocates) and returns pages later still. Once freeBurst connections
// have parked and the burst is over (a second without a park), at most
// every freeEvery, the idler asks for both at once.
const (
	freeBurst = 1000
	freeEvery = 30 * time.Second
)

func (id *idler) start(s *Server) error {
	id.once.Do(func() {
		id.epfd, id.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if id.err != nil {
			return
		}
		id.mu.Lock()
		id.m = map[uint64]parked{}
		id.mu.Unlock()
		go id.run(s)
	})
	return id.err
}

// park hands cc to the idler until its socket is readable or until
// left, the rest of ClientIdle, has passed. It reports false when cc
// could not be parked (it is then still the caller's). After true the
// caller must not touch cc again: it may already be running elsewhere.
func (cc *clientConn) park(left time.Duration) bool {
	s := cc.s
	id := &s.idler
	if id.start(s) != nil {
		return false
	}
	fd := -1
	if cc.idle.rc.Control(func(f uintptr) { fd = int(f) }) != nil || fd < 0 {
		return false
	}
	// The goroutine's buffers go back now, and rd.dl is forgotten: the
	// deadline that parked it has fired.
	cc.releaseBufs(true)
	cc.rd.dl = 0
	// So does the per-request scratch, for the same reason; resume
	// allocates the field table again.
	cc.hb, cc.out, cc.xff, cc.fwd, cc.body = nil, nil, nil, nil, nil
	cc.req.b, cc.req.fields = nil, nil
	id.mu.Lock()
	if id.closed {
		id.mu.Unlock()
		return false
	}
	// Registered under the lock, so nothing takes (and closes) cc
	// between its entry in the map and its fd in the set.
	id.next++
	key := id.next
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))}
	if err := unix.EpollCtl(id.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		id.mu.Unlock()
		return false
	}
	id.m[key] = parked{cc: cc, fd: fd, expires: time.Now().Add(left).UnixNano()}
	id.parks++
	id.recent++
	id.mu.Unlock()
	return true
}

// take removes a parked connection; ok reports whether it was there, and
// so whether the caller now owns it.
func (id *idler) take(key uint64) (parked, bool) {
	id.mu.Lock()
	p, ok := id.m[key]
	if ok {
		delete(id.m, key)
	}
	id.mu.Unlock()
	return p, ok
}

// count is how many connections are parked.
func (id *idler) count() int {
	id.mu.Lock()
	defer id.mu.Unlock()
	return len(id.m)
}

// stop makes the idler's goroutine end and closes and releases what is
// parked; Shutdown and Close call it first, and nothing parks after.
func (id *idler) stop(s *Server) {
	id.mu.Lock()
	id.closed = true
	var rest []parked
	for k, p := range id.m {
		rest = append(rest, p)
		delete(id.m, k)
	}
	id.mu.Unlock()
	for _, p := range rest {
		p.cc.state.Store(stClosed)
		s.release(p.cc)
	}
}

func (id *idler) run(s *Server) {
	events := make([]unix.EpollEvent, 128)
	nextSweep := time.Now().Add(time.Second)
	defer unix.Close(id.epfd)
	for {
		n, err := unix.EpollWait(id.epfd, events, 1000)
		id.mu.Lock()
		closed := id.closed
		id.mu.Unlock()
		if closed {
			return
		}
		if err != nil && err != unix.EINTR {
			s.log.Error("proxy: epoll_wait for parked connections failed", "err", err)
			time.Sleep(100 * time.Millisecond)
		}
		for _, ev := range events[:max(n, 0)] {
			key := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p, ok := id.take(key)
			if !ok {
				continue // taken by Shutdown or the sweep meanwhile
			}
			unix.EpollCtl(id.epfd, unix.EPOLL_CTL_DEL, p.fd, nil)
			go p.cc.resume()
		}
		if now := time.Now(); now.After(nextSweep) {
			nextSweep = now.Add(time.Second)
			id.sweep(s, now.UnixNano())
			id.mu.Lock()
			free := id.parks >= freeBurst && id.recent == 0 && now.Sub(id.lastFreed) >= freeEvery
			id.recent = 0
			if free {
				id.parks, id.lastFreed = 0, now
			}
			id.mu.Unlock()
			if free {
				go debug.FreeOSMemory()
			}
		}
	}
}

// sweep closes parked connections whose ClientIdle has passed.
func (id *idler) sweep(s *Server, now int64) {
	var expired []parked
	id.mu.Lock()
	for k, p := range id.m {
		if now >= p.expires {
			expired = append(expired, p)
			delete(id.m, k)
		}
	}
	id.mu.Unlock()
	for _, p := range expired {
		p.cc.state.Store(stClosed)
		s.release(p.cc)
	}
}
