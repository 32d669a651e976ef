package demo

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// recordingLB is not a mock of the balancer: the control API's contract with it
// is this small interface, and the test checks what the API asks of it.
type recordingLB struct {
	mu    sync.Mutex
	state map[string]string
	total map[string]uint64
}

func (l *recordingLB) set(name, st string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == nil {
		l.state = map[string]string{}
	}
	l.state[name] = st
}
func (l *recordingLB) AddBackend(_ context.Context, name, _ string) error {
	l.set(name, "up")
	return nil
}
func (l *recordingLB) Drain(_ context.Context, name string) error {
	l.set(name, "draining")
	return nil
}
func (l *recordingLB) Undrain(_ context.Context, name string) error {
	l.set(name, "up")
	return nil
}
func (l *recordingLB) BackendState(name string) (string, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state[name], l.total[name]
}

func call(t *testing.T, srv *httptest.Server, method, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func TestControlAPI(t *testing.T) {
	lb := &recordingLB{}
	c := &Control{Fleet: testFleet(t), Balancer: lb}
	mux := http.NewServeMux()
	c.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var added InstanceInfo
	if st := call(t, srv, "POST", "/api/instances", &added); st != 201 || added.Name != "app-1" {
		t.Fatalf("add: %d %+v", st, added)
	}
	if st, _ := lb.BackendState("app-1"); st != "up" {
		t.Fatal("added instance did not join the balancer")
	}
	var list []InstanceInfo
	if call(t, srv, "GET", "/api/instances", &list); len(list) != 1 || list[0].State != StateUp || list[0].PID == 0 {
		t.Fatalf("list = %+v", list)
	}

	var in InstanceInfo
	if st := call(t, srv, "POST", "/api/instances/app-1/drain", &in); st != 200 || in.State != "draining" {
		t.Fatalf("drain: %d %+v", st, in)
	}
	if st := call(t, srv, "POST", "/api/instances/app-1/crash", &in); st != 200 || in.State != StateDown {
		t.Fatalf("crash: %d %+v", st, in)
	}
	if st := call(t, srv, "POST", "/api/instances/app-1/restart", &in); st != 200 || in.State != StateUp || in.PID == 0 {
		t.Fatalf("restart: %d %+v", st, in)
	}

	var e map[string]string
	if st := call(t, srv, "POST", "/api/instances/nope/crash", &e); st != 404 || e["error"] == "" {
		t.Fatalf("crash unknown: %d %v", st, e)
	}
	if st := call(t, srv, "POST", "/api/instances/app-1/explode", &e); st != 404 || e["error"] == "" {
		t.Fatalf("unknown action: %d %v", st, e)
	}
}

func TestControlRates(t *testing.T) {
	lb := &recordingLB{total: map[string]uint64{"app-1": 100}}
	c := &Control{Fleet: testFleet(t), Balancer: lb}
	if _, err := c.Fleet.Add(context.Background()); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	c.sample(t0)
	lb.mu.Lock()
	lb.total["app-1"] = 350
	lb.mu.Unlock()
	c.sample(t0.Add(2 * time.Second))
	if got := c.instances()[0].RPS; got != 125 {
		t.Fatalf("rps = %v, want 125 (250 requests in 2s)", got)
	}
	// Down, it serves nothing: no rate from before the crash, even before
	// the next sample.
	lb.set("app-1", "ejected")
	if in := c.instances()[0]; in.State != "ejected" || in.RPS != 0 {
		t.Fatalf("ejected by the balancer: %+v, want rps 0", in)
	}
	lb.set("app-1", "up")
	if err := c.Fleet.Crash("app-1"); err != nil {
		t.Fatal(err)
	}
	if in := c.instances()[0]; in.State != StateDown || in.RPS != 0 {
		t.Fatalf("crashed: %+v, want rps 0", in)
	}
}
