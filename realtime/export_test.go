package realtime

// LocalSubscribers counts this hub's connections subscribed to channel, so
// that the external tests can wait for a subscription to take effect.
func (h *Hub) LocalSubscribers(channel string) int {
	ch := h.lookup(channel)
	if ch == nil {
		return 0
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return len(ch.subs)
}
