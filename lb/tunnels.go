package lb

import (
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

// trackTunnel keeps a WebSocket so drain, removal and shutdown can close it.
func (bl *Balancer) trackTunnel(b *Backend, t *proxy.Tunnel) {
	if bl.closing.Load() {
		t.Close(1001, "going away")
		return
	}
	b.addTunnel(t)
	go func() {
		<-t.Closed()
		b.removeTunnel(t)
	}()
}

// closeTunnels closes ts with code, spread evenly over window, so clients
// do not all reconnect at once.
func (bl *Balancer) closeTunnels(ts []*proxy.Tunnel, code uint16, reason string, window time.Duration, stop <-chan struct{}) {
	if len(ts) == 0 {
		return
	}
	step := window / time.Duration(len(ts))
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i, t := range ts {
		if i > 0 && step > 0 {
			timer.Reset(step)
			select {
			case <-timer.C:
			case <-stop:
				return
			}
		}
		t.Close(code, reason)
	}
}

func (bl *Balancer) closeTunnelsAsync(ts []*proxy.Tunnel, code uint16, reason string, window time.Duration) {
	if len(ts) == 0 {
		return
	}
	bl.wg.Add(1)
	go func() {
		defer bl.wg.Done()
		bl.closeTunnels(ts, code, reason, window, bl.ctx.Done())
	}()
}
