package redisstore_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/redisstore"
	"github.com/unstuck-dev/unstuck/session/sessiontest"
)

// TestDurableConformance: with Durability on, the store still passes the
// suite, on a Sentinel deployment (through a redis+sentinel:// URL) and on
// a Cluster with a replica per master, where each write's WAIT must reach
// the node that took the write.
func TestDurableConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replicated Redis deployments")
	}
	t.Parallel()
	durable := redisstore.Durability{Replicas: 1, Timeout: 2 * time.Second}
	t.Run("Sentinel", func(t *testing.T) {
		env := testenv.RedisSentinel(t)
		sessiontest.Run(t, func(t *testing.T) session.Store {
			return newStore(t, redisstore.Options{URL: env.URL(), Durability: durable})
		})
	})
	t.Run("Cluster", func(t *testing.T) {
		env := testenv.RedisClusterReplicated(t, 3, 1)
		sessiontest.Run(t, func(t *testing.T) session.Store {
			return newStore(t, redisstore.Options{URL: env.URL(), Durability: durable})
		})
	})
}

// TestDurabilityRefusesAnUnreplicatedWrite: a write no replica confirms is
// an error (the middleware's 503), never an acknowledgement; the same
// store without Durability acknowledges it.
func TestDurabilityRefusesAnUnreplicatedWrite(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t) // no replicas at all
	st := newStore(t, redisstore.Options{URL: srv.URL(), Durability: redisstore.Durability{Replicas: 1, Timeout: 50 * time.Millisecond}})
	_, err := st.Commit(context.Background(), "s1", session.Change{Create: true, Deadline: time.Now().Add(time.Hour), Set: map[string][]byte{"a": []byte("1")}})
	if !errors.Is(err, redisstore.ErrNotReplicated) {
		t.Fatalf("Commit with no replica = %v, want ErrNotReplicated", err)
	}
	m, err := session.New(session.Config{Store: st, StoreTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(sessiontest.Shop(m))
	defer hs.Close()
	c := sessiontest.NewClient(t, hs.URL)
	if code, body := c.Do("POST", "/set/a/1"); code != 503 {
		t.Fatalf("POST /set/a/1 unreplicated = %d %q, want 503", code, body)
	}

	plain := newStore(t, redisstore.Options{URL: srv.URL()})
	if _, err := plain.Commit(context.Background(), "s2", session.Change{Create: true, Deadline: time.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("Commit without Durability: %v", err)
	}
}
