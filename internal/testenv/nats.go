package testenv

import (
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
	if n.Server != nil {
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
