package lb_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/unstuck-dev/unstuck/lb"
)

// Embedding the balancer: two backends, sticky cookies with a fleet-wide
// secret, the admin API on loopback, graceful shutdown.
func Example() {
	cfg := &lb.Config{
		Backends: []lb.BackendConfig{
			{Name: "app1", URL: "http://127.0.0.1:8081"},
			{Name: "app2", URL: "http://127.0.0.1:8082", Weight: 2},
		},
		Policy: lb.PolicyConfig{Name: lb.PolicyP2C, Latency: true},
		Sticky: lb.StickyConfig{Secrets: []string{"a-secret-shared-by-the-whole-fleet"}},
		Health: lb.HealthConfig{Active: lb.ActiveHealthConfig{Path: "/healthz"}},
	}
	bl, err := lb.New(cfg, lb.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	go bl.Serve(ln)
	go http.ListenAndServe("127.0.0.1:9090", bl.AdminHandler(""))

	// ... later, on SIGTERM:
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = bl.Shutdown(ctx)
}

// fewestInFlight is an embedder's own policy: the backend serving the
// fewest requests right now, whatever its weight.
type fewestInFlight struct{}

func (fewestInFlight) Pick(backends []*lb.Backend, _ []byte) *lb.Backend {
	best := backends[0]
	for _, b := range backends[1:] {
		if b.InFlight() < best.InFlight() {
			best = b
		}
	}
	return best
}

// A program embedding the balancer brings its own Policy through Options:
// it picks for users no sticky cookie pins, among the backends that are up
// and not draining.
func ExampleOptions_policy() {
	cfg := &lb.Config{Backends: []lb.BackendConfig{
		{Name: "app1", URL: "http://127.0.0.1:8081"},
		{Name: "app2", URL: "http://127.0.0.1:8082"},
	}}
	bl, err := lb.New(cfg, lb.Options{Policy: fewestInFlight{}})
	if err != nil {
		log.Fatal(err)
	}
	defer bl.Close()
}

// A program that shares the fleet's secret reads and writes sticky cookies
// as every balancer does: here it pins a client to app2 and reads the
// value back.
func ExampleSigner() {
	s, err := lb.NewSigner(lb.DefaultCookieName, [][]byte{[]byte("a-secret-shared-by-the-whole-fleet")})
	if err != nil {
		log.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	value := s.Sign(lb.Pin{Backend: "app2", Expires: now.Add(24 * time.Hour), User: 42})
	p, ok := s.Verify([]byte(value), now)
	fmt.Println(p.Backend, p.Expires.Sub(now), ok)
	_, ok = s.Verify([]byte(value), now.Add(25*time.Hour))
	fmt.Println("a day later:", ok)
	// Output:
	// app2 24h0m0s true
	// a day later: false
}
