package testenv

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSServer is an in-process NATS server with JetStream.
type NATSServer struct {
	t      testing.TB
	opts   server.Options
	Server *server.Server
}

// NATS starts a real NATS server in-process with JetStream stored in
// t.TempDir(), on a free loopback port (never 4222, which a system NATS may
// hold), and shuts it down when the test ends.
func NATS(t testing.TB) *NATSServer {
	t.Helper()
	n := &NATSServer{t: t, opts: server.Options{
		Host:      "127.0.0.1",
		Port:      FreePort(t),
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
		// A test store should not compete with the machine for memory.
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  1 << 30,
	}}
	n.start()
	t.Cleanup(n.Shutdown)
	return n
}

func (n *NATSServer) start() {
	n.t.Helper()
	opts := n.opts // the server keeps and mutates its Options
	s, err := server.NewServer(&opts)
	if err != nil {
		n.t.Fatalf("testenv: nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		n.t.Fatalf("testenv: nats server on port %d not ready", n.opts.Port)
	}
	n.Server = s
}

// URL is the client URL, nats://127.0.0.1:PORT.
func (n *NATSServer) URL() string { return n.Server.ClientURL() }

// Shutdown stops the server; its JetStream data stays on disk for Restart.
func (n *NATSServer) Shutdown() {
	if n.Server != nil && n.Server.Running() {
		n.Server.Shutdown()
		n.Server.WaitForShutdown()
	}
}

// Restart shuts the server down and starts it again on the same port with
// the same JetStream directory, as a restarted NATS process would be.
func (n *NATSServer) Restart() {
	n.t.Helper()
	n.Shutdown()
	n.start()
}

// NATSClusterEnv is a cluster of in-process NATS servers with JetStream,
// each with its own store directory, joined by routes.
type NATSClusterEnv struct {
	t testing.TB
	// Nodes are the servers; Shutdown one to lose it, Restart it to bring
	// it back on the same ports and directory.
	Nodes []*NATSServer
}

// NATSCluster starts size (at least 3) NATS servers with JetStream in one
// cluster, waits until JetStream has a meta leader, and shuts them down
// when the test ends.
func NATSCluster(t testing.TB, size int) *NATSClusterEnv {
	t.Helper()
	if size < 3 {
		t.Fatalf("testenv: a JetStream cluster needs at least 3 nodes, got %d", size)
	}
	env := &NATSClusterEnv{t: t}
	clusterPorts := make([]int, size)
	routes := make([]string, size)
	for i := range size {
		clusterPorts[i] = FreePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", clusterPorts[i])
	}
	for i := range size {
		n := &NATSServer{t: t, opts: server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       FreePort(t),
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "unstuck",
				Host: "127.0.0.1",
				Port: clusterPorts[i],
			},
			Routes:             server.RoutesFromStr(strings.Join(routes, ",")),
			JetStreamMaxMemory: 128 << 20,
			JetStreamMaxStore:  1 << 30,
		}}
		// A clustered server is ready for clients before its routes
		// are up, so start them all before waiting on JetStream.
		s, err := server.NewServer(&n.opts)
		if err != nil {
			t.Fatalf("testenv: nats server: %v", err)
		}
		go s.Start()
		n.Server = s
		t.Cleanup(n.Shutdown)
		env.Nodes = append(env.Nodes, n)
	}
	for _, n := range env.Nodes {
		if !n.Server.ReadyForConnections(10 * time.Second) {
			t.Fatalf("testenv: nats server %s not ready", n.opts.ServerName)
		}
	}
	env.WaitHealthy()
	return env
}

// URL lists every node as a client URL list, nats://A,nats://B,...
func (c *NATSClusterEnv) URL() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port)
	}
	return strings.Join(urls, ",")
}

// WaitHealthy waits until every running node is routed to all the others,
// is current with JetStream's meta group, and the meta leader sees every
// running node as a live peer.
func (c *NATSClusterEnv) WaitHealthy() {
	c.t.Helper()
	Eventually(c.t, 30*time.Second, func() error {
		running, leaders := 0, 0
		var leader *server.Server
		for _, n := range c.Nodes {
			if n.Server == nil || !n.Server.Running() {
				continue
			}
			running++
			if r := n.Server.NumRoutes(); r < len(c.Nodes)-1 {
				return fmt.Errorf("%s has %d routes, want %d", n.opts.ServerName, r, len(c.Nodes)-1)
			}
			if !n.Server.JetStreamIsClustered() || !n.Server.JetStreamIsCurrent() {
				return fmt.Errorf("%s: JetStream not current yet", n.opts.ServerName)
			}
			if n.Server.JetStreamIsLeader() {
				leaders++
				leader = n.Server
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d JetStream meta leaders", leaders)
		}
		if peers := leader.JetStreamClusterPeers(); len(peers) < running {
			return fmt.Errorf("the meta leader sees %d live peers, want %d", len(peers), running)
		}
		return nil
	})
}
