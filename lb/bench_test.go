package lb

import (
	"testing"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

// BenchmarkRoutePinned is the routing cost of a request with a valid sticky
// cookie: verify the MAC, check the backend, count in-flight.
func BenchmarkRoutePinned(b *testing.B) {
	bl, err := New(testConfig(nil), Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Close()
	c := newClient("10.0.0.1")
	tg, _ := bl.route(&c.req, 0, nil)
	c.absorb(tg.SetCookie)
	tg.Done(proxy.Outcome{Status: 200})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		tg, _ := bl.route(&c.req, 0, nil)
		tg.Done(proxy.Outcome{Status: 200})
	}
}

// BenchmarkRouteNoSticky is the routing cost with round-robin alone.
func BenchmarkRouteNoSticky(b *testing.B) {
	bl, err := New(testConfig(func(c *Config) { c.Sticky.Mode = "none" }), Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Close()
	c := newClient("10.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		tg, _ := bl.route(&c.req, 0, nil)
		tg.Done(proxy.Outcome{Status: 200})
	}
}

// BenchmarkRoutePinnedParallel is pinned routing from every core at once,
// many users on few backends: where locks would show.
func BenchmarkRoutePinnedParallel(b *testing.B) {
	bl, err := New(testConfig(nil), Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := newClient("10.0.0.1")
		tg, _ := bl.route(&c.req, 0, nil)
		c.absorb(tg.SetCookie)
		tg.Done(proxy.Outcome{Status: 200})
		for pb.Next() {
			tg, _ := bl.route(&c.req, 0, nil)
			tg.Done(proxy.Outcome{Status: 200})
		}
	})
}
