package redisjobs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/jobs/jobstest"
	"github.com/unstuck-dev/unstuck/jobs/redisjobs"
)

func TestConformance(t *testing.T) {
	srv := testenv.Redis(t)
	jobstest.Run(t, func(t *testing.T) jobs.Backend {
		sum := sha256.Sum256([]byte(t.Name()))
		b, err := redisjobs.New(context.Background(), redisjobs.Options{
			URL: srv.URL(), Prefix: "c" + hex.EncodeToString(sum[:6]), VisibilityTimeout: time.Second, ChunkSize: 64 << 10,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
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
