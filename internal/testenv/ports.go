package testenv

import (
	"net"
	"strconv"
	"testing"
)

// FreePort returns a loopback TCP port that was free a moment ago. A service
// started on it may still lose a race with another process, so starters
// retry with a new port when binding fails.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func loopbackAddr(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
