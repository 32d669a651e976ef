package realtime_test

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
)

// TestJSClient runs the embedded client under Node against real hubs:
// publish, receive, presence, then a drain of its instance: it must
// reconnect to another one, resume without a reset and get what was
// published meanwhile, and receive messages sent to its user.
func TestJSClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not on PATH (install nodejs >= 20, e.g. `apt-get install -y nodejs`): the JavaScript client is not exercised")
	}
	r := testenv.Redis(t)
	mk := func() realtime.Broker { return newRedisBrokerT(t, r.Addr()) }
	a := startHub(t, mk(), func(c *realtime.Config) {
		c.DrainWindow = 200 * time.Millisecond
		c.ReconnectDelay = 100 * time.Millisecond
	})
	b := startHub(t, mk(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--experimental-websocket", "testdata/client_test.mjs", a.wsURL("jsuser"), b.wsURL("jsuser"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	var out []string
	for lines.Scan() {
		line := lines.Text()
		out = append(out, line)
		if line != "ready" {
			continue
		}
		if _, err := b.Publish(ctx, "js", []byte(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
		if err := a.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		// Published while the client may be between instances.
		if _, err := b.Publish(ctx, "js", []byte(`{"n":2}`)); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 20*time.Second, func() error {
			if b.Stats().Connections == 0 {
				return context.DeadlineExceeded
			}
			return nil
		})
		// The client subscribes to its user channel on connect; publish
		// until that subscription exists.
		testenv.Eventually(t, 20*time.Second, func() error {
			if b.LocalSubscribers("$user:jsuser") == 0 {
				return context.DeadlineExceeded
			}
			_, err := b.PublishToUser(ctx, "jsuser", []byte(`{"hello":1}`))
			return err
		})
	}
	err = cmd.Wait()
	if err != nil || len(out) == 0 || out[len(out)-1] != "done" {
		t.Fatalf("node client: %v\nstdout: %s\nstderr: %s", err, strings.Join(out, "\n"), stderr.String())
	}
}
