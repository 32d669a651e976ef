package realtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/natsbroker"
	"github.com/unstuck-dev/unstuck/realtime/redisbroker"
)

// queryUser authenticates tests by ?user=, so tests can name users freely;
// TokenAuth has its own tests.
func queryUser(r *http.Request) (string, error) {
	if u := r.URL.Query().Get("user"); u != "" {
		return u, nil
	}
	return "", realtime.ErrUnauthenticated
}

func redisClient(t testing.TB, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatalf("redis client: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func newRedisBrokerT(t testing.TB, addr string) *redisbroker.Broker {
	t.Helper()
	b, err := redisbroker.New(context.Background(), redisbroker.Options{Client: redisClient(t, addr), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func natsConn(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newNATSBrokerT(t testing.TB, url string) *natsbroker.Broker {
	t.Helper()
	b, err := natsbroker.New(context.Background(), natsbroker.Options{Client: natsConn(t, url), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type testHub struct {
	*realtime.Hub
	srv *httptest.Server
}

func (th testHub) wsURL(user string) string {
	return "ws" + strings.TrimPrefix(th.srv.URL, "http") + "/ws?user=" + user
}

func startHub(t testing.TB, b realtime.Broker, mut func(*realtime.Config)) testHub {
	t.Helper()
	cfg := realtime.Config{Broker: b, Authenticate: queryUser}
	if mut != nil {
		mut(&cfg)
	}
	h, err := realtime.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		_ = h.Close()
		srv.Close()
	})
	testenv.Eventually(t, 10*time.Second, h.Healthy)
	return testHub{h, srv}
}

// frame is any server frame, decoded loosely.
type frame struct {
	Type      string                   `json:"type"`
	ID        uint64                   `json:"id"`
	Channel   string                   `json:"channel"`
	Offset    *uint64                  `json:"offset"`
	Epoch     string                   `json:"epoch"`
	Recovered *bool                    `json:"recovered"`
	Data      json.RawMessage          `json:"data"`
	Code      any                      `json:"code"`
	Message   string                   `json:"message"`
	Client    string                   `json:"client"`
	User      string                   `json:"user"`
	Clients   []realtime.PresenceEntry `json:"clients"`
	Reconnect *bool                    `json:"reconnect"`
	RetryMS   int64                    `json:"retry_ms"`
	Local     bool                     `json:"local"`
}

// tclient is a protocol-level test client.
type tclient struct {
	t      testing.TB
	ws     *websocket.Conn
	frames chan frame
	done   chan struct{}
	mu     sync.Mutex
	err    error // why reading stopped
	nextID uint64
	hello  frame
}

func dial(t testing.TB, url string) *tclient {
	t.Helper()
	c, err := tryDial(t, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

func tryDial(t testing.TB, url string) (*tclient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	c := &tclient{t: t, ws: ws, frames: make(chan frame, 4096), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() { ws.CloseNow() })
	c.hello = c.expect(func(f frame) bool { return f.Type == realtime.FrameConnected })
	return c, nil
}

func (c *tclient) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			c.mu.Lock()
			c.err = fmt.Errorf("bad frame %q: %v", data, err)
			c.mu.Unlock()
			return
		}
		c.frames <- f
	}
}

func (c *tclient) send(v any) uint64 {
	c.t.Helper()
	c.nextID++
	m := map[string]any{}
	b, _ := json.Marshal(v)
	_ = json.Unmarshal(b, &m)
	m["id"] = c.nextID
	b, _ = json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	return c.nextID
}

// expect returns the first frame matching ok, skipping others; it fails
// the test if the connection ends or nothing matches for 15 s.
func (c *tclient) expect(ok func(frame) bool) frame {
	c.t.Helper()
	f, err := c.next(ok, 15*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

func (c *tclient) next(ok func(frame) bool, within time.Duration) (frame, error) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case f := <-c.frames:
			if ok(f) {
				return f, nil
			}
		case <-c.done:
			// drain what was read before the end
			select {
			case f := <-c.frames:
				if ok(f) {
					return f, nil
				}
				continue
			default:
			}
			return frame{}, fmt.Errorf("connection ended: %v", c.closeErr())
		case <-timer.C:
			return frame{}, errors.New("no matching frame within the deadline")
		}
	}
}

func (c *tclient) closeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// reply sends a command and returns the frame answering it.
func (c *tclient) reply(v any) frame {
	c.t.Helper()
	id := c.send(v)
	return c.expect(func(f frame) bool { return f.ID == id })
}

func (c *tclient) subscribe(ch string) frame {
	c.t.Helper()
	f := c.reply(map[string]any{"type": "subscribe", "channel": ch})
	if f.Type != realtime.FrameSubscribed {
		c.t.Fatalf("subscribe %s: %+v", ch, f)
	}
	return f
}

func (c *tclient) message(ch string) frame {
	c.t.Helper()
	return c.expect(func(f frame) bool { return f.Type == realtime.FrameMessage && f.Channel == ch })
}

// waitClosed returns the close code the server sent.
func (c *tclient) waitClosed() websocket.StatusCode {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.t.Fatal("connection not closed within 30s")
	}
	return websocket.CloseStatus(c.closeErr())
}
