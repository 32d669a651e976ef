package natsbroker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/brokertest"
	"github.com/unstuck-dev/unstuck/realtime/natsbroker"
)

func TestConformance(t *testing.T) {
	srv := testenv.NATS(t)
	brokertest.Run(t, brokertest.Backplane{
		Open: func(t *testing.T, historySize int) realtime.Broker {
			nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			// One namespace per test, shared by the test's brokers.
			h := sha256.Sum256([]byte(t.Name()))
			sum := hex.EncodeToString(h[:6])
			b, err := natsbroker.New(context.Background(), natsbroker.Options{
				Conn: nc, Stream: "T" + sum, Prefix: "t" + sum, PresenceBucket: "p" + sum,
				HistorySize: historySize, Timeout: 2 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		Stop: srv.Shutdown, Start: srv.Restart,
	})
}
