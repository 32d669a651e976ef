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
	flagLive    uint8 = 1 << iota // slot in use
	flagLogsOut                   // ends with a logout request
	flagTwoTabs                   // adds to the cart from two tabs
	flagChats                     // holds the chat WebSocket
	flagUploads                   // uploads a file
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
// is deterministic. Departures later than the current horizon wait in
// buckets of bucketWidth seconds and enter the heap when time gets there:
// the heap holds about one second of departures instead of every active
// user's, so it stays in cache (a calendar queue in front of the heap).
type departures struct {
	h       []uint64
	buckets [][]uint64
	width   float64 // seconds per bucket
	horizon float64 // every departure before it is in h
	next    int     // first bucket not yet moved into h
}

func newDepartures(duration, width float64) departures {
	return departures{buckets: make([][]uint64, int(duration/width)+1), width: width, horizon: width, next: 1}
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
func (d *departures) empty() bool {
	for len(d.h) == 0 && d.next < len(d.buckets) {
		for _, k := range d.buckets[d.next] {
			d.heapPush(k)
		}
		d.buckets[d.next] = nil
		d.next++
		d.horizon = float64(d.next) * d.width
	}
	return len(d.h) == 0
}

func (d *departures) push(k uint64) {
	if at, _ := unpackDeparture(k); at >= d.horizon {
		b := min(int(at/d.width), len(d.buckets)-1)
		if b >= d.next {
			d.buckets[b] = append(d.buckets[b], k)
			return
		}
	}
	d.heapPush(k)
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

func (d *departures) min() uint64 { return d.h[0] }

func (d *departures) pop() uint64 {
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
