// Command realtime measures the realtime package across three hub
// instances on loopback: messages per second fanned out to WebSocket
// clients, p50/p99 delivery latency, and server memory per idle
// connection, over Redis and over NATS.
//
//	go run ./bench/realtime -conns 5000 -duration 10s
//
// The hubs run in this process; the clients run in a child process (this
// binary with -child) so that the memory measured is the server's alone.
// Everything listens on 127.0.0.1; Redis is a private redis-server on a
// free port and NATS runs in-process, never the system ones.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/unstuck-dev/unstuck/realtime"
)

type options struct {
	conns    int
	channels int
	rate     int
	duration time.Duration
	backends string
	payload  int

	cpuprofile string
}

func main() {
	var o options
	child := flag.Bool("child", false, "run as the client process (internal)")
	urls := flag.String("urls", "", "hub WebSocket URLs for -child, comma-separated")
	flag.IntVar(&o.conns, "conns", 5000, "WebSocket connections, spread evenly over 3 hubs")
	flag.IntVar(&o.channels, "channels", 100, "channels; each connection subscribes to one, so fan-out is conns/channels")
	flag.IntVar(&o.rate, "rate", 400, "messages published per second, across the hubs")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "publishing time per backend")
	flag.StringVar(&o.backends, "backends", "redis,nats", "backplanes to measure")
	flag.IntVar(&o.payload, "payload", 64, "approximate payload bytes")
	cpuprofile := flag.String("cpuprofile", "", "write the hubs' CPU profile (publishing phase) to this file")
	drain := flag.Duration("drain", 0, "instead of throughput, measure reconnects when an instance with -conns clients stops, with this drain window")
	drainChild := flag.Bool("drainchild", false, "run as the drain client process (internal)")
	jitter := flag.Bool("jitter", true, "drain clients back off with jitter (internal)")
	flag.Parse()
	raiseNoFile()
	switch {
	case *child:
		runClients(strings.Split(*urls, ","), o)
		return
	case *drainChild:
		runDrainClients(strings.Split(*urls, ","), o.conns, *jitter)
		return
	case *drain > 0:
		if err := runDrain(o, *drain); err != nil {
			log.Fatal(err)
		}
		return
	}
	o.cpuprofile = *cpuprofile
	for _, b := range strings.Split(o.backends, ",") {
		if err := runBackend(b, o); err != nil {
			log.Fatalf("%s: %v", b, err)
		}
	}
}

// raiseNoFile lifts the soft descriptor limit to the hard one: 5,000
// connections need 5,000 descriptors on each side.
func raiseNoFile() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func queryUser(r *http.Request) (string, error) {
	if u := r.URL.Query().Get("user"); u != "" {
		return u, nil
	}
	return "", realtime.ErrUnauthenticated
}

func liveMem() (heap, stack uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}

func runBackend(name string, o options) error {
	ctx := context.Background()
	mk, stop, err := startBackend(name)
	if err != nil {
		return err
	}
	defer stop()
	var hubs []*realtime.Hub
	var urls []string
	for range 3 {
		b, err := mk()
		if err != nil {
			return err
		}
		h, err := realtime.New(realtime.Config{Broker: b, Authenticate: queryUser, PositionCheck: -1,
			Limits: realtime.Limits{SendQueue: 4096}})
		if err != nil {
			return err
		}
		defer h.Close()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		hubs = append(hubs, h)
		urls = append(urls, "ws://"+ln.Addr().String()+"/ws")
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, h := range hubs {
		for h.Healthy() != nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("hub not healthy: %v", h.Healthy())
			}
			time.Sleep(20 * time.Millisecond) // polling a start-up condition with a deadline
		}
	}
	heap0, stack0 := liveMem()

	cmd := exec.Command(os.Args[0], "-child", "-urls", strings.Join(urls, ","),
		"-conns", fmt.Sprint(o.conns), "-channels", fmt.Sprint(o.channels), "-duration", o.duration.String())
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "subscribed" {
		return fmt.Errorf("client process: %q %v", lines.Text(), lines.Err())
	}
	total := 0
	for _, h := range hubs {
		total += h.Stats().Connections
	}
	heap1, stack1 := liveMem()
	perConn := float64(heap1+stack1-heap0-stack0) / float64(total)
	heapPer := float64(heap1-heap0) / float64(total)
	stackPer := float64(stack1-stack0) / float64(total)

	// Publish at a fixed rate, spread over the hubs and channels; each
	// payload carries its send time.
	pad := strings.Repeat("x", max(0, o.payload-30))
	var published, failed atomic.Int64
	if o.cpuprofile != "" {
		f, err := os.Create(name + "-" + o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	interval := time.Second / time.Duration(o.rate)
	stopAt := time.Now().Add(o.duration)
	var wg sync.WaitGroup
	workers := 16
	ticks := make(chan int, workers*4)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ticks {
				data := fmt.Sprintf(`{"ts":%d,"p":"%s"}`, time.Now().UnixNano(), pad)
				if _, err := hubs[i%3].Publish(ctx, fmt.Sprintf("ch%d", i%o.channels), []byte(data)); err != nil {
					failed.Add(1)
					continue
				}
				published.Add(1)
			}
		}()
	}
	t := time.NewTicker(interval)
	for i := 0; time.Now().Before(stopAt); i++ {
		<-t.C
		ticks <- i
	}
	t.Stop()
	close(ticks)
	wg.Wait()
	fmt.Fprintln(stdin, "done")
	var res clientResult
	if !lines.Scan() {
		return fmt.Errorf("client process ended: %v", lines.Err())
	}
	if err := json.Unmarshal(lines.Bytes(), &res); err != nil {
		return fmt.Errorf("client result %q: %v", lines.Text(), err)
	}
	_ = cmd.Wait()
	slow := int64(0)
	for _, h := range hubs {
		slow += h.Stats().SlowConsumers
	}
	expected := published.Load() * int64(o.conns/o.channels)
	fmt.Printf("%-5s conns=%d hubs=3 channels=%d fanout=%d published=%d (%.0f/s) failed=%d delivered=%d of %d (%.0f msg/s fanned out) p50=%.2fms p99=%.2fms max=%.1fms slow_consumers=%d mem_per_idle_conn=%.1fKB (heap %.1fKB, stacks %.1fKB)\n",
		name, total, o.channels, o.conns/o.channels, published.Load(), float64(published.Load())/o.duration.Seconds(), failed.Load(),
		res.Received, expected, float64(res.Received)/o.duration.Seconds(), res.P50ms, res.P99ms, res.MaxMs, slow, perConn/1024, heapPer/1024, stackPer/1024)
	return nil
}
