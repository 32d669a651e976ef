package natsjobs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/jobs/jobstest"
	"github.com/unstuck-dev/unstuck/jobs/natsjobs"
)

func TestConformance(t *testing.T) {
	srv := testenv.NATS(t)
	jobstest.RunWith(t, func(t *testing.T) jobs.Backend {
		// One namespace per test, shared by the test's clients.
		sum := sha256.Sum256([]byte(t.Name()))
		b, err := natsjobs.New(context.Background(), natsjobs.Options{
			URL: srv.URL(), Name: "c" + hex.EncodeToString(sum[:6]), VisibilityTimeout: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}, jobstest.Options{Restart: srv.Restart})
}

func TestConfigValidation(t *testing.T) {
	srv := testenv.NATS(t)
	if _, err := natsjobs.New(context.Background(), natsjobs.Options{URL: srv.URL(), Name: "a.b"}); err == nil {
		t.Fatal("a name with a dot was accepted")
	}
}

// TestConformanceCluster runs the suite on a 3-node cluster with the
// stream, buckets and object store replicated three times: a payload read
// right after its upload must come back whole though replicas lag (the
// Object Store's own reader returned it short).
func TestConformanceCluster(t *testing.T) {
	env := testenv.NATSCluster(t, 3)
	jobstest.Run(t, func(t *testing.T) jobs.Backend {
		sum := sha256.Sum256([]byte(t.Name()))
		b, err := natsjobs.New(context.Background(), natsjobs.Options{
			URL: env.URL(), Name: "r" + hex.EncodeToString(sum[:6]), VisibilityTimeout: time.Second, Replicas: 3,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}
