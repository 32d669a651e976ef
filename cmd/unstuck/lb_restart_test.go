package main

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// TestLBProcessRestartUnderLoad SIGKILLs the balancer process while
// clients send GETs through it and starts it again on the same port: the
// requests of the gap fail (nothing listens), every one after it succeeds
// with nothing else restarted, and the test logs what the gap cost.
func TestLBProcessRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the balancer under load")
	}
	var args []string
	for _, n := range []string{"a", "b"} {
		_, url := startBackendProc(t, n)
		args = append(args, "--backend", n+"="+url)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	args = append([]string{"--sticky", "none", "--listen", listen}, args...)
	p := startLBProc(t, nil, args...)

	var ok, failed atomic.Int64
	var mu sync.Mutex
	var longest time.Duration
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			cl := &http.Client{Timeout: 10 * time.Second}
			var errSince time.Time
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				start := time.Now()
				resp, err := cl.Get(p.url + "/")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				if err != nil {
					failed.Add(1)
					if errSince.IsZero() {
						errSince = start
					}
					continue
				}
				ok.Add(1)
				if !errSince.IsZero() {
					mu.Lock()
					longest = max(longest, time.Since(errSince))
					mu.Unlock()
					errSince = time.Time{}
				}
			}
		})
	}
	waitOK := func(n int64) {
		t.Helper()
		from := ok.Load()
		testenv.Eventually(t, 30*time.Second, func() error {
			if got := ok.Load() - from; got < n {
				return fmt.Errorf("%d GETs succeeded, want %d", got, n)
			}
			return nil
		})
	}
	waitOK(200)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p2 := startLBProc(t, nil, args...)
	if p2.url != p.url {
		t.Fatalf("restarted balancer listens on %s, want %s", p2.url, p.url)
	}
	waitOK(400)
	failedBefore := failed.Load()
	waitOK(200)
	close(stop)
	wg.Wait()
	if f := failed.Load() - failedBefore; f != 0 {
		t.Errorf("%d GETs failed after the restarted balancer was serving", f)
	}
	t.Logf("FAULT balancer-restart: requests=%d failed_503=0 failed_other=%d longest_error_window=%v acked_writes=0 acked_writes_lost=0",
		ok.Load()+failed.Load(), failed.Load(), longest.Round(10*time.Millisecond))
}
