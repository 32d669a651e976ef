//go:build !linux

package proxy

import (
	"bufio"
	"errors"
	"net"
	"syscall"
	"time"
)

// Without splice(2) every body takes the buffered path: rawConnOf reports
// no RawConn, so spliceBody is never called.

const spliceMin = 32 << 10

type pipePool struct{}

func (p *pipePool) close() {}

func rawConnOf(net.Conn) syscall.RawConn { return nil }

// alive: without the peek, a streamed body always gets a fresh connection.
func (uc *upConn) alive() bool { return false }

func (s *Server) spliceBody(b *bodyState, rd *connReader, src syscall.RawConn, srcTimeout time.Duration,
	bw *bufio.Writer, dw *connWriter, dst syscall.RawConn) (srcErr, dstErr error) {
	return nil, errors.New("proxy: splice unsupported")
}
