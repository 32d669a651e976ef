package jsread

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// r3 creates bucket "b" with three replicas on env and returns it with
// the node that leads it and the others.
func r3(t testing.TB, ctx context.Context, env *testenv.NATSClusterEnv) (jetstream.KeyValue, *testenv.NATSServer, []*testenv.NATSServer) {
	t.Helper()
	_, js := connect(t, env.URL())
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", Replicas: 3, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "KV_b")
	if err != nil {
		t.Fatal(err)
	}
	var leader *testenv.NATSServer
	var others []*testenv.NATSServer
	for _, n := range env.Nodes {
		if n.Server.Name() == st.CachedInfo().Cluster.Leader {
			leader = n
		} else {
			others = append(others, n)
		}
	}
	return kv, leader, others
}

// TestReadsSeeAcknowledgedWrites writes through the bucket's leader and
// reads at once through a connection to another node, where direct gets
// are answered by that node's replica: every read must see the write
// just acknowledged, and keys listed must include every key written.
func TestReadsSeeAcknowledgedWrites(t *testing.T) {
	env := testenv.NATSCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kv, _, others := r3(t, ctx, env)
	_, fjs := connect(t, others[0].URL())
	r, err := OpenKV(ctx, fjs, "b")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Replicated() {
		t.Fatal("an R3 bucket must be read through its leader")
	}
	fkv, err := fjs.KeyValue(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 300
	stale := 0
	for i := range rounds {
		key := fmt.Sprintf("k.%d", i%10)
		want := fmt.Sprint(i)
		rev, err := kv.Put(ctx, key, []byte(want))
		if err != nil {
			t.Fatal(err)
		}
		if e, err := fkv.Get(ctx, key); err != nil || e.Revision() != rev {
			stale++ // the library's direct get, for the record
		}
		got, gotRev, err := r.Get(ctx, key)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if string(got) != want || gotRev != rev {
			t.Fatalf("round %d: read %q at revision %d right after writing %q at %d", i, got, gotRev, want, rev)
		}
		if i < 10 {
			keys, err := r.Keys(ctx, "k.*")
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != i+1 {
				t.Fatalf("round %d: listed %v, want %d keys", i, keys, i+1)
			}
		}
	}
	t.Logf("direct gets on the follower were stale in %d of %d reads", stale, rounds)

	if err := kv.Delete(ctx, "k.1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Get(ctx, "k.1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("Get of a deleted key: %v, want ErrKeyNotFound", err)
	}
	if _, _, err := r.Get(ctx, "never"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("Get of a missing key: %v, want ErrKeyNotFound", err)
	}
}

// TestLeaderLossIsRetryable kills the stream leader's node: a read then
// fails with ErrNoLeader (never an old value from a replica), and succeeds
// again once a new leader is elected.
func TestLeaderLossIsRetryable(t *testing.T) {
	env := testenv.NATSCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, leader, others := r3(t, ctx, env)
	rev, err := kv.Put(ctx, "k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	leader.Shutdown()
	_, ojs := connect(t, others[0].URL())
	r, err := OpenKV(ctx, ojs, "b")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		v, got, err := r.Get(ctx, "k")
		if err != nil {
			if !errors.Is(err, ErrNoLeader) {
				t.Fatalf("read while the leader is gone: %v, want ErrNoLeader", err)
			}
			return err
		}
		if string(v) != "v" || got != rev {
			t.Fatalf("read %q at %d, want v at %d", v, got, rev)
		}
		return nil
	})
}

// TestSingleReplicaReadsDirect keeps the fast path where there is no
// replica to lag.
func TestSingleReplicaReadsDirect(t *testing.T) {
	srv := testenv.NATS(t)
	ctx := context.Background()
	_, js := connect(t, srv.URL())
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenKV(ctx, js, "b")
	if err != nil {
		t.Fatal(err)
	}
	if r.Replicated() {
		t.Fatal("an R1 bucket has no replica to lag")
	}
	rev, _ := kv.Put(ctx, "a.b", []byte("x"))
	if v, got, err := r.Get(ctx, "a.b"); err != nil || string(v) != "x" || got != rev {
		t.Fatalf("Get = %q, %d, %v", v, got, err)
	}
	if keys, err := r.Keys(ctx, "a.>"); err != nil || len(keys) != 1 || keys[0] != "a.b" {
		t.Fatalf("Keys = %v, %v", keys, err)
	}
}

// BenchmarkGet reads one key of an R3 bucket through a follower's
// connection: the library's direct get (answered by the nearest replica)
// against the leader's get this package sends.
func BenchmarkGet(b *testing.B) {
	env := testenv.NATSCluster(b, 3)
	ctx := context.Background()
	kv, _, others := r3(b, ctx, env)
	if _, err := kv.Put(ctx, "k", make([]byte, 512)); err != nil {
		b.Fatal(err)
	}
	_, fjs := connect(b, others[0].URL())
	fkv, _ := fjs.KeyValue(ctx, "b")
	r, err := OpenKV(ctx, fjs, "b")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := fkv.Get(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("leader", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := r.Get(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
