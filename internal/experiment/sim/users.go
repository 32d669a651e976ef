package sim

import (
	"math"
)

// user is an active user as the simulator keeps it: 24 bytes, so ten
// million of them fit in a quarter of a gigabyte. Slots of users who left
// are reused, so memory follows the active population, not the duration.
type user struct {
	start, end float32 // seconds from the run's start
	rate       float32 // requests per second
	inst       int32   // instance the user is pinned to; -1: none
	gen        uint16  // changes whenever the user leaves an instance (roster)
	class      uint8   // rate class (roster)
	flags      uint8
}

const (
	flagLive      uint8 = 1 << iota // slot in use
	flagLogsOut                     // ends with a logout request
	flagTwoTabs                     // adds to the cart from two tabs
	flagChats                       // holds the chat WebSocket
	flagUploads                     // uploads a file
	flagStreaming                   // follows an upload's progress now
)

// slab holds the active users by slot.
type slab struct {
	u    []user
	free []int32
	live int
}

func (s *slab) add(u user) int32 {
	u.flags |= flagLive
	s.live++
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		u.gen = s.u[i].gen + 1 // stale roster entries of the last occupant stay stale
		s.u[i] = u
		return i
	}
	s.u = append(s.u, u)
	return int32(len(s.u) - 1)
}

func (s *slab) remove(i int32) {
	s.u[i].flags = 0
	s.free = append(s.free, i)
	s.live--
}

// departures is the queue of users' departures: a 4-ary min-heap of
// (time, slot) packed into one uint64 (the time in microseconds in the
// high 40 bits, the slot in the low 24), so a comparison is one integer
// compare and an entry 8 bytes; ties in time break by slot, so the order
// is deterministic. In front of the heap sits a calendar of buckets, one
// per width seconds: a departure waits in its bucket until everything
// before the bucket has left, then the whole bucket enters the heap. The
// heap so holds about one bucket instead of every active user's departure
// and stays in cache.
type departures struct {
	h       []uint64
	buckets [][]uint64
	bmin    []uint64 // each non-empty bucket's earliest entry
	width   float64  // seconds per bucket
	next    int      // buckets before next have entered the heap
	first   int      // no bucket in [next, first) holds anything
}

func newDepartures(duration float64) departures {
	// 1 ms buckets keep the heap to a few hundred entries even at ten
	// million users (a pop's cost is its mispredicted comparisons, a few
	// per level); at most 65536 buckets for long runs.
	width := math.Max(0.001, duration/65536)
	n := int(duration/width) + 1
	return departures{buckets: make([][]uint64, n), bmin: make([]uint64, n), width: width}
}

// min returns the earliest departure, false when none is left.
func (d *departures) min() (uint64, bool) {
	if len(d.h) > 0 {
		return d.h[0], true // the heap holds everything before bucket next
	}
	for d.first < len(d.buckets) && len(d.buckets[d.first]) == 0 {
		d.first++
	}
	if d.first < len(d.buckets) {
		return d.bmin[d.first], true
	}
	return 0, false
}

func (d *departures) push(k uint64) {
	at, _ := unpackDeparture(k)
	b := min(int(at/d.width), len(d.buckets)-1)
	if b < d.next {
		d.heapPush(k)
		return
	}
	if len(d.buckets[b]) == 0 || k < d.bmin[b] {
		d.bmin[b] = k
	}
	d.buckets[b] = append(d.buckets[b], k)
	d.first = min(d.first, b)
}

// pop removes and returns the earliest departure; min must have said
// there is one.
func (d *departures) pop() uint64 {
	if len(d.h) == 0 {
		d.min() // finds the first non-empty bucket
		for _, x := range d.buckets[d.first] {
			d.heapPush(x)
		}
		d.buckets[d.first] = nil
		d.next = d.first + 1
		d.first = d.next
	}
	return d.heapPop()
}

func (d *departures) heapPush(k uint64) {
	d.h = append(d.h, k)
	i := len(d.h) - 1
	for i > 0 {
		p := (i - 1) / 4
		if d.h[p] <= k {
			break
		}
		d.h[i] = d.h[p]
		i = p
	}
	d.h[i] = k
}

func (d *departures) heapPop() uint64 {
	top := d.h[0]
	n := len(d.h) - 1
	last := d.h[n]
	d.h = d.h[:n]
	if n == 0 {
		return top
	}
	i := 0
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		m := c
		for j := c + 1; j < c+4 && j < n; j++ {
			if d.h[j] < d.h[m] {
				m = j
			}
		}
		if d.h[m] >= last {
			break
		}
		d.h[i] = d.h[m]
		i = m
	}
	d.h[i] = last
	return top
}

const (
	slotBits = 24
	maxSlots = 1 << slotBits // active users at once (the sim caps users at 1e7)
	maxMicro = 1<<(64-slotBits) - 1
)

func packDeparture(at float64, slot int32) uint64 {
	us := uint64(math.Max(0, math.Round(at*1e6)))
	if us > maxMicro {
		us = maxMicro
	}
	return us<<slotBits | uint64(slot)
}

func unpackDeparture(k uint64) (at float64, slot int32) {
	return float64(k>>slotBits) / 1e6, int32(k & (maxSlots - 1))
}

// empty reports whether no departure is left (loading the next bucket
// into the heap when the heap ran dry).
