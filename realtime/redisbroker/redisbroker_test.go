package redisbroker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/brokertest"
	"github.com/unstuck-dev/unstuck/realtime/redisbroker"
)

func TestConformance(t *testing.T) {
	srv := testenv.Redis(t)
	brokertest.Run(t, brokertest.Backplane{
		Open: func(t *testing.T, historySize int) realtime.Broker {
			c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			// One namespace per test, shared by the test's brokers.
			sum := sha256.Sum256([]byte(t.Name()))
			b, err := redisbroker.New(context.Background(), redisbroker.Options{
				Client: c, Prefix: "t" + hex.EncodeToString(sum[:6]), HistorySize: historySize, Timeout: 2 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		Stop: srv.Kill, Start: srv.Restart,
	})
}
