package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelMaster is the master name the harness's Sentinels monitor.
const SentinelMaster = "unstuck"

// SentinelInstall is the advice printed when neither redis-sentinel nor
// redis-server (which runs a Sentinel with --sentinel) is on PATH.
const SentinelInstall = "redis-sentinel not found on PATH: install it with `sudo apt-get install -y redis-sentinel` (Debian/Ubuntu) or `brew install redis` (macOS), or run `make test`"

// RedisSentinelEnv is a primary with two replicas, watched by three
// Sentinels (quorum 2) that fail it over about a second after it dies.
type RedisSentinelEnv struct {
	t testing.TB
	// Servers are the data nodes: Servers[0] starts as the primary and
	// the others replicate it. After a failover any of them may be it;
	// Primary says which.
	Servers []*RedisServer
	// Sentinels watch the servers.
	Sentinels []*SentinelServer
}

// SentinelServer is one Sentinel process.
type SentinelServer struct {
	t    testing.TB
	dir  string
	port int
	conf string
	proc process
}

// Addr is the Sentinel's host:port.
func (s *SentinelServer) Addr() string { return loopbackAddr(s.port) }

// Kill stops the Sentinel with SIGKILL.
func (s *SentinelServer) Kill() { s.proc.kill() }

func sentinelCommand(t testing.TB, conf string) *exec.Cmd {
	t.Helper()
	if bin, err := exec.LookPath("redis-sentinel"); err == nil {
		return exec.Command(bin, conf)
	}
	if bin, err := exec.LookPath("redis-server"); err == nil {
		return exec.Command(bin, conf, "--sentinel")
	}
	t.Skip(SentinelInstall)
	return nil
}

// RedisSentinel starts a primary, two replicas and three Sentinels on free
// loopback ports, waits until both replicas are in sync and every Sentinel
// knows them all, and stops everything when the test ends.
func RedisSentinel(t testing.TB) *RedisSentinelEnv {
	t.Helper()
	env := &RedisSentinelEnv{t: t}
	primary := Redis(t)
	env.Servers = append(env.Servers, primary)
	for range 2 {
		s := &RedisServer{t: t, dir: t.TempDir(), clusterArgs: []string{
			"--replicaof", "127.0.0.1", strconv.Itoa(primary.port),
		}}
		s.startOnFreePort()
		env.Servers = append(env.Servers, s)
	}
	Eventually(t, 30*time.Second, func() error {
		info, err := primary.Do("INFO", "replication")
		if err != nil {
			return err
		}
		if n := countOnline(info); n < 2 {
			return fmt.Errorf("primary has %d replicas online, want 2", n)
		}
		return nil
	})
	for range 3 {
		s := &SentinelServer{t: t, dir: t.TempDir()}
		var lastErr error
		for range 5 {
			s.port = FreePort(t)
			if lastErr = s.start(primary.port); lastErr == nil {
				break
			}
		}
		if lastErr != nil {
			t.Fatalf("testenv: redis-sentinel did not start: %v", lastErr)
		}
		t.Cleanup(s.Kill)
		env.Sentinels = append(env.Sentinels, s)
	}
	env.WaitHealthy()
	return env
}

func (s *SentinelServer) start(primaryPort int) error {
	s.conf = filepath.Join(s.dir, "sentinel.conf")
	// Sentinel rewrites its config file as it learns the topology, so each
	// gets its own, written once.
	if _, err := os.Stat(s.conf); err != nil {
		conf := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
daemonize no
loglevel warning
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 2
`, s.port, s.dir, SentinelMaster, primaryPort, SentinelMaster, SentinelMaster, SentinelMaster)
		if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
			return err
		}
	}
	cmd := sentinelCommand(s.t, s.conf)
	cmd.Dir = s.dir
	return s.proc.start(cmd, 10*time.Second, func() error { return Ping(s.Addr()) })
}

// countOnline counts the replicas INFO replication reports online.
func countOnline(info string) int {
	n := 0
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "slave") && strings.Contains(line, "state=online") {
			n++
		}
	}
	return n
}

// URL names the deployment as a store URL:
// redis+sentinel://S1,S2,S3/unstuck.
func (e *RedisSentinelEnv) URL() string {
	addrs := make([]string, len(e.Sentinels))
	for i, s := range e.Sentinels {
		addrs[i] = s.Addr()
	}
	return "redis+sentinel://" + strings.Join(addrs, ",") + "/" + SentinelMaster
}

// Primary returns the server the Sentinels currently name as primary.
func (e *RedisSentinelEnv) Primary() (*RedisServer, error) {
	var lastErr error
	for _, s := range e.Sentinels {
		reply, err := redisDo(s.Addr(), "SENTINEL", "get-master-addr-by-name", SentinelMaster)
		if err != nil {
			lastErr = err
			continue
		}
		host, port, ok := strings.Cut(reply, "\n")
		if !ok {
			lastErr = fmt.Errorf("sentinel %s answered %q", s.Addr(), reply)
			continue
		}
		for _, srv := range e.Servers {
			if strconv.Itoa(srv.port) == port && host == "127.0.0.1" {
				return srv, nil
			}
		}
		lastErr = fmt.Errorf("sentinel %s names unknown primary %s:%s", s.Addr(), host, port)
	}
	return nil, lastErr
}

// WaitHealthy waits until every Sentinel names the same live primary, that
// primary reports itself as master with every other live server attached
// and online, and every Sentinel knows two replicas and two other
// Sentinels: ready to fail over again.
func (e *RedisSentinelEnv) WaitHealthy() {
	e.t.Helper()
	Eventually(e.t, 45*time.Second, func() error {
		p, err := e.Primary()
		if err != nil {
			return err
		}
		for _, s := range e.Sentinels {
			reply, err := redisDo(s.Addr(), "SENTINEL", "get-master-addr-by-name", SentinelMaster)
			if err != nil {
				return err
			}
			if !strings.HasSuffix(reply, "\n"+strconv.Itoa(p.port)) {
				return fmt.Errorf("sentinel %s names %q, another names port %d", s.Addr(), reply, p.port)
			}
			if _, err := redisDo(s.Addr(), "SENTINEL", "ckquorum", SentinelMaster); err != nil {
				return fmt.Errorf("sentinel %s: %w", s.Addr(), err)
			}
			reply, err = redisDo(s.Addr(), "SENTINEL", "master", SentinelMaster)
			if err != nil {
				return err
			}
			f := pairs(reply)
			if f["num-slaves"] != strconv.Itoa(len(e.Servers)-1) || f["num-other-sentinels"] != strconv.Itoa(len(e.Sentinels)-1) {
				return fmt.Errorf("sentinel %s knows %s replicas and %s other sentinels", s.Addr(), f["num-slaves"], f["num-other-sentinels"])
			}
			reps, err := redisDo(s.Addr(), "SENTINEL", "replicas", SentinelMaster)
			if err != nil {
				return err
			}
			if strings.Contains(reps, "_down") || strings.Contains(reps, "disconnected") {
				return fmt.Errorf("sentinel %s still sees a replica down", s.Addr())
			}
		}
		info, err := p.Do("INFO", "replication")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:master") {
			return errors.New("the named primary is not master yet")
		}
		if n := countOnline(info); n < len(e.Servers)-1 {
			return fmt.Errorf("primary has %d replicas online, want %d", n, len(e.Servers)-1)
		}
		return nil
	})
}

// KillPrimary SIGKILLs the current primary and returns it, for Restart.
func (e *RedisSentinelEnv) KillPrimary() *RedisServer {
	e.t.Helper()
	p, err := e.Primary()
	if err != nil {
		e.t.Fatalf("testenv: no primary to kill: %v", err)
	}
	p.Kill()
	return p
}

// WaitFailover waits until the Sentinels name a primary other than old.
func (e *RedisSentinelEnv) WaitFailover(old *RedisServer, timeout time.Duration) {
	e.t.Helper()
	Eventually(e.t, timeout, func() error {
		p, err := e.Primary()
		if err != nil {
			return err
		}
		if p == old {
			return errors.New("the Sentinels still name the killed primary")
		}
		return nil
	})
}

// pairs reads a flat name/value reply, one element a line.
func pairs(reply string) map[string]string {
	lines := strings.Split(reply, "\n")
	m := make(map[string]string, len(lines)/2)
	for i := 0; i+1 < len(lines); i += 2 {
		m[lines[i]] = lines[i+1]
	}
	return m
}
