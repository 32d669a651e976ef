package proxy

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
)

// TestRandomExchangesThroughProxy sends a seeded mix of methods, body sizes
// and framings through the engine with Go's own client and server at the
// ends, several connections at once, and checks every byte both ways.
func TestRandomExchangesThroughProxy(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("X-Req-Sum", fmt.Sprintf("%x", sha256.Sum256(body)))
		w.Header().Set("X-Req-Len", strconv.Itoa(len(body)))
		resp := bytes.Repeat([]byte(r.URL.Query().Get("fill")), n)
		if r.URL.Query().Get("cl") == "1" {
			w.Header().Set("Content-Length", strconv.Itoa(len(resp)))
		}
		w.Write(resp[:len(resp)/2])
		if r.URL.Query().Get("flush") == "1" {
			w.(http.Flusher).Flush()
		}
		w.Write(resp[len(resp)/2:])
	})
	p := startProxy(t, &Server{Route: one(u), Limits: Limits{RetryBodyBytes: 4096}})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 7))
			for i := 0; i < 40; i++ {
				method := []string{"GET", "POST", "PUT", "HEAD", "DELETE"}[rng.IntN(5)]
				var body []byte
				if method == "POST" || method == "PUT" {
					body = make([]byte, []int{0, 10, 5000, 100000}[rng.IntN(4)])
					for j := range body {
						body[j] = byte(rng.IntN(256))
					}
				}
				n := []int{0, 1, 100, 70000}[rng.IntN(4)]
				url := fmt.Sprintf("http://%s/r?n=%d&fill=ab&cl=%d&flush=%d", p.addr, n, rng.IntN(2), rng.IntN(2))
				var rd io.Reader
				if body != nil {
					rd = bytes.NewReader(body)
					if rng.IntN(2) == 0 {
						rd = io.MultiReader(rd) // unknown length: sent chunked
					}
				}
				req, _ := http.NewRequest(method, url, rd)
				res, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(res.Body)
				res.Body.Close()
				wantBody := bytes.Repeat([]byte("ab"), n)
				if method == "HEAD" {
					wantBody = nil
				}
				sum := fmt.Sprintf("%x", sha256.Sum256(body))
				if err != nil || res.StatusCode != 200 || !bytes.Equal(got, wantBody) ||
					res.Header.Get("X-Req-Sum") != sum || res.Header.Get("X-Req-Len") != strconv.Itoa(len(body)) {
					errs <- fmt.Errorf("%s %s: %d, %d bytes (want %d), err %v, req len %s want %d",
						method, url, res.StatusCode, len(got), len(wantBody), err, res.Header.Get("X-Req-Len"), len(body))
					return
				}
			}
		}(uint64(w))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
