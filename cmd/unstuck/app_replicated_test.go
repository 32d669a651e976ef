package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os/exec"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// TestAppOnReplicatedStores runs `unstuck app` processes on a Sentinel
// deployment (redis+sentinel://, writes waiting for a replica) and on a
// 3-node NATS cluster (a server list, three replicas): each serves a
// login and a cart add, and a second instance on the same store sees them.
func TestAppOnReplicatedStores(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replicated stores and app processes")
	}
	for name, start := range map[string]func(t *testing.T) string{
		"sentinel": func(t *testing.T) string { return testenv.RedisSentinel(t).URL() + "?wait=1&wait_timeout=2s" },
		"nats":     func(t *testing.T) string { return testenv.NATSCluster(t, 3).URL() + "?replicas=3" },
	} {
		t.Run(name, func(t *testing.T) {
			store := start(t)
			a, b := startApp(t, "a", store), startApp(t, "b", store)
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
			if st := post(t, c, a+"/api/login", `{"user":"ann"}`); st != 200 {
				t.Fatalf("login on a: %d", st)
			}
			if st := post(t, c, a+"/api/cart/items", `{"sku":"mug","qty":2}`); st != 200 {
				t.Fatalf("add on a: %d", st)
			}
			// Polled: on a NATS cluster a read may still come from a
			// replica behind the write (a known gap, BENCHMARKS.md Faults);
			// this test is about the URLs being accepted end to end.
			testenv.Eventually(t, 10*time.Second, func() error {
				resp, err := c.Get(b + "/api/cart")
				if err != nil {
					return err
				}
				var cart struct {
					Items []struct {
						SKU string `json:"sku"`
						Qty int    `json:"qty"`
					} `json:"items"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&cart)
				resp.Body.Close()
				if resp.StatusCode != 200 || len(cart.Items) != 1 || cart.Items[0].Qty != 2 {
					return fmt.Errorf("cart on b = %d %+v, want 2 mugs", resp.StatusCode, cart)
				}
				return nil
			})
		})
	}
}

// startApp runs `unstuck app` on store and waits until it answers.
func startApp(t *testing.T, id, store string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, unstuckBinary(t), "app", "--id", id, "--listen", addr, "--store", store)
	out := &testenv.Buffer{} // written by the process's copier while read here
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + addr
	err := testenv.WaitFor(30*time.Second, func() error {
		select {
		case <-done:
			return fmt.Errorf("exited")
		default:
		}
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	if err != nil {
		t.Fatalf("unstuck app --store %s: %v\n%s", store, err, out.String())
	}
	return base
}

func post(t *testing.T, c *http.Client, url, body string) int {
	t.Helper()
	resp, err := c.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
