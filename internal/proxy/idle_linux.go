package proxy

import "syscall"

// rawRead is the RawConn read callback: one read(2) into a borrowed
// buffer, kept only when something (bytes, end of stream, an error) came.
// Returning false parks the goroutine until the socket is readable.
func (cc *clientConn) rawRead(fd uintptr) bool {
	if cc.rd.buf == nil {
		cc.rd.buf = cc.s.bufs.getRead()
	}
	for {
		n, err := syscall.Read(int(fd), cc.rd.buf[cc.rd.w:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			if cc.rd.w == 0 {
				cc.s.bufs.putRead(cc.rd.buf)
				cc.rd.buf = nil
			}
			return false
		}
		cc.idle.n, cc.idle.err = max(n, 0), err
		return true
	}
}
