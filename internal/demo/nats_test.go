package demo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// TestNATSRestartKeepsPortAndData stops the embedded server and starts it
// again on its port and data directory: clients reconnect by themselves and
// find what was stored before, as the experiment's store restart needs.
func TestNATSRestartKeepsPortAndData(t *testing.T) {
	dir := t.TempDir()
	n, err := StartNATS(dir)
	if err != nil {
		t.Fatal(err)
	}
	port := n.Port()
	nc, err := nats.Connect(n.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	before := n.InMsgs()
	if before == 0 {
		t.Fatal("InMsgs = 0 after a KV write")
	}
	n.Shutdown()

	n2, err := StartNATSOn(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Shutdown()
	if n2.URL() != n.URL() {
		t.Fatalf("restarted at %s, want %s", n2.URL(), n.URL())
	}
	// The client reconnects on its own; the value survived the restart.
	testenv.Eventually(t, 20*time.Second, func() error {
		got, err := kv.Get(ctx, "k")
		if err != nil {
			return err
		}
		if string(got.Value()) != "v" {
			return fmt.Errorf("value %q, want v", got.Value())
		}
		return nil
	})
}
