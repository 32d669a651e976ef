//go:build !linux

package proxy

// rawRead is never called without a RawConn (rawConnOf is nil here).
func (cc *clientConn) rawRead(uintptr) bool { return true }
