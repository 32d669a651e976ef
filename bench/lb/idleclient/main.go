// Command idleclient opens many keep-alive connections to an HTTP proxy,
// sends one GET on each and reads the answer, then holds them all open and
// idle until its standard input closes: bench/lb/idle.sh measures what
// each idle connection costs the proxy.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "proxy address")
	n := flag.Int("n", 10000, "connections")
	workers := flag.Int("workers", 64, "connections opened at once")
	flag.Parse()
	conns := make([]net.Conn, *n)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				c, err := open(*addr, req)
				if err != nil {
					if failed.Add(1) <= 3 {
						log.Printf("conn %d: %v", i, err)
					}
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		log.Fatalf("%d of %d connections failed", f, *n)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

// open connects, sends req and reads one whole response, leaving the
// connection idle and open.
func open(addr string, req []byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	res, err := http.ReadResponse(bufio.NewReaderSize(c, 1024), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 || res.Close {
		c.Close()
		return nil, fmt.Errorf("status %d close=%v err=%v", res.StatusCode, res.Close, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
