//go:build !linux

package proxy

import "time"

// Without epoll, idle connections keep their goroutines: park refuses.

const defaultParkAfter = 0

type idler struct{}

func (id *idler) stop(*Server) {}
func (id *idler) count() int   { return 0 }

func (cc *clientConn) park(time.Duration) bool { return false }
