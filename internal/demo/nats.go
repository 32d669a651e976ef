package demo

import (
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedNATS runs a NATS server with JetStream inside the demo process:
// the shared store and backplane of the demo, with nothing to install.
type EmbeddedNATS struct {
	srv *server.Server
}

// StartNATS starts the embedded server on a free loopback port (never the
// standard 4222, which a system NATS may hold) with JetStream data in dir.
func StartNATS(dir string) (*EmbeddedNATS, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("embedded nats: no free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return StartNATSOn(dir, port)
}

// StartNATSOn starts the embedded server on a given loopback port with
// JetStream data in dir: how a stopped server comes back where its clients
// (which reconnect by themselves) expect it, with the data it had.
func StartNATSOn(dir string, port int) (*EmbeddedNATS, error) {
	srv, err := server.NewServer(&server.Options{
		Host:               "127.0.0.1",
		Port:               port,
		JetStream:          true,
		StoreDir:           dir,
		NoLog:              true,
		NoSigs:             true,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  2 << 30,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready on port %d", port)
	}
	return &EmbeddedNATS{srv: srv}, nil
}

// URL is the client URL, nats://127.0.0.1:PORT.
func (n *EmbeddedNATS) URL() string { return n.srv.ClientURL() }

// Port is the client port.
func (n *EmbeddedNATS) Port() int { return n.srv.Addr().(*net.TCPAddr).Port }

// InMsgs counts the messages clients have sent the server since it
// started: every KV read and write, publish and pull request is one, so it
// measures the store's load in round trips.
func (n *EmbeddedNATS) InMsgs() uint64 {
	v, err := n.srv.Varz(nil)
	if err != nil {
		return 0
	}
	return uint64(v.InMsgs)
}

// Shutdown stops the server and waits until it has.
func (n *EmbeddedNATS) Shutdown() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}
