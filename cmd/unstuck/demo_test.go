package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// demoProc is a real `unstuck demo` process with its shop and admin URLs.
type demoProc struct {
	cmd   *exec.Cmd
	shop  string
	admin string
	out   *syncBuffer
	done  chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDemo runs the demo and waits until every instance is up behind the
// balancer. Job steps are fast unless the test asks otherwise.
func startDemo(t *testing.T, args ...string) *demoProc {
	t.Helper()
	shopAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	args = append([]string{"demo", "--listen", shopAddr, "--admin", adminAddr}, args...)
	cmd := exec.Command(unstuckBinary(t), args...)
	out := &syncBuffer{}
	cmd.Stderr = out
	stdout, _ := cmd.StdoutPipe()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &demoProc{cmd: cmd, shop: "http://" + shopAddr, admin: "http://" + adminAddr, out: out, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), "Press Ctrl-C") {
				close(ready)
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
	select {
	case <-ready:
	case <-d.done:
		t.Fatalf("demo exited before it was ready:\n%s", out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("demo not ready after 60s:\n%s", out.String())
	}
	t.Logf("demo ready in %v", time.Since(start).Round(time.Millisecond))
	return d
}

type instance struct {
	Name  string `json:"name"`
	State string `json:"state"`
	PID   int    `json:"pid"`
}

func (d *demoProc) instances(t *testing.T) []instance {
	t.Helper()
	var list []instance
	doJSON(t, http.DefaultClient, "GET", d.admin+"/api/instances", nil, &list)
	return list
}

// user is one browser: a client with its own cookie jar.
func newUser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 15 * time.Second}
}

// doJSON sends a JSON request and decodes a JSON answer; it returns the
// status and the instance that served it.
func doJSON(t *testing.T, c *http.Client, method, url string, body, out any) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, url, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode, resp.Header.Get("X-Unstuck-Instance")
}

type cartResp struct {
	Items []struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	} `json:"items"`
}

func (c cartResp) count(sku string) int {
	n := 0
	for _, it := range c.Items {
		if sku == "" || it.SKU == sku {
			n += it.Qty
		}
	}
	return n
}

// loginAndFill logs a user in and adds three items, returning the instance
// that served the last request.
func loginAndFill(t *testing.T, d *demoProc, u *http.Client) string {
	t.Helper()
	if st, _ := doJSON(t, u, "POST", d.shop+"/api/login", map[string]string{"user": "alice"}, nil); st != 200 {
		t.Fatalf("login: %d", st)
	}
	for _, sku := range []string{"demo-sku", "mug", "tee"} {
		if st, _ := doJSON(t, u, "POST", d.shop+"/api/cart/items", map[string]any{"sku": sku, "qty": 1}, nil); st != 200 {
			t.Fatalf("add %s: %d", sku, st)
		}
	}
	var cart cartResp
	st, served := doJSON(t, u, "GET", d.shop+"/api/cart", nil, &cart)
	if st != 200 || cart.count("") != 3 {
		t.Fatalf("cart before crash: %d %+v", st, cart)
	}
	return served
}

// survived checks that alice, logged in by loginAndFill on the instance
// served, is still logged in with her three items on another one.
func survived(t *testing.T, d *demoProc, u *http.Client, served string) {
	t.Helper()
	var me struct{ User, Instance string }
	if st, _ := doJSON(t, u, "GET", d.shop+"/api/me", nil, &me); st != 200 || me.User != "alice" || me.Instance == served {
		t.Fatalf("after crashing %s: /api/me = %d %+v", served, st, me)
	}
	var cart cartResp
	if st, _ := doJSON(t, u, "GET", d.shop+"/api/cart", nil, &cart); st != 200 || cart.count("") != 3 {
		t.Fatalf("after crash: cart = %d %+v, want 3 items", st, cart)
	}
}

func crash(t *testing.T, d *demoProc, name string) {
	t.Helper()
	if st, _ := doJSON(t, http.DefaultClient, "POST", d.admin+"/api/instances/"+name+"/crash", nil, nil); st != 200 {
		t.Fatalf("crash %s: %d", name, st)
	}
}

func TestDemoStoreModeSurvivesCrash(t *testing.T) {
	d := startDemo(t, "--job-delay", "0s")
	list := d.instances(t)
	if len(list) != 3 {
		t.Fatalf("instances = %+v, want 3", list)
	}
	u := newUser(t)
	served := loginAndFill(t, d, u)
	crash(t, d, served)

	// The very next requests, on whatever instance, still know alice and
	// her three items.
	survived(t, d, u, served)

	// 200 concurrent adds of one item, spread over the live instances,
	// end with exactly 200: no update is lost.
	const adds = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]int{}
	failures := 0
	sem := make(chan struct{}, 32)
	for range adds {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st, inst := doJSON(t, u, "POST", d.shop+"/api/cart/items", map[string]any{"sku": "socks", "qty": 1}, nil)
			mu.Lock()
			defer mu.Unlock()
			seen[inst]++
			if st != 200 {
				failures++
			}
		}()
	}
	wg.Wait()
	if failures > 0 {
		t.Fatalf("%d of %d adds failed", failures, adds)
	}
	if len(seen) < 2 {
		t.Fatalf("adds all went to %v; want them spread over the live instances", seen)
	}
	var cart cartResp
	if st, _ := doJSON(t, u, "GET", d.shop+"/api/cart", nil, &cart); st != 200 || cart.count("socks") != adds {
		t.Fatalf("after %d concurrent adds over %v: socks = %d", adds, seen, cart.count("socks"))
	}

	// Bad input is a 4xx with a JSON error, never a 5xx.
	for _, tc := range []struct {
		body any
		want int
	}{
		{map[string]any{"sku": "nope", "qty": 1}, 400},
		{map[string]any{"sku": "mug", "qty": -2}, 400},
		{"not an object", 400},
	} {
		if st, _ := doJSON(t, u, "POST", d.shop+"/api/cart/items", tc.body, nil); st != tc.want {
			t.Errorf("POST /api/cart/items %v = %d, want %d", tc.body, st, tc.want)
		}
	}
}

func TestDemoStickyModeLosesCrashedUsers(t *testing.T) {
	d := startDemo(t, "--mode", "sticky", "--job-delay", "0s")
	// The banner says where sessions really are: not in the store.
	if want := "sticky mode: sessions in each instance's memory (sticky cookie), chat and jobs in the embedded NATS"; !strings.Contains(d.out.String(), want) {
		t.Errorf("demo banner does not say %q:\n%s", want, d.out.String())
	}
	u := newUser(t)
	served := loginAndFill(t, d, u)
	// Sticky: every request went to one instance.
	for range 5 {
		if _, inst := doJSON(t, u, "GET", d.shop+"/api/cart", nil, nil); inst != served {
			t.Fatalf("sticky mode served by %s then %s", served, inst)
		}
	}
	crash(t, d, served)
	st, inst := doJSON(t, u, "GET", d.shop+"/api/me", nil, nil)
	if st != http.StatusUnauthorized || inst == served {
		t.Fatalf("sticky mode after crash: /api/me = %d from %s, want 401 from another instance (state lost)", st, inst)
	}
	var cart cartResp
	if doJSON(t, u, "GET", d.shop+"/api/cart", nil, &cart); cart.count("") != 0 {
		t.Fatalf("sticky mode after crash: cart = %+v, want empty", cart)
	}
}

func TestDemoCtrlCLeavesNoProcess(t *testing.T) {
	d := startDemo(t)
	list := d.instances(t)
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not exit within 30s of Ctrl-C")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("demo exit code %d after Ctrl-C", code)
	}
	for _, in := range list {
		if syscall.Kill(in.PID, 0) == nil {
			t.Errorf("instance %s (pid %d) still running after the demo stopped", in.Name, in.PID)
		}
	}
}

// TestDemoBannerSaysWhereStateLives: what the demo prints matches where
// each mode and store keeps sessions, chat and jobs.
func TestDemoBannerSaysWhereStateLives(t *testing.T) {
	for _, tc := range []struct{ mode, store, want string }{
		{"store", "nats", "sessions, chat and jobs in the embedded NATS"},
		{"sticky", "nats", "sessions in each instance's memory (sticky cookie), chat and jobs in the embedded NATS"},
		{"sticky", "memory", "sessions in each instance's memory (sticky cookie), chat and jobs in the embedded NATS"},
		{"store", "redis://:pw@127.0.0.1:6379", "sessions, chat and jobs in redis://***@127.0.0.1:6379"},
		{"sticky", "redis://127.0.0.1:6379", "sessions in each instance's memory (sticky cookie), chat and jobs in redis://127.0.0.1:6379"},
		{"store", "dynamodb://sessions?region=eu-west-1", "sessions in dynamodb://sessions?region=eu-west-1, chat and jobs in the embedded NATS"},
		{"cookie", "nats", "sessions sealed into each browser's cookie (logouts pushed over the embedded NATS), chat and jobs in the embedded NATS"},
	} {
		f := demoFlags{mode: tc.mode, store: tc.store}
		if got := f.whereStateLives(); got != tc.want {
			t.Errorf("--mode %s --store %s: %q, want %q", tc.mode, tc.store, got, tc.want)
		}
	}
}

func TestDemoFlagErrorsNameTheFlag(t *testing.T) {
	for args, want := range map[string]string{
		"--instances 0":                   "--instances 0",
		"--instances 99":                  "--instances 99",
		"--mode wobbly":                   `--mode "wobbly"`,
		"--store mysql://h:1":             "--store",
		"--store redis+sentinel://h:1":    "--store",
		"--store nats://a:1,nats://b:x":   "--store",
		"--store memory --mode store":     "--store memory",
		"--listen 127.0.0.1:notaport":     "--listen",
		"--mode cookie --store memory":    "--store memory",
		"--sessions bogus":                `--sessions "bogus"`,
		"--sessions cookie --mode sticky": "disagree",
	} {
		var out, errb bytes.Buffer
		code := run(t.Context(), append([]string{"demo"}, strings.Fields(args)...), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), want) {
			t.Errorf("demo %s: exit %d, stderr %q; want an error naming %q", args, code, errb.String(), want)
		}
	}
}

// TestDemoDynamoDBStore runs the demo with sessions in DynamoDB (a real
// dynalite) and chat and jobs over the embedded NATS: a crash loses nothing.
func TestDemoDynamoDBStore(t *testing.T) {
	dyn := testenv.DynamoDB(t)
	d := startDemo(t, "--store", "dynamodb://shop_sessions?region=us-east-1&create=true&endpoint="+dyn.Endpoint(), "--job-delay", "0s")
	u := newUser(t)
	served := loginAndFill(t, d, u)
	crash(t, d, served)
	survived(t, d, u, served)
}

func TestAppSessionsOnlyStoreNeedsBackplane(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"app", "--store", "memory", "--listen", "127.0.0.1:0"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "--backplane") {
		t.Fatalf("app --store memory: exit %d, stderr %q; want an error naming --backplane", code, errb.String())
	}
	errb.Reset()
	code = run(t.Context(), []string{"app", "--store", "redis+sentinel://127.0.0.1:1/unstuck?wait=9", "--listen", "127.0.0.1:0"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "--store") || !strings.Contains(errb.String(), "wait") {
		t.Fatalf("app --store redis+sentinel://...?wait=9: exit %d, stderr %q; want an error naming --store and wait", code, errb.String())
	}
	errb.Reset()
	code = run(t.Context(), []string{"app", "--store", "memory", "--backplane", "memory", "--listen", "127.0.0.1:0"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "--backplane") {
		t.Fatalf("app --backplane memory: exit %d, stderr %q", code, errb.String())
	}
}
