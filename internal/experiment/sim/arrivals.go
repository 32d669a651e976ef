package sim

import (
	"runtime"
	"sync"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// arrivals draws the population's arrivals on another goroutine, ahead of
// the simulation, so drawing users (a few transcendental functions each)
// runs on the second core. The sequence is the population's own, so the
// run is the same as drawing inline.
type arrivals struct {
	ch   chan []model.User
	free chan []model.User
	done chan struct{}
	buf  []model.User
	i    int
	stop sync.Once
}

// arrivalBatch users are drawn at a time; with the channels' room, at most
// about 10 batches (under a MiB) exist at once.
const arrivalBatch = 1024

func startArrivals(pop *model.Population, until float64) *arrivals {
	a := &arrivals{ch: make(chan []model.User, 4), free: make(chan []model.User, 6), done: make(chan struct{})}
	go func() {
		defer close(a.ch)
		for {
			var b []model.User
			select {
			case b = <-a.free:
				b = b[:0]
			default:
				b = make([]model.User, 0, arrivalBatch)
			}
			last := false
			for len(b) < arrivalBatch && !last {
				u := pop.Next()
				b = append(b, u)
				last = u.Start.Seconds() >= until // one past the end tells the reader to stop
			}
			select {
			case a.ch <- b:
			case <-a.done:
				return
			}
			if last {
				return
			}
		}
	}()
	return a
}

// next returns the next arrival.
func (a *arrivals) next() model.User {
	if a.i == len(a.buf) {
		if a.buf != nil {
			select {
			case a.free <- a.buf:
			default:
			}
		}
		b, ok := <-a.ch
		if !ok { // the producer stopped after the last one: nothing arrives any more
			return model.User{Start: 1 << 62}
		}
		a.buf, a.i = b, 0
	}
	u := a.buf[a.i]
	a.i++
	return u
}

// close stops the producer.
func (a *arrivals) close() { a.stop.Do(func() { close(a.done) }) }

// initialUsers draws the users active at the start on all cores: user i
// depends only on the seed and i.
func initialUsers(pop *model.Population, n int, out []user, starts []uint64) {
	workers := max(1, min(runtime.GOMAXPROCS(0), n/50_000))
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				u := pop.Initial(i)
				out[i] = toUser(u)
				out[i].flags |= flagLive
				starts[i] = packDeparture(u.Start.Seconds(), int32(i))
			}
		}()
	}
	wg.Wait()
}
