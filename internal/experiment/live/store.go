package live

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/unstuck-dev/unstuck/internal/demo"
	"github.com/unstuck-dev/unstuck/internal/storeurl"
	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
)

// store is the shared store of one architecture's run: one the experiment
// started (and can stop and start again on the same port and data, for the
// store_restart phase) or one it was given.
type store interface {
	// AppArgs are the `unstuck app` flags that use it.
	AppArgs() []string
	// Describe names it for the report.
	Describe() string
	// Restartable reports whether Stop and Start work; a store the
	// experiment did not start cannot be restarted by it.
	Restartable() bool
	Stop() error
	Start() error
	// Ops counts the operations it has served since the run began, across
	// restarts; false when it cannot be asked.
	Ops() (uint64, bool)
	Close()
}

// openStore starts or names the store for --store spec: "nats" (embedded),
// "redis" (a private redis-server), or a store URL the experiment does not
// own. A sessions-only URL (dynamodb://) gets an embedded NATS for chat and
// jobs. dir holds the store's data.
func openStore(spec, dir string, logw io.Writer) (store, error) {
	switch spec {
	case "nats":
		return startNATS(dir)
	case "redis":
		return startRedis(dir, logw)
	}
	kind, err := storeurl.Kind(spec)
	if err != nil {
		return nil, err
	}
	if kind == "dynamodb" || kind == "memory" {
		if kind == "memory" {
			return nil, errors.New("memory holds each instance's sessions only: pick nats, redis or a shared store's URL")
		}
		n, err := startNATS(dir)
		if err != nil {
			return nil, err
		}
		return &sessionsElsewhere{natsStore: n, url: spec}, nil
	}
	return &external{url: spec}, nil
}

// natsStore is the embedded NATS server, in this process.
type natsStore struct {
	dir  string
	port int
	mu   sync.Mutex
	srv  *demo.EmbeddedNATS
	url  string
	base uint64 // InMsgs of the servers before the current one
}

func startNATS(dir string) (*natsStore, error) {
	srv, err := demo.StartNATS(dir)
	if err != nil {
		return nil, err
	}
	return &natsStore{dir: dir, port: srv.Port(), srv: srv, url: srv.URL()}, nil
}

func (n *natsStore) AppArgs() []string { return []string{"--store", n.url} }
func (n *natsStore) Describe() string {
	return "embedded NATS JetStream (file storage), started by the experiment"
}
func (n *natsStore) Restartable() bool { return true }

func (n *natsStore) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return errors.New("embedded nats: not running")
	}
	n.base += n.srv.InMsgs()
	n.srv.Shutdown()
	n.srv = nil
	return nil
}

func (n *natsStore) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return nil
	}
	srv, err := demo.StartNATSOn(n.dir, n.port)
	if err != nil {
		return err
	}
	n.srv = srv
	return nil
}

func (n *natsStore) Ops() (uint64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return n.base, true
	}
	return n.base + n.srv.InMsgs(), true
}

func (n *natsStore) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv = nil
	}
}

// sessionsElsewhere keeps sessions in a store the experiment does not own
// (DynamoDB) and chat and jobs in an embedded NATS it does: restarting
// "the store" restarts the backplane only.
type sessionsElsewhere struct {
	*natsStore
	url string
}

func (s *sessionsElsewhere) AppArgs() []string {
	return []string{"--store", s.url, "--backplane", s.natsStore.url}
}

func (s *sessionsElsewhere) Describe() string {
	return "sessions in " + redactURL(s.url) + " (not started by the experiment); chat and jobs in an embedded NATS"
}

// external is a store the experiment was given: it can neither restart it
// nor count its operations.
type external struct{ url string }

func (e *external) AppArgs() []string   { return []string{"--store", e.url} }
func (e *external) Describe() string    { return redactURL(e.url) + " (not started by the experiment)" }
func (e *external) Restartable() bool   { return false }
func (e *external) Stop() error         { return errors.New("the experiment did not start this store") }
func (e *external) Start() error        { return errors.New("the experiment did not start this store") }
func (e *external) Ops() (uint64, bool) { return 0, false }
func (e *external) Close()              {}

// redisStore is a private redis-server on a free loopback port, with an
// append-only file so a restart keeps what it held, as a production Redis
// with persistence does.
type redisStore struct {
	dir  string
	port int
	logw io.Writer
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	base uint64
}

func startRedis(dir string, logw io.Writer) (*redisStore, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("--store redis needs redis-server on PATH (apt-get install redis-server), or give a redis:// URL")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &redisStore{dir: dir, port: port, logw: logw}
	return r, r.Start()
}

func (r *redisStore) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisStore) AppArgs() []string { return []string{"--store", "redis://" + r.addr()} }
func (r *redisStore) Describe() string {
	return "private redis-server (append-only file), started by the experiment"
}
func (r *redisStore) Restartable() bool { return true }

func (r *redisStore) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
		"--protected-mode", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = r.logw, r.logw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := redisInfo(r.addr()); err == nil {
			break
		}
		select {
		case <-done:
			return errors.New("redis-server exited at start (see the log)")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return errors.New("redis-server not ready within 10s")
		}
	}
	r.cmd, r.done = cmd, done
	return nil
}

// Stop shuts Redis down cleanly (SIGTERM: it syncs its append-only file).
func (r *redisStore) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return errors.New("redis-server: not running")
	}
	if n, err := redisInfo(r.addr()); err == nil {
		r.base += n
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	}
	r.cmd = nil
	return nil
}

func (r *redisStore) Ops() (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return r.base, true
	}
	n, err := redisInfo(r.addr())
	if err != nil {
		return 0, false
	}
	return r.base + n, true
}

func (r *redisStore) Close() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// redisInfo asks Redis for total_commands_processed over a plain RESP
// exchange (no client library state to survive restarts).
func redisInfo(addr string) (uint64, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n"); err != nil {
		return 0, err
	}
	br := bufio.NewReader(c)
	head, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return 0, fmt.Errorf("redis INFO: unexpected answer %q", head)
	}
	size, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil || size < 0 || size > 1<<20 {
		return 0, fmt.Errorf("redis INFO: bad size %q", head)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, err
	}
	for _, ln := range strings.Split(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(ln, "total_commands_processed:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("redis INFO: no total_commands_processed")
}

// redactURL hides a password in a store URL.
func redactURL(raw string) string {
	// connect.Redact hides the password of every URL in a NATS list too.
	return connect.Redact(raw)
}

// tempDir makes a directory for one architecture's store data.
func tempDir(parent, arch string) (string, error) {
	if parent == "" {
		return os.MkdirTemp("", "unstuck-experiment-"+arch+"-")
	}
	d := filepath.Join(parent, arch)
	return d, os.MkdirAll(d, 0o755)
}
