package natsbroker_test

import (
	"crypto/sha256"
	"encoding/hex"
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
