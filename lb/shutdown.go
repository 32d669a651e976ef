package lb

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

// Shutdown stops accepting connections, lets in-flight requests finish and
// closes WebSockets with 1001 spread over the time left until ctx's
// deadline (shutdown.grace when ctx has none). It returns when all is
// closed or ctx ends, and then closes whatever is left.
func (bl *Balancer) Shutdown(ctx context.Context) error {
	bl.closing.Store(true)
	v := bl.view.Load()
	window := v.cfg.Shutdown.Grace
	if dl, ok := ctx.Deadline(); ok {
		window = time.Until(dl)
	}
	// Leave a tenth of the window for the last closes to be sent.
	window = window * 9 / 10
	var ts []*proxy.Tunnel
	for _, b := range v.backends {
		ts = append(ts, b.tunnelList()...)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		bl.closeTunnels(ts, 1001, "going away", window, ctx.Done())
		for _, t := range ts {
			select {
			case <-t.Closed():
			case <-ctx.Done():
				return
			}
		}
	}()
	err := bl.shutdownServers(ctx)
	select {
	case <-closed:
	case <-ctx.Done():
	}
	bl.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return ctx.Err()
}

// Close stops everything at once: listeners, connections, WebSockets,
// health checks. Safe to call more than once.
func (bl *Balancer) Close() error {
	bl.closing.Store(true)
	err := bl.closeServers()
	bl.cancel()
	bl.wg.Wait()
	return err
}
