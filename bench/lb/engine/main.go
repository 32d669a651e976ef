// Command engine runs the bare internal/proxy engine with round-robin over
// the given backends: the engine's own cost, without package lb's
// policies, health checks and metrics (compare with `unstuck lb`).
package main

import (
	"flag"
	"log"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18117", "address to listen on")
	backends := flag.String("backends", "127.0.0.1:18101,127.0.0.1:18102", "comma-separated host:port list")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the first -profile-for to this file")
	profileFor := flag.Duration("profile-for", 10*time.Second, "how long -cpuprofile records")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		time.AfterFunc(*profileFor, func() { pprof.StopCPUProfile(); f.Close(); log.Print("profile written") })
	}
	var ups []*proxy.Upstream
	for i, a := range strings.Split(*backends, ",") {
		ups = append(ups, proxy.NewUpstream("b"+string(rune('1'+i)), a, proxy.UpstreamOptions{}))
	}
	var next atomic.Uint64
	srv := &proxy.Server{Route: func(*proxy.Request) (proxy.Target, error) {
		return proxy.Target{Upstream: ups[next.Add(1)%uint64(len(ups))]}, nil
	}}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		srv.ServeConn(c)
	}
}
