package natsbroker_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/brokertest"
	"github.com/unstuck-dev/unstuck/realtime/natsbroker"
)

func TestConformance(t *testing.T) {
	srv := testenv.NATS(t)
	brokertest.Run(t, brokertest.Backplane{
		Open: func(t *testing.T, historySize int) realtime.Broker {
			// One namespace per test, shared by the test's brokers.
			h := sha256.Sum256([]byte(t.Name()))
			sum := hex.EncodeToString(h[:6])
			b, err := natsbroker.New(t.Context(), natsbroker.Options{
				URL: srv.URL(), Stream: "T" + sum, Prefix: "t" + sum, PresenceBucket: "p" + sum,
				HistorySize: historySize, Timeout: 2 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		},
		Stop: srv.Shutdown, Start: srv.Restart,
	})
}

// TestConformanceCluster runs the suite on a 3-node cluster, the stream
// and presence bucket with three replicas. It is a known gap, so it runs
// only with UNSTUCK_NATS_CLUSTER_SUITES=1: presence read on another
// instance right after it was set can come back empty, read from a
// replica that has not applied it. See BENCHMARKS.md, Faults.
func TestConformanceCluster(t *testing.T) {
	if os.Getenv("UNSTUCK_NATS_CLUSTER_SUITES") != "1" {
		t.Skip("known gap (follower reads on a NATS cluster): set UNSTUCK_NATS_CLUSTER_SUITES=1 to run")
	}
	env := testenv.NATSCluster(t, 3)
	brokertest.Run(t, brokertest.Backplane{
		Open: func(t *testing.T, historySize int) realtime.Broker {
			h := sha256.Sum256([]byte(t.Name()))
			sum := hex.EncodeToString(h[:6])
			b, err := natsbroker.New(t.Context(), natsbroker.Options{
				URL: env.URL(), Stream: "T" + sum, Prefix: "t" + sum, PresenceBucket: "p" + sum,
				HistorySize: historySize, Timeout: 5 * time.Second, Replicas: 3,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		},
	})
}
