package redisjobs_test

import (
	"crypto/sha256"
	"encoding/hex"
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
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		sum := sha256.Sum256([]byte(t.Name()))
		b, err := redisjobs.New(c, redisjobs.Config{
			Prefix: "c" + hex.EncodeToString(sum[:6]), VisibilityTimeout: time.Second, ChunkSize: 64 << 10,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestConfigValidation(t *testing.T) {
	if _, err := redisjobs.New(nil, redisjobs.Config{}); err == nil {
		t.Fatal("a nil client was accepted")
	}
}
