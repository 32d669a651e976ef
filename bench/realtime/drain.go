package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/unstuck-dev/unstuck/realtime"
)

// drainScenario is one way of taking an instance down under its clients.
type drainScenario struct {
	name   string
	drain  bool // Hub.Shutdown over the window, else Hub.Close
	jitter bool // clients wait a full-jitter delay, else reconnect at once
}

// runDrain measures how fast clients land on the surviving instance when
// one stops: the peak connect rate is what the survivor must absorb.
func runDrain(o options, window time.Duration) error {
	mk, stop, err := startBackend("redis")
	if err != nil {
		return err
	}
	defer stop()
	for _, sc := range []drainScenario{
		{"Close, clients reconnect at once", false, false},
		{"Close, clients back off with full jitter (500 ms base)", false, true},
		{fmt.Sprintf("Shutdown over %v, clients jitter within the hint", window), true, true},
	} {
		if err := drainOnce(mk, o, window, sc); err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
	}
	return nil
}

func serveHub(cfg realtime.Config) (*realtime.Hub, string, func(), error) {
	h, err := realtime.New(cfg)
	if err != nil {
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	deadline := time.Now().Add(15 * time.Second)
	for h.Healthy() != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling start-up with a deadline
	}
	return h, "ws://" + ln.Addr().String() + "/ws", func() { h.Close(); srv.Close() }, nil
}

func drainOnce(mk func() (realtime.Broker, error), o options, window time.Duration, sc drainScenario) error {
	ba, err := mk()
	if err != nil {
		return err
	}
	bb, err := mk()
	if err != nil {
		return err
	}
	a, urlA, closeA, err := serveHub(realtime.Config{Broker: ba, Authenticate: queryUser, DrainWindow: window, ReconnectDelay: time.Second})
	if err != nil {
		return err
	}
	defer closeA()
	var mu sync.Mutex
	var connects []time.Time
	_, urlB, closeB, err := serveHub(realtime.Config{Broker: bb, Authenticate: queryUser, OnConnect: func(string) {
		mu.Lock()
		connects = append(connects, time.Now())
		mu.Unlock()
	}})
	if err != nil {
		return err
	}
	defer closeB()
	cmd := exec.Command(os.Args[0], "-drainchild", "-urls", urlA+","+urlB, "-conns", fmt.Sprint(o.conns), fmt.Sprintf("-jitter=%v", sc.jitter))
	cmd.Stderr = os.Stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "connected" {
		return fmt.Errorf("client process: %q", lines.Text())
	}
	start := time.Now()
	if sc.drain {
		ctx, cancel := context.WithTimeout(context.Background(), window+30*time.Second)
		defer cancel()
		go a.Shutdown(ctx)
	} else {
		go a.Close()
	}
	if !lines.Scan() || lines.Text() != "reconnected" {
		return fmt.Errorf("client process: %q", lines.Text())
	}
	_ = cmd.Wait()
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(connects, func(i, j int) bool { return connects[i].Before(connects[j]) })
	const bucket = 100 * time.Millisecond
	counts := map[int]int{}
	for _, t := range connects {
		counts[int(t.Sub(start)/bucket)]++
	}
	peak := 0
	for _, c := range counts {
		peak = max(peak, c)
	}
	all := connects[len(connects)-1].Sub(start)
	fmt.Printf("drain %-55s clients=%d peak=%d per 100ms (%.0f connects/s) all back after %v\n",
		sc.name, len(connects), peak, float64(peak)/bucket.Seconds(), all.Round(10*time.Millisecond))
	return nil
}

// runDrainClients is the -drainchild process: connect everyone to A,
// subscribe, say "connected"; when A closes a socket, reconnect to B (at
// once, or like realtime.js: within the 1012 hint, else full jitter over
// 500 ms), and say "reconnected" when all are back.
func runDrainClients(urls []string, n int, jitter bool) {
	ctx := context.Background()
	var ready, back sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		ready.Add(1)
		back.Add(1)
		sem <- struct{}{}
		go func() {
			ws, _, err := websocket.Dial(ctx, fmt.Sprintf("%s?user=u%d", urls[0], i), nil)
			if err != nil {
				log.Fatalf("dial A: %v", err)
			}
			_ = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","id":1,"channel":"d"}`))
			subscribed := false
			hint := int64(0)
			for {
				_, b, err := ws.Read(ctx)
				if err != nil {
					break
				}
				if !subscribed && bytes.Contains(b, []byte(`"type":"subscribed"`)) {
					subscribed = true
					<-sem
					ready.Done()
				}
				if bytes.Contains(b, []byte(`"type":"disconnect"`)) {
					var f struct {
						RetryMS int64 `json:"retry_ms"`
					}
					_ = json.Unmarshal(b, &f)
					hint = f.RetryMS
				}
			}
			ws.CloseNow()
			if jitter {
				d := time.Duration(rand.Int64N(int64(500 * time.Millisecond)))
				if hint > 0 {
					d = time.Duration(rand.Int64N(hint * int64(time.Millisecond)))
				}
				time.Sleep(d) // the client's backoff: the behaviour measured
			}
			for attempt := 0; ; attempt++ {
				ws2, _, err := websocket.Dial(ctx, fmt.Sprintf("%s?user=u%d", urls[1], i), nil)
				if err == nil {
					defer ws2.CloseNow()
					break
				}
				if attempt > 50 {
					log.Fatalf("dial B: %v", err)
				}
				time.Sleep(time.Duration(rand.Int64N(int64(100*time.Millisecond) << min(attempt, 5))))
			}
			back.Done()
			<-ctx.Done()
		}()
	}
	ready.Wait()
	fmt.Println("connected")
	back.Wait()
	fmt.Println("reconnected")
	os.Stdout.Sync()
	os.Exit(0)
}
