package live

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
	"github.com/unstuck-dev/unstuck/internal/shop/textstats"
	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/lb"
)

// The unpinned architectures must balance every request by load (issue
// 12: "least-conn or p2c"), not by round robin or a hash, in the live run
// as in the simulation, which routes their requests by p2c one by one.
func TestUnpinnedArchitecturesBalanceByLoad(t *testing.T) {
	for _, a := range model.Archs {
		cfg := balancerConfig(a, "127.0.0.1:0", []lb.BackendConfig{{Name: "a", URL: "http://127.0.0.1:1", Weight: 1}})
		if p := cfg.Policy.Name; p != "p2c" && p != "least_conn" {
			t.Errorf("%s: policy %q, want p2c or least_conn", a.Name, p)
		}
		if a.Sticky != (cfg.Sticky.Mode == "cookie") {
			t.Errorf("%s: sticky mode %q with Arch.Sticky %v", a.Name, cfg.Sticky.Mode, a.Sticky)
		}
	}
	if model.Store.Sticky || model.Cookie.Sticky {
		t.Fatal("store and cookie must pin nobody")
	}
}

// An upload's progress stream is a request in flight for as long as it is
// open: the store architecture's balancer must count it, so that p2c sends
// new requests to the instance that is not busy streaming. Two instances;
// a stream held open on one; every plain request then goes to the other.
func TestStoreArchCountsOpenStreamsAsInFlight(t *testing.T) {
	release := make(chan struct{})
	streaming := make(chan string, 1)
	served := map[string]*atomic.Int64{}
	backend := func(name string) *httptest.Server {
		n := &atomic.Int64{}
		served[name] = n
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Unstuck-Instance", name)
			switch r.URL.Path {
			case "/healthz":
			case "/events":
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "data: {\"state\":\"running\"}\n\n")
				w.(http.Flusher).Flush()
				streaming <- name
				select {
				case <-release:
				case <-r.Context().Done():
				}
			default:
				n.Add(1)
			}
		}))
	}
	srvA, srvB := backend("a"), backend("b")
	defer srvA.Close()
	defer srvB.Close()
	defer close(release)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := balancerConfig(model.Store, l.Addr().String(), []lb.BackendConfig{
		{Name: "a", URL: srvA.URL, Weight: 1}, {Name: "b", URL: srvB.URL, Weight: 1}})
	bl, err := lb.New(cfg, lb.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = bl.Serve(l) }()
	defer bl.Close()
	base := "http://" + l.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); !strings.HasPrefix(line, "data:") {
		t.Fatalf("stream said %q", line)
	}
	busy := <-streaming
	testenv.Eventually(t, 10*time.Second, func() error {
		for _, b := range bl.Backends() {
			if b.Name == busy && b.InFlight != 1 {
				return fmt.Errorf("backend %s streaming, in flight %d, want 1", busy, b.InFlight)
			}
		}
		return nil
	})
	// One at a time, so the only in-flight request is the stream.
	for range 40 {
		r, err := http.Get(base + "/api/me")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	if n := served[busy].Load(); n != 0 {
		t.Fatalf("p2c sent %d of 40 requests to %s, which holds an open stream; want none (a: %d, b: %d)",
			n, busy, served["a"].Load(), served["b"].Load())
	}
}

// The live app's file job and the simulation's must take the same time:
// the progress stream is in flight for as long as the job runs, and p2c
// and the spill weigh it. The default model gives the live run's 100ms a
// step.
func TestJobDelayFollowsTheModel(t *testing.T) {
	for _, p := range []model.Params{model.Default(), model.Quick()} {
		if d := p.Script.UploadJob / textstats.DefaultSteps; d != 100*time.Millisecond {
			t.Errorf("model job of %v gives %v a step, want the live run's 100ms", p.Script.UploadJob, d)
		}
	}
}
