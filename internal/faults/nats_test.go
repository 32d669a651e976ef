package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/unstuck-dev/unstuck/internal/shop"
	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// TestNATSClusterNodeLoss shuts down the node the shop is connected to in
// a 3-node JetStream cluster (buckets and streams with three replicas)
// under load, after making it the session bucket's leader, so the shop
// must reconnect elsewhere and wait for new stream leaders, whom every
// read asks. No acknowledged cart add or chat message is lost, only 503s
// with Retry-After are seen, an upload finishes, a chat client that lost
// its connection resumes with recovered:true and gets every message it
// missed, and the restarted node catches up.
func TestNATSClusterNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("shuts down a NATS node under load")
	}
	env := testenv.NATSCluster(t, 3)
	base := startShop(t, env.URL()+"?replicas=3")
	l := startLoad(t, base, users, 1, 10)
	l.waitAcks(t, time.Now().Add(-time.Hour), 10, 30*time.Second)

	// A chat client follows the room, then loses its connection with
	// the node.
	chatter := l.users[0]
	ws := dialChat(t, chatter)
	sub := ws.subscribe(t, map[string]any{})
	if sub.Epoch == "" {
		t.Fatalf("subscribed without an epoch: %+v", sub)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := len(ws.received()); n < 2 {
			return fmt.Errorf("the chat client got %d messages", n)
		}
		return nil
	})
	ws.close()
	last := ws.received()[len(ws.received())-1]

	victim := shopsNode(t, env)
	leadSessions(t, env, victim)
	t.Logf("shutting down %s (leads the session bucket: %v)", victim.Server.Name(),
		victim.Server.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, "KV_unstuck_sessions"))
	victim.Shutdown()
	l.waitAcks(t, time.Now(), 10, 40*time.Second)
	uploadAndWait(t, l.users[1])
	victim.Restart()
	env.WaitHealthy()
	l.waitAcks(t, time.Now(), 5, 30*time.Second)
	f := l.finish(t)

	// The chat client resumes where it was.
	ws = dialChat(t, chatter)
	resumed := ws.subscribe(t, map[string]any{"recover": true, "offset": last.Offset, "epoch": last.Epoch})
	if resumed.Recovered == nil || !*resumed.Recovered {
		t.Fatalf("resubscribe after the node loss: %+v, want recovered:true", resumed)
	}
	replayed := map[string]bool{}
	for _, m := range ws.received() {
		var cm shop.ChatMessage
		_ = json.Unmarshal(m.Data, &cm)
		replayed[cm.Text] = true
	}
	chatLost := 0
	chatter.mu.Lock()
	for _, p := range chatter.chats {
		if p.offset > last.Offset && !replayed[p.text] {
			chatLost++
		}
	}
	chatter.mu.Unlock()
	f.lost += chatLost

	// The restarted node caught up: every node holds the same messages.
	testenv.Eventually(t, 30*time.Second, func() error {
		var counts []uint64
		for _, n := range env.Nodes {
			jsz, err := n.Server.Jsz(&server.JSzOptions{})
			if err != nil {
				return err
			}
			counts = append(counts, jsz.Messages)
		}
		for _, c := range counts[1:] {
			if c != counts[0] {
				return fmt.Errorf("messages per node %v", counts)
			}
		}
		return nil
	})

	f.report(t, "nats-cluster-node-loss")
	check(t, f, true)
	if chatLost > 0 {
		t.Errorf("%d acknowledged chat messages were not replayed", chatLost)
	}
}

// leadSessions moves the session bucket's leadership to n, so that losing
// n costs both the shop's connection and the leader every session read
// and write goes to: the worst node to lose.
func leadSessions(t *testing.T, env *testenv.NATSClusterEnv, n *testenv.NATSServer) {
	t.Helper()
	const stream = "KV_unstuck_sessions"
	nc, err := nats.Connect(env.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	testenv.Eventually(t, 20*time.Second, func() error {
		if n.Server.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return nil
		}
		req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, n.Server.Name())
		if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(req), 2*time.Second); err != nil {
			return err
		}
		return fmt.Errorf("%s does not lead %s yet", n.Server.Name(), stream)
	})
}

// shopsNode is the node holding the shop's connection (named "unstuck").
func shopsNode(t *testing.T, env *testenv.NATSClusterEnv) *testenv.NATSServer {
	t.Helper()
	for _, n := range env.Nodes {
		connz, err := n.Server.Connz(&server.ConnzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range connz.Conns {
			if c.Name == "unstuck" {
				return n
			}
		}
	}
	t.Fatal("no node holds the shop's connection")
	return nil
}

// chatFrame is the part of the hub's frames the test reads.
type chatFrame struct {
	Type      string          `json:"type"`
	ID        uint64          `json:"id"`
	Offset    uint64          `json:"offset"`
	Epoch     string          `json:"epoch"`
	Recovered *bool           `json:"recovered"`
	Data      json.RawMessage `json:"data"`
	Code      string          `json:"code"`
}

// chatClient is a WebSocket to the shop's hub, as the page's script holds.
type chatClient struct {
	ws     *websocket.Conn
	frames chan chatFrame
	msgs   []chatFrame
}

func dialChat(t *testing.T, u *user) *chatClient {
	t.Helper()
	base, _ := url.Parse(u.base)
	h := http.Header{}
	for _, c := range u.c.Jar.Cookies(base) {
		h.Add("Cookie", c.Name+"="+c.Value)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(u.base, "http")+"/ws", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial the chat: %v", err)
	}
	ws.SetReadLimit(1 << 20)
	c := &chatClient{ws: ws, frames: make(chan chatFrame, 4096)}
	t.Cleanup(func() { _ = ws.CloseNow() })
	go func() {
		defer close(c.frames)
		for {
			_, data, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			var f chatFrame
			if json.Unmarshal(data, &f) == nil {
				c.frames <- f
			}
		}
	}()
	return c
}

// subscribe joins the chat room with extra fields (recover, offset,
// epoch) and returns the subscribed frame; messages replayed before it
// are kept.
func (c *chatClient) subscribe(t *testing.T, extra map[string]any) chatFrame {
	t.Helper()
	cmd := map[string]any{"type": "subscribe", "id": 1, "channel": shop.ChatChannel}
	for k, v := range extra {
		cmd[k] = v
	}
	data, _ := json.Marshal(cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, data); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatal("the chat connection closed before subscribed")
			}
			switch {
			case f.Type == "message":
				c.msgs = append(c.msgs, f)
			case f.Type == "subscribed" && f.ID == 1:
				return f
			case f.Type == "error":
				t.Fatalf("subscribe: error %s", f.Code)
			}
		case <-ctx.Done():
			t.Fatal("no subscribed frame within 10s")
		}
	}
}

// received drains the frames that arrived so far and returns every
// message seen.
func (c *chatClient) received() []chatFrame {
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return c.msgs
			}
			if f.Type == "message" {
				c.msgs = append(c.msgs, f)
			}
		default:
			return c.msgs
		}
	}
}

func (c *chatClient) close() { _ = c.ws.Close(websocket.StatusNormalClosure, "") }
