package lb

import "time"

// maintainLoop re-evaluates what changes with time alone: ejections that
// end, slow-start weights, and drains that complete.
func (bl *Balancer) maintainLoop() {
	defer bl.wg.Done()
	t := time.NewTicker(bl.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-bl.ctx.Done():
			return
		case <-t.C:
			bl.maintain()
		}
	}
}

func (bl *Balancer) maintain() {
	v := bl.view.Load()
	nowT := time.Now()
	now := nowT.UnixNano()
	var remove []*Backend
	prune := nowT.Sub(bl.lastPrune) >= pruneEvery
	if prune {
		bl.lastPrune = nowT
	}
	for _, b := range v.backends {
		if prune {
			b.recentUsers(now, v.cfg.Drain.Idle) // forget users gone quiet
		}
		if e := b.ejectedTo.Load(); e != 0 && now >= e {
			if b.ejectedTo.CompareAndSwap(e, 0) {
				bl.log.Info("backend back from ejection", "backend", b.name)
			}
		}
		b.updateWeight(nowT, v.cfg.Health.SlowStart)
		if !b.draining.Load() || b.drained.Load() {
			continue
		}
		b.mu.Lock()
		start, removing := b.drainStart, b.removing
		b.mu.Unlock()
		idleFrom := max(b.lastPin.Load(), start.UnixNano())
		idle := b.inflight.Load() == 0
		var why string
		switch {
		case idle && (v.signer == nil || v.cfg.Sticky.Spill):
			why = "no pinned users to wait for"
		case idle && now-idleFrom >= int64(v.cfg.Drain.Idle):
			why = "pinned users idle"
		case nowT.Sub(start) >= v.cfg.Drain.Deadline:
			why = "deadline"
		default:
			continue
		}
		if !b.drained.CompareAndSwap(false, true) {
			continue
		}
		bl.m.drains.WithLabelValues(b.name, "drained").Inc()
		ts := b.tunnelList()
		bl.log.Info("backend drained", "backend", b.name, "why", why, "websockets", len(ts))
		bl.closeTunnelsAsync(ts, 1012, "service restart", v.cfg.WebSocket.CloseWindow)
		if removing {
			remove = append(remove, b)
		}
	}
	for _, b := range remove {
		bl.removeNow(b)
	}
}

// pruneEvery is how often the pinned-user maps drop users idle for longer
// than drain.idle, so they stay bounded without anyone reading them.
const pruneEvery = 5 * time.Second
