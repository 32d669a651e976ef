package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

func newClient(t *testing.T, addrs ...string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:      addrs,
		DisableCache:     true,
		ConnWriteTimeout: time.Second,
	})
	if err != nil {
		t.Fatalf("rueidis: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestRedisKillAndRestart(t *testing.T) {
	srv := testenv.Redis(t)
	c := newClient(t, srv.Addr())
	ctx := context.Background()

	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Do(ctx, c.B().Get().Key("k").Build()).ToString(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}

	srv.Kill()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := c.Do(short, c.B().Get().Key("k").Build()).Error()
	cancel()
	if err == nil || rueidis.IsRedisNil(err) {
		t.Fatalf("GET on a killed server: err = %v, want a connection error", err)
	}

	srv.Restart()
	// The client reconnects by itself; without AOF the key is gone.
	testenv.Eventually(t, 10*time.Second, func() error {
		err := c.Do(ctx, c.B().Get().Key("k").Build()).Error()
		if rueidis.IsRedisNil(err) {
			return nil
		}
		return fmt.Errorf("GET after restart: %v", err)
	})
}

func TestRedisAOFSurvivesKill(t *testing.T) {
	srv := testenv.Redis(t, testenv.RedisOptions{AOF: true})
	if _, err := srv.Do("SET", "k", "kept"); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	srv.Restart()
	if got, err := srv.Do("GET", "k"); err != nil || got != "kept" {
		t.Fatalf("GET after restart with AOF = %q, %v; want kept", got, err)
	}
}

func TestRedisClusterAnswersEverySlot(t *testing.T) {
	cl := testenv.RedisCluster(t, 3)
	c := newClient(t, cl.Addrs()...)
	ctx := context.Background()
	// 64 keys with distinct hash tags cover all three masters.
	for i := range 64 {
		key := fmt.Sprintf("{tag%d}k", i)
		if err := c.Do(ctx, c.B().Set().Key(key).Value("v").Build()).Error(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
	}
	seen := map[int]bool{}
	for i := range 64 {
		seen[cl.NodeForKey(t, fmt.Sprintf("{tag%d}k", i))] = true
	}
	if len(seen) != 3 {
		t.Fatalf("keys landed on %d nodes, want all 3", len(seen))
	}

	// Killing one master fails only its slots; the rest keep answering.
	victim := cl.NodeForKey(t, "{tag0}k")
	cl.Nodes[victim].Kill()
	var okOther bool
	for i := range 64 {
		key := fmt.Sprintf("{tag%d}k", i)
		short, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Do(short, c.B().Get().Key(key).Build()).Error()
		cancel()
		if err == nil {
			okOther = true
		}
	}
	if !okOther {
		t.Fatal("no key answered with one master down; the other masters' slots should still serve")
	}
	cl.Nodes[victim].Restart()
	cl.WaitHealthy(t)
	testenv.Eventually(t, 15*time.Second, func() error {
		return c.Do(ctx, c.B().Set().Key("{tag0}k").Value("back").Build()).Error()
	})
}

func TestNATSJetStreamKV(t *testing.T) {
	srv := testenv.NATS(t)
	if srv.Server.Addr().String() == "127.0.0.1:4222" {
		t.Fatal("test NATS took the standard port 4222")
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "sessions"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "a")
	if err != nil || string(e.Value()) != "1" {
		t.Fatalf("Get = %v, %v", e, err)
	}
	if _, err := kv.Get(ctx, "missing"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("Get(missing) err = %v, want ErrKeyNotFound", err)
	}

	// Data is on disk: it survives a restart on the same port.
	nc.Close()
	srv.Restart()
	nc2, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	kv2, err := js2.KeyValue(ctx, "sessions")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv2.Get(ctx, "a"); err != nil || string(e.Value()) != "1" {
		t.Fatalf("Get after restart = %v, %v", e, err)
	}
}

// TestRedisSentinelFailsOver: the Sentinels promote a replica after the
// primary is killed, and a write acknowledged by the new primary reads
// back once the old one is restarted (it rejoins as a replica).
func TestRedisSentinelFailsOver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six processes and waits for a failover")
	}
	env := testenv.RedisSentinel(t)
	old := env.KillPrimary()
	env.WaitFailover(old, 30*time.Second)
	p, err := env.Primary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Do("SET", "k", "after"); err != nil {
		t.Fatalf("SET on the new primary: %v", err)
	}
	old.Restart()
	env.WaitHealthy()
	if got, _ := p.Do("GET", "k"); got != "after" {
		t.Fatalf("GET after the old primary rejoined = %q", got)
	}
}

// TestRedisClusterReplicaTakesOver: with a replica per master, killing a
// master moves its slots to the replica, and the restarted master rejoins.
func TestRedisClusterReplicaTakesOver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six processes and waits for a failover")
	}
	env := testenv.RedisClusterReplicated(t, 3, 1)
	if got := len(env.Masters()); got != 3 {
		t.Fatalf("%d masters, want 3", got)
	}
	c := newClient(t, env.Addrs()...)
	ctx := context.Background()
	victim := env.Nodes[env.NodeForKey(t, "k")]
	victim.Kill()
	testenv.Eventually(t, 30*time.Second, func() error {
		return c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error()
	})
	victim.Restart()
	env.WaitHealthy(t)
	if got := len(env.Masters()); got != 3 {
		t.Fatalf("%d masters after the rejoin, want 3", got)
	}
}

// TestNATSClusterSurvivesANode: a stream with three replicas keeps
// accepting writes with one node shut down, and the node catches up after
// its restart.
func TestNATSClusterSurvivesANode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node JetStream cluster")
	}
	env := testenv.NATSCluster(t, 3)
	nc, err := nats.Connect(env.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Each try gets its own deadline: a JetStream API request that
	// arrives while the cluster elects a meta or stream leader (which a
	// loaded machine brings about) is never answered, and would hold the
	// poll past its own deadline.
	try := func(op func(ctx context.Context) error) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			return op(ctx)
		}
	}
	var kv jetstream.KeyValue
	testenv.Eventually(t, 30*time.Second, try(func(ctx context.Context) (err error) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", Replicas: 3})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, "b") // an unanswered try created it
		}
		return err
	}))
	testenv.Eventually(t, 30*time.Second, try(func(ctx context.Context) error {
		_, err := kv.Put(ctx, "k", []byte("1"))
		return err
	}))
	env.Nodes[0].Shutdown()
	testenv.Eventually(t, 30*time.Second, try(func(ctx context.Context) error {
		_, err := kv.Put(ctx, "k", []byte("2"))
		return err
	}))
	env.Nodes[0].Restart()
	env.WaitHealthy()
	// Read through the restarted node: its replica answers direct gets
	// once it has caught up.
	rnc, err := nats.Connect(env.Nodes[0].URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rnc.Close()
	rjs, _ := jetstream.New(rnc)
	testenv.Eventually(t, 30*time.Second, try(func(ctx context.Context) error {
		rkv, err := rjs.KeyValue(ctx, "b")
		if err != nil {
			return err
		}
		e, err := rkv.Get(ctx, "k")
		if err != nil {
			return err
		}
		if string(e.Value()) != "2" {
			return fmt.Errorf("the restarted node holds %q, want 2", e.Value())
		}
		return nil
	}))
}
