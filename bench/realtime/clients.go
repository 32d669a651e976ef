package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

type clientResult struct {
	Received int64   `json:"received"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

// runClients is the child process: it opens the connections, subscribes
// each to one channel, says "subscribed", records the latency of every
// delivery until the parent says "done", and prints a clientResult.
func runClients(urls []string, o options) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	lat := make([]time.Duration, 0, 1<<20)
	var received int64
	var ready sync.WaitGroup
	sem := make(chan struct{}, 64)
	var conns []*websocket.Conn
	for i := range o.conns {
		ready.Add(1)
		sem <- struct{}{}
		url := fmt.Sprintf("%s?user=u%d", urls[i%len(urls)], i)
		var ws *websocket.Conn
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			ws, _, err = websocket.Dial(dctx, url, nil)
			dcancel()
			if err == nil {
				break
			}
		}
		if err != nil {
			log.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, ws)
		go func() {
			sub := fmt.Sprintf(`{"type":"subscribe","id":1,"channel":"ch%d"}`, i%o.channels)
			if err := ws.Write(ctx, websocket.MessageText, []byte(sub)); err != nil {
				log.Fatalf("subscribe: %v", err)
			}
			subscribed := false
			var local []time.Duration
			flush := func() {
				mu.Lock()
				lat = append(lat, local...)
				received += int64(len(local))
				mu.Unlock()
				local = local[:0]
			}
			defer flush()
			for {
				_, b, err := ws.Read(ctx)
				if err != nil {
					if !subscribed {
						<-sem
						ready.Done()
					}
					return
				}
				if !subscribed {
					if bytes.Contains(b, []byte(`"type":"subscribed"`)) {
						subscribed = true
						<-sem
						ready.Done()
					}
					continue
				}
				// Cheaper than decoding: find the send time in the payload.
				if k := bytes.Index(b, []byte(`"ts":`)); k >= 0 {
					rest := b[k+5:]
					end := bytes.IndexByte(rest, ',')
					if ns, err := strconv.ParseInt(string(rest[:max(end, 0)]), 10, 64); err == nil {
						local = append(local, time.Since(time.Unix(0, ns)))
						if len(local) >= 256 {
							flush()
						}
					}
				}
			}
		}()
	}
	ready.Wait()
	fmt.Println("subscribed")
	in := bufio.NewScanner(os.Stdin)
	in.Scan() // "done"
	// Let deliveries in flight land: wait until the count stops moving.
	last := int64(-1)
	for {
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		n := received
		mu.Unlock()
		if n == last {
			break
		}
		last = n
	}
	cancel()
	for _, ws := range conns {
		ws.CloseNow()
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	res := clientResult{Received: received}
	if len(lat) > 0 {
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		res.P50ms = ms(lat[len(lat)/2])
		res.P99ms = ms(lat[len(lat)*99/100])
		res.MaxMs = ms(lat[len(lat)-1])
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
}
