package redisjobs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/jobs/jobstest"
	"github.com/unstuck-dev/unstuck/jobs/redisjobs"
)

func TestConformance(t *testing.T) {
	// With its append-only file, so a restart keeps the data.
	srv := testenv.Redis(t, testenv.RedisOptions{AOF: true})
	jobstest.RunWith(t, func(t *testing.T) jobs.Backend {
		sum := sha256.Sum256([]byte(t.Name()))
		b, err := redisjobs.New(context.Background(), redisjobs.Options{
			URL: srv.URL(), Prefix: "c" + hex.EncodeToString(sum[:6]), VisibilityTimeout: time.Second, ChunkSize: 64 << 10,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}, jobstest.Options{Restart: srv.Restart})
}

func TestConfigValidation(t *testing.T) {
	if _, err := redisjobs.New(context.Background(), redisjobs.Options{}); err == nil {
		t.Fatal("Options without URL or Client were accepted")
	}
}

func consumers(t *testing.T, c rueidis.Client, key string) map[string]int64 {
	t.Helper()
	infos, err := c.Do(context.Background(), c.B().XinfoConsumers().Key(key).Group("workers").Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, info := range infos {
		m, _ := info.AsMap()
		nameMsg, pendingMsg := m["name"], m["pending"]
		name, _ := nameMsg.ToString()
		out[name], _ = pendingMsg.AsInt64()
	}
	return out
}

// TestLeave: a leaving worker's consumer goes unless it holds a job, and
// idle empty consumers of crashed workers are pruned with it.
func TestLeave(t *testing.T) {
	srv := testenv.Redis(t)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := redisjobs.New(context.Background(), redisjobs.Options{Client: c, Prefix: "lv", VisibilityTimeout: time.Minute, StaleConsumerAfter: time.Millisecond})
	ctx := context.Background()
	if err := b.Enqueue(ctx, "k", "j1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, "k", "busy"); err != nil { // holds j1, never acks
		t.Fatal(err)
	}
	key := "lv:queue:{k}"
	// Workers that joined the group and hold nothing: one crashed long
	// ago, one is leaving now.
	for _, name := range []string{"crashed", "leaving"} {
		if err := c.Do(ctx, c.B().XgroupCreateconsumer().Key(key).Group("workers").Consumer(name).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if got := consumers(t, c, key); len(got) != 3 {
		t.Fatalf("consumers before = %v", got)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if err := b.Leave(ctx, "k", "leaving"); err != nil {
			return err
		}
		got := consumers(t, c, key)
		if len(got) != 1 || got["busy"] != 1 {
			return fmt.Errorf("consumers after = %v, want only busy with its job", got)
		}
		return nil
	})
}

// TestLostReplyAppliedOnce: calls that reached Redis and were applied,
// whose replies were lost with their connection, are repeated on a fresh
// connection and recognised: a payload's chunks are stored once, a record
// update does not conflict with itself, an enqueued job is queued once.
func TestLostReplyAppliedOnce(t *testing.T) {
	srv := testenv.Redis(t)
	cut := testenv.CutReplies(t, srv.Addr())
	b, err := redisjobs.New(context.Background(), redisjobs.Options{URL: "redis://" + cut.Addr(), Prefix: "lost", ChunkSize: 4, VisibilityTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()

	cut.Arm("abcd") // the second chunk of the upload
	if n, err := b.PutPayload(ctx, "p", strings.NewReader("0123abcdef"), 100); err != nil || n != 10 {
		t.Fatalf("PutPayload with a lost reply = %d, %v", n, err)
	}
	r, err := b.OpenPayload(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "0123abcdef" {
		t.Fatalf("payload read back %q, %v: a chunk stored twice or lost", got, err)
	}

	cut.Arm("created")
	rev, err := b.CreateRecord(ctx, "r", []byte("created"))
	if err != nil || rev != 1 {
		t.Fatalf("CreateRecord with a lost reply = %d, %v", rev, err)
	}
	cut.Arm("updated")
	rev2, err := b.UpdateRecord(ctx, "r", []byte("updated"), rev)
	if err != nil || rev2 != rev+1 {
		t.Fatalf("UpdateRecord with a lost reply = %d, %v; want revision %d", rev2, err, rev+1)
	}

	if err := b.Enqueue(ctx, "k", "warm"); err != nil { // creates the group
		t.Fatal(err)
	}
	cut.Arm("job-1")
	if err := b.Enqueue(ctx, "k", "job-1"); err != nil {
		t.Fatalf("Enqueue with a lost reply: %v", err)
	}
	seen := map[string]int{}
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		d, err := b.Claim(cctx, "k", "w")
		cancel()
		if err != nil {
			break
		}
		seen[d.JobID()]++
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if seen["job-1"] != 1 {
		t.Fatalf("job-1 claimed %d times, want once", seen["job-1"])
	}
	if cut.Cuts() != 4 {
		t.Fatalf("%d replies lost, want 4: the test did not test", cut.Cuts())
	}
}

// TestDurableConformance: with Durability on, over Sentinel, the backend
// still passes the suite.
func TestDurableConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel deployment")
	}
	env := testenv.RedisSentinel(t)
	jobstest.Run(t, func(t *testing.T) jobs.Backend {
		sum := sha256.Sum256([]byte(t.Name()))
		b, err := redisjobs.New(context.Background(), redisjobs.Options{
			URL: env.URL(), Prefix: "d" + hex.EncodeToString(sum[:6]), VisibilityTimeout: time.Second, ChunkSize: 64 << 10,
			Durability: redisjobs.Durability{Replicas: 1, Timeout: 2 * time.Second},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

// TestDurabilityRefusesAnUnreplicatedRecord: with no replica to confirm
// it, creating a job record and queueing a job fail rather than succeed.
func TestDurabilityRefusesAnUnreplicatedRecord(t *testing.T) {
	srv := testenv.Redis(t)
	b, err := redisjobs.New(context.Background(), redisjobs.Options{URL: srv.URL(),
		Durability: redisjobs.Durability{Replicas: 1, Timeout: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.CreateRecord(context.Background(), "j1", []byte("{}")); !errors.Is(err, redisjobs.ErrNotReplicated) {
		t.Fatalf("CreateRecord with no replica = %v, want ErrNotReplicated", err)
	}
	if err := b.Enqueue(context.Background(), "k", "j1"); !errors.Is(err, redisjobs.ErrNotReplicated) {
		t.Fatalf("Enqueue with no replica = %v, want ErrNotReplicated", err)
	}
}
