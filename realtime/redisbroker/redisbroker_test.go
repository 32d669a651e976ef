package redisbroker_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/brokertest"
	"github.com/unstuck-dev/unstuck/realtime/redisbroker"
)

func TestConformance(t *testing.T) {
	srv := testenv.Redis(t)
	brokertest.Run(t, brokertest.Backplane{
		Open: func(t *testing.T, historySize int) realtime.Broker {
			// One namespace per test, shared by the test's brokers.
			sum := sha256.Sum256([]byte(t.Name()))
			b, err := redisbroker.New(t.Context(), redisbroker.Options{
				URL: srv.URL(), Prefix: "t" + hex.EncodeToString(sum[:6]), HistorySize: historySize, Timeout: 2 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		},
		Stop: srv.Kill, Start: srv.Restart,
	})
}
