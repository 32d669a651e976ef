package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/jobs/natsjobs"
	"github.com/unstuck-dev/unstuck/jobs/redisjobs"
)

// vis is the visibility timeout in tests: short, so that a killed
// worker's job is claimed again quickly.
const vis = time.Second

// store is one running backend server that tests connect instances to.
type store struct {
	name string
	// addr is what a child process needs to connect: a NATS URL or a
	// Redis host:port.
	addr   string
	prefix string
	// nodes are every Redis node to scan for leftovers; default addr.
	nodes []string
}

var prefixSeq atomic.Int64

// stores starts one NATS and one Redis server for the test.
func stores(t *testing.T) []*store {
	t.Helper()
	n := testenv.NATS(t)
	r := testenv.Redis(t)
	return []*store{{name: "nats", addr: n.URL()}, {name: "redis", addr: r.Addr()}}
}

// fresh returns a copy of s with its own key prefix, so subtests sharing a
// server do not see each other's jobs.
func (s *store) fresh() *store {
	c := *s
	c.prefix = fmt.Sprintf("t%d", prefixSeq.Add(1))
	return &c
}

// connect opens a new client to the store, as a separate instance would,
// and returns its backend.
func (s *store) connect(t testing.TB) jobs.Backend {
	t.Helper()
	b, cleanup, err := connectBackend(s.name, s.addr, s.prefix, vis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return b
}

func connectBackend(name, addr, prefix string, vis time.Duration) (jobs.Backend, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch name {
	case "nats":
		b, err := natsjobs.New(ctx, natsjobs.Options{URL: addr, Name: prefix, VisibilityTimeout: vis})
		if err != nil {
			return nil, nil, err
		}
		return b, func() { _ = b.Close() }, nil
	case "redis":
		b, err := redisjobs.New(ctx, redisjobs.Options{URL: "redis://" + addr, Prefix: prefix, VisibilityTimeout: vis, ChunkSize: 4096})
		if err != nil {
			return nil, nil, err
		}
		return b, func() { _ = b.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown backend %q", name)
}

// assertNoPayloads waits until no payload bytes remain for the store's
// prefix: no objects (not even partial chunks or tombstones) in NATS, no
// keys in Redis. It waits because a worker deletes the payload just after
// it records the final state, never before (a crash in between must not
// leave a job without its input).
func assertNoPayloads(t *testing.T, s *store) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error { return payloadsLeft(t, s) })
}

func payloadsLeft(t *testing.T, s *store) error {
	t.Helper()
	ctx := context.Background()
	switch s.name {
	case "nats":
		nc, err := nats.Connect(s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		obs, err := js.ObjectStore(ctx, s.prefix+"_payloads")
		if err != nil {
			t.Fatal(err)
		}
		st, err := obs.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != 0 {
			return fmt.Errorf("payload bucket holds %d bytes, want none", st.Size())
		}
	case "redis":
		if keys := scanKeys(t, s, s.prefix+":payload:*"); len(keys) != 0 {
			return fmt.Errorf("payload keys left behind: %v", keys)
		}
	}
	return nil
}

// scanKeys lists the keys matching pattern on every node.
func scanKeys(t *testing.T, s *store, pattern string) []string {
	t.Helper()
	nodes := s.nodes
	if len(nodes) == 0 {
		nodes = []string{s.addr}
	}
	var keys []string
	for _, addr := range nodes {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
		if err != nil {
			t.Fatal(err)
		}
		cursor := uint64(0)
		for {
			e, err := c.Do(context.Background(), c.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
			if err != nil {
				c.Close()
				t.Fatal(err)
			}
			keys = append(keys, e.Elements...)
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
		c.Close()
	}
	return keys
}

// assertNoRecords checks that no job record exists under the prefix.
func assertNoRecords(t *testing.T, s *store) {
	t.Helper()
	ctx := context.Background()
	switch s.name {
	case "nats":
		nc, err := nats.Connect(s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		kv, err := js.KeyValue(ctx, s.prefix+"_status")
		if err != nil {
			t.Fatal(err)
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var all []string
		for k := range keys.Keys() {
			all = append(all, k)
		}
		if len(all) != 0 {
			t.Fatalf("records left behind: %v", all)
		}
	case "redis":
		if keys := scanKeys(t, s, s.prefix+":status:*"); len(keys) != 0 {
			t.Fatalf("records left behind: %v", keys)
		}
	}
}

// newManager starts an instance on s with cfg (Backend filled in).
func newManager(t testing.TB, s *store, cfg jobs.Config) *jobs.Manager {
	t.Helper()
	cfg.Backend = s.connect(t)
	if cfg.Logger == nil {
		// Worker logs go with the test's output, shown on failure or -v.
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	if cfg.Backoff == nil {
		cfg.Backoff = func(int) time.Duration { return 10 * time.Millisecond }
	}
	m, err := jobs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// run runs m's workers until the test ends and checks that Run returns.
func run(t testing.TB, m *jobs.Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
	})
}

// waitState polls until the job is in state want and returns its status.
func waitState(t testing.TB, m *jobs.Manager, id string, want jobs.State) jobs.Status {
	t.Helper()
	var st jobs.Status
	testenv.Eventually(t, 30*time.Second, func() error {
		var err error
		st, err = m.Status(context.Background(), id)
		if err != nil {
			return err
		}
		if st.State != want {
			return fmt.Errorf("state %s (error %q), want %s", st.State, st.Error, want)
		}
		return nil
	})
	return st
}

func submit(t testing.TB, m *jobs.Manager, kind, payload string) jobs.Status {
	t.Helper()
	st, err := m.Submit(context.Background(), kind, strings.NewReader(payload), jobs.SubmitOptions{Filename: "in.txt"})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return st
}

var errBoom = errors.New("boom")
