package testenv

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisClusterEnv is a Redis Cluster of private nodes: masters, and
// optionally replicas that take over a killed master's slots.
type RedisClusterEnv struct {
	// Nodes are every node, in the order they were created: the first
	// ones start as masters, the rest as their replicas. Kill and Restart
	// one to fail its slots (or, with replicas, to fail it over).
	Nodes []*RedisServer
	// replicas per master.
	replicas int
}

// RedisCluster starts masters (at least 3) cluster-enabled redis-servers,
// joins them with `redis-cli --cluster create`, and waits until every node
// reports cluster_state:ok. cluster-require-full-coverage is off, so a
// killed node fails only the slots it serves, as in a production cluster
// configured for partial availability.
func RedisCluster(t testing.TB, masters int) *RedisClusterEnv {
	t.Helper()
	return RedisClusterReplicated(t, masters, 0)
}

// RedisClusterReplicated is RedisCluster with replicas replicas per master
// (masters*(1+replicas) nodes). A killed master's replica is promoted
// about a second later (cluster-node-timeout 1000 ms); WaitHealthy also
// waits until every replica is in sync.
func RedisClusterReplicated(t testing.TB, masters, replicas int) *RedisClusterEnv {
	t.Helper()
	if masters < 3 {
		t.Fatalf("testenv: a Redis Cluster needs at least 3 masters, got %d", masters)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli not found on PATH: install it with `sudo apt-get install -y redis-tools` (Debian/Ubuntu) or `brew install redis` (macOS)")
	}
	env := &RedisClusterEnv{replicas: replicas}
	for range masters * (1 + replicas) {
		s := &RedisServer{t: t, dir: t.TempDir(), clusterArgs: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000",
			"--cluster-require-full-coverage", "no",
			"--cluster-allow-reads-when-down", "no",
		}}
		s.startOnFreePort()
		env.Nodes = append(env.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	for _, n := range env.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	env.WaitHealthy(t)
	return env
}

// Addrs lists every node's host:port, for a client's seed list.
func (c *RedisClusterEnv) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL names the cluster as a store URL: the first node, with the others
// as further seeds.
func (c *RedisClusterEnv) URL() string {
	addrs := c.Addrs()
	u := "redis://" + addrs[0]
	for i, a := range addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// WaitHealthy waits until every node reports cluster_state:ok, as after
// creation or after a killed node was restarted.
func (c *RedisClusterEnv) WaitHealthy(t testing.TB) {
	t.Helper()
	Eventually(t, 30*time.Second, func() error {
		for _, n := range c.Nodes {
			info, err := n.Do("CLUSTER", "INFO")
			if err != nil {
				return fmt.Errorf("%s: %w", n.Addr(), err)
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s: cluster not ok yet", n.Addr())
			}
			if c.replicas == 0 {
				continue
			}
			repl, err := n.Do("INFO", "replication")
			if err != nil {
				return fmt.Errorf("%s: %w", n.Addr(), err)
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return fmt.Errorf("%s: replica not in sync yet", n.Addr())
			}
			if strings.Contains(repl, "role:master") && countOnline(repl) < c.replicas {
				return fmt.Errorf("%s: master has %d replicas online, want %d", n.Addr(), countOnline(repl), c.replicas)
			}
		}
		return nil
	})
}

// Masters returns the nodes that serve slots now, as their own CLUSTER
// NODES says (after a failover, promoted replicas are among them).
func (c *RedisClusterEnv) Masters() []*RedisServer {
	var out []*RedisServer
	for _, n := range c.Nodes {
		nodes, err := n.Do("CLUSTER", "NODES")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(nodes, "\n") {
			if strings.Contains(line, "myself") && strings.Contains(line, "master") && !strings.Contains(line, "fail") {
				out = append(out, n)
			}
		}
	}
	return out
}

// NodeForKey returns the index of the node that serves key's hash slot.
func (c *RedisClusterEnv) NodeForKey(t testing.TB, key string) int {
	t.Helper()
	for _, n := range c.Nodes {
		slotStr, err := n.Do("CLUSTER", "KEYSLOT", key)
		if err != nil {
			continue
		}
		slot, _ := strconv.Atoi(slotStr)
		for i, m := range c.Nodes {
			if m.ownsSlot(slot) {
				return i
			}
		}
	}
	t.Fatalf("testenv: no live node owns the slot of %q", key)
	return -1
}

// ownsSlot asks the node itself which slots it serves (CLUSTER MYSHARDID is
// too new for Redis 7.0, so parse CLUSTER NODES' "myself" line).
func (s *RedisServer) ownsSlot(slot int) bool {
	nodes, err := s.Do("CLUSTER", "NODES")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(nodes, "\n") {
		if !strings.Contains(line, "myself") {
			continue
		}
		fields := strings.Fields(line)
		for _, r := range fields[min(8, len(fields)):] {
			lo, hi, found := strings.Cut(r, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if found {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 == nil && err2 == nil && slot >= a && slot <= b {
				return true
			}
		}
	}
	return false
}
