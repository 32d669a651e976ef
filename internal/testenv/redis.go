package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisInstall is the advice printed when redis-server is missing.
const RedisInstall = "redis-server not found on PATH: install it with `sudo apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis` (macOS), or run `make test`, which installs it when it can"

// RedisOptions configures a private redis-server. The zero value is an
// in-memory server with no persistence.
type RedisOptions struct {
	// AOF turns on the append-only file (fsync every write), so data
	// survives Kill and Restart.
	AOF bool
	// Args are extra redis-server arguments, such as "--maxmemory", "10mb".
	Args []string
}

// RedisServer is one private redis-server process on a loopback port.
type RedisServer struct {
	t    testing.TB
	opts RedisOptions
	dir  string
	port int
	// extra arguments added by the cluster starter.
	clusterArgs []string

	proc process
}

// Redis starts a private redis-server on a free loopback port, waits until
// it answers PING, and stops it when the test ends. With no options it keeps
// nothing on disk.
func Redis(t testing.TB, opts ...RedisOptions) *RedisServer {
	t.Helper()
	var o RedisOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	s := &RedisServer{t: t, opts: o, dir: t.TempDir()}
	s.startOnFreePort()
	return s
}

func requireRedisBinary(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(RedisInstall)
	}
	return path
}

// startOnFreePort retries on a new port when another process took the port
// between FreePort and bind.
func (s *RedisServer) startOnFreePort() {
	s.t.Helper()
	var lastErr error
	for range 5 {
		s.port = FreePort(s.t)
		if lastErr = s.start(); lastErr == nil {
			s.t.Cleanup(s.Stop)
			return
		}
	}
	s.t.Fatalf("testenv: redis-server did not start: %v", lastErr)
}

// Addr is the server's host:port.
func (s *RedisServer) Addr() string { return loopbackAddr(s.port) }

// URL names the server as a store URL, redis://HOST:PORT.
func (s *RedisServer) URL() string { return "redis://" + s.Addr() }

// Port is the server's TCP port.
func (s *RedisServer) Port() int { return s.port }

// Dir is the server's working directory (AOF and cluster files live there).
func (s *RedisServer) Dir() string { return s.dir }

func (s *RedisServer) args() []string {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--daemonize", "no",
		"--protected-mode", "yes",
		"--loglevel", "warning",
	}
	if s.opts.AOF {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, s.clusterArgs...)
	return append(args, s.opts.Args...)
}

func (s *RedisServer) start() error {
	bin := requireRedisBinary(s.t)
	cmd := exec.Command(bin, s.args()...)
	cmd.Dir = s.dir
	return s.proc.start(cmd, 10*time.Second, func() error { return Ping(s.Addr()) })
}

// Kill stops the server with SIGKILL, as a crash would, and waits until the
// process is gone. Unsynced data is lost unless AOF is on.
func (s *RedisServer) Kill() { s.proc.kill() }

// Restart starts the server again on the same port and directory, after a
// Kill or Stop, and waits until it answers.
func (s *RedisServer) Restart() {
	s.t.Helper()
	s.Kill()
	// The old socket may linger briefly; retry the same port for a while.
	err := WaitFor(10*time.Second, s.start)
	if err != nil {
		s.t.Fatalf("testenv: redis-server did not restart on port %d: %v", s.port, err)
	}
}

// Stop kills the server; the test's cleanup calls it.
func (s *RedisServer) Stop() { s.Kill() }

// Do sends one command over a fresh connection and returns the raw reply
// line(s). It exists so the harness needs no client library; tests of the
// project's code use the project's client.
func (s *RedisServer) Do(args ...string) (string, error) {
	return redisDo(s.Addr(), args...)
}

// Ping reports whether a Redis server at addr answers PING.
func Ping(addr string) error {
	reply, err := redisDo(addr, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("PING answered %q", reply)
	}
	return nil
}

// redisDo speaks just enough RESP for the harness: it sends one command and
// reads a simple, error, integer or bulk reply.
func redisDo(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn))
}

// readReply reads one RESP reply: simple, error, integer, bulk, or an
// array, whose elements come back one a line.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		elems := make([]string, 0, n)
		for range n {
			e, err := readReply(r)
			if err != nil {
				return "", err
			}
			elems = append(elems, e)
		}
		return strings.Join(elems, "\n"), nil
	}
	return line, nil
}
