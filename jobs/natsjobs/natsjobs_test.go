package natsjobs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/jobs/jobstest"
	"github.com/unstuck-dev/unstuck/jobs/natsjobs"
)

func TestConformance(t *testing.T) {
	srv := testenv.NATS(t)
	jobstest.Run(t, func(t *testing.T) jobs.Backend {
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		// One namespace per test, shared by the test's clients.
		sum := sha256.Sum256([]byte(t.Name()))
		b, err := natsjobs.New(context.Background(), js, natsjobs.Config{
			Name: "c" + hex.EncodeToString(sum[:6]), VisibilityTimeout: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestConfigValidation(t *testing.T) {
	srv := testenv.NATS(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := natsjobs.New(context.Background(), js, natsjobs.Config{Name: "a.b"}); err == nil {
		t.Fatal("a name with a dot was accepted")
	}
}
