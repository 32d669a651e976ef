package demo

import (
	"context"

	"github.com/unstuck-dev/unstuck/lb"
)

// LB adapts the balancer to the control API's Balancer interface.
type LB struct{ B *lb.Balancer }

var _ Balancer = LB{}

// AddBackend adds an instance as a backend with weight 1.
func (l LB) AddBackend(_ context.Context, name, url string) error {
	_, err := l.B.Add(lb.BackendConfig{Name: name, URL: url, Weight: 1})
	return err
}

// Drain stops sending new users to the instance.
func (l LB) Drain(_ context.Context, name string) error { return l.B.Drain(name) }

// Undrain lets the instance take new users again.
func (l LB) Undrain(_ context.Context, name string) error { return l.B.Undrain(name) }

// BackendState is the balancer's state of the backend, "" if unknown, and
// its request count.
func (l LB) BackendState(name string) (string, uint64) {
	for _, b := range l.B.Backends() {
		if b.Name == name {
			return b.State, b.Total
		}
	}
	return "", 0
}
