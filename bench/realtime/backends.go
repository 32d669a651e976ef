package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/natsbroker"
	"github.com/unstuck-dev/unstuck/realtime/redisbroker"
)

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startBackend starts a private backplane and returns a maker of brokers
// (one per hub, as separate instances would have) and a stop function.
func startBackend(name string) (func() (realtime.Broker, error), func(), error) {
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	switch name {
	case "redis":
		dir, err := os.MkdirTemp("", "rtbench")
		if err != nil {
			return nil, nil, err
		}
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", dir, "--loglevel", "warning")
		if err := cmd.Start(); err != nil {
			return nil, nil, fmt.Errorf("redis-server: %w", err)
		}
		stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = os.RemoveAll(dir) }
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var clients []rueidis.Client
		mk := func() (realtime.Broker, error) {
			var c rueidis.Client
			var err error
			for range 100 { // redis-server takes a moment to listen
				if c, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true}); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				return nil, err
			}
			clients = append(clients, c)
			return redisbroker.New(context.Background(), redisbroker.Options{Client: c})
		}
		return mk, func() {
			for _, c := range clients {
				c.Close()
			}
			stop()
		}, nil
	case "nats":
		dir, err := os.MkdirTemp("", "rtbench")
		if err != nil {
			return nil, nil, err
		}
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
		if err != nil {
			return nil, nil, err
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			return nil, nil, fmt.Errorf("nats server not ready")
		}
		var conns []*nats.Conn
		mk := func() (realtime.Broker, error) {
			nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1))
			if err != nil {
				return nil, err
			}
			conns = append(conns, nc)
			return natsbroker.New(context.Background(), natsbroker.Options{Client: nc})
		}
		return mk, func() {
			for _, c := range conns {
				c.Close()
			}
			s.Shutdown()
			s.WaitForShutdown()
			_ = os.RemoveAll(dir)
		}, nil
	}
	return nil, nil, fmt.Errorf("unknown backend %q (want redis or nats)", name)
}
