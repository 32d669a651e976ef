package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	if name := os.Getenv("UNSTUCK_TEST_BACKEND"); name != "" {
		runTestBackend(name) // this process is a backend for a process test
		return
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// unstuckBinary builds cmd/unstuck once for the process tests.
func unstuckBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "unstuck-lb-test")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "unstuck")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// lbProc is a running `unstuck lb` process.
type lbProc struct {
	cmd   *exec.Cmd
	url   string
	admin string
	mu    sync.Mutex
	log   bytes.Buffer
	done  chan struct{}
	err   error
}

func (p *lbProc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

var (
	listenRE = regexp.MustCompile(`msg="lb listening" addr=(\S+)`)
	adminRE  = regexp.MustCompile(`msg="admin listening" addr=(\S+)`)
)

// startLBProc starts `unstuck lb args...` on free loopback ports and waits
// until both listeners are up (it reads their addresses from the log).
func startLBProc(t *testing.T, env []string, args ...string) *lbProc {
	t.Helper()
	args = append([]string{"lb", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, args...)
	p := &lbProc{cmd: exec.Command(unstuckBinary(t), args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var l, a string
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				l = m[1]
			}
			if m := adminRE.FindStringSubmatch(line); m != nil {
				a = m[1]
			}
			if l != "" && a != "" {
				addrs <- [2]string{l, a}
				l = ""
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case a := <-addrs:
		p.url, p.admin = "http://"+a[0], "http://"+a[1]
	case <-p.done:
		t.Fatalf("unstuck lb exited: %v\n%s", p.err, p.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("unstuck lb did not start listening:\n%s", p.logs())
	}
	return p
}

func namedBackend(t *testing.T, name string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// Two separate balancer processes with the same secret send every cookie
// to the same backend, whichever of them set it.
func TestLBProcessesAgreeOnCookie(t *testing.T) {
	a, b, c := namedBackend(t, "a"), namedBackend(t, "b"), namedBackend(t, "c")
	backends := []string{"--backend", "a=" + a.URL, "--backend", "b=" + b.URL, "--backend", "c=" + c.URL}
	env := []string{"UNSTUCK_SECRET=shared-fleet-secret-0123456789"}
	lb1 := startLBProc(t, env, append([]string{"--policy", "round-robin"}, backends...)...)
	lb2 := startLBProc(t, env, append([]string{"--policy", "random"}, backends...)...)
	for i := range 6 {
		jar, _ := cookiejar.New(nil) // ignores ports: both balancers get the cookie
		cl := &http.Client{Jar: jar, Timeout: 10 * time.Second}
		first, second := lb1, lb2
		if i%2 == 1 {
			first, second = lb2, lb1
		}
		resp, err := cl.Get(first.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Set-Cookie") == "" {
			t.Fatalf("no sticky cookie from the first balancer")
		}
		for range 4 {
			resp, err := cl.Get(second.url + "/")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != string(body) || resp.Header.Get("Set-Cookie") != "" {
				t.Fatalf("pinned to %s by one balancer, sent to %s by the other (Set-Cookie %q)",
					body, got, resp.Header.Get("Set-Cookie"))
			}
		}
	}
}

// SIGTERM: the in-flight request finishes, the WebSocket gets 1001, exit 0.
func TestLBGracefulSIGTERM(t *testing.T) {
	release := make(chan struct{})
	var started atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		<-release
		io.WriteString(w, "finished")
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			if _, _, err := c.Read(r.Context()); err != nil {
				return
			}
		}
	})
	be := httptest.NewServer(mux)
	t.Cleanup(be.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	p := startLBProc(t, nil, "--backend", be.URL, "--sticky", "none")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(p.url, "http", "ws", 1)+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := http.Get(p.url + "/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- result{resp.StatusCode, string(b), err}
	}()
	testenv.Eventually(t, 10*time.Second, func() error {
		if started.Load() == 0 {
			return fmt.Errorf("slow request not at the backend yet")
		}
		return nil
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, _, err = ws.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
		t.Fatalf("WebSocket on SIGTERM: %v (code %d), want 1001\n%s", err, code, p.logs())
	}
	close(release)
	r := <-slow
	if r.err != nil || r.code != 200 || r.body != "finished" {
		t.Fatalf("in-flight request during shutdown: %+v\n%s", r, p.logs())
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		t.Fatalf("no exit after SIGTERM\n%s", p.logs())
	}
	if p.err != nil {
		t.Fatalf("exit: %v\n%s", p.err, p.logs())
	}
}

func listBackends(t *testing.T, admin string) []map[string]any {
	t.Helper()
	resp, err := http.Get(admin + "/api/backends")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	return l
}

// SIGHUP and POST /api/reload apply a new config; a bad one is refused
// with the reason, and the old one keeps running.
func TestLBReloadSIGHUPAndBadConfig(t *testing.T) {
	a, b := namedBackend(t, "a"), namedBackend(t, "b")
	dir := t.TempDir()
	path := filepath.Join(dir, "unstuck.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("backends:\n  - {name: a, url: '" + a.URL + "'}\nsticky:\n  secrets: ['0123456789abcdef0123']\n")
	p := startLBProc(t, nil, "--config", path)
	if l := listBackends(t, p.admin); len(l) != 1 {
		t.Fatalf("backends: %v", l)
	}
	write("backends:\n  - {name: a, url: '" + a.URL + "'}\n  - {name: b, url: '" + b.URL + "'}\nsticky:\n  secrets: ['0123456789abcdef0123']\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if l := listBackends(t, p.admin); len(l) != 2 {
			return fmt.Errorf("%d backends after SIGHUP", len(l))
		}
		return nil
	})
	write("backends:\n  - {name: a, url: '" + a.URL + "'}\npolicy:\n  nmae: p2c\n")
	resp, err := http.Post(p.admin+"/api/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "unstuck.yaml:4") || !strings.Contains(string(body), `unknown field \"nmae\"`) {
		t.Fatalf("bad config reload: %d %s", resp.StatusCode, body)
	}
	if l := listBackends(t, p.admin); len(l) != 2 {
		t.Fatalf("bad config changed the backends: %v", l)
	}
	if resp, err := http.Get(p.url + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("proxy after a refused reload: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

func TestLBCheck(t *testing.T) {
	t.Setenv("UNSTUCK_SECRET", "")
	t.Setenv("UNSTUCK_ADMIN_TOKEN", "")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"lb", "--check", "--config", "../../lb/testdata/unstuck.yaml"}, &out, &errb); code != 0 {
		t.Fatalf("--check on the example config: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "config ok: 3 backends") {
		t.Fatalf("--check output %q", out.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("backends:\n  - url: http://127.0.0.1:1\n    weight: -2\n"), 0o600)
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"lb", "--check", "--config", bad}, &out, &errb); code != 1 {
		t.Fatalf("--check on a bad config: exit %d", code)
	}
	if !strings.Contains(errb.String(), "bad.yaml:3:13: backends[0].weight") {
		t.Fatalf("error does not name file, line and field: %q", errb.String())
	}
	// Flags alone; the admin listener off loopback needs a token.
	errb.Reset()
	if code := run(context.Background(), []string{"lb", "--check", "--backend", "http://127.0.0.1:1", "--admin", "0.0.0.0:9090"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "admin.token") {
		t.Fatalf("admin off loopback without token: exit %d %q", code, errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"lb", "--check", "--backend", "http://127.0.0.1:1"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "warning: no sticky secret") {
		t.Fatalf("flags without a secret: exit %d %q", code, out.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"lb", "--check", "--backend", "ftp://x"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "--backend") {
		t.Fatalf("bad --backend: exit %d %q", code, errb.String())
	}
}

// writeSelfSigned writes a throwaway certificate for 127.0.0.1.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// Under TLS (tls.cert/key in the config) the sticky cookie is Secure.
func TestLBServesTLSWithSecureCookie(t *testing.T) {
	be := namedBackend(t, "a")
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	path := filepath.Join(dir, "unstuck.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf("tls: {cert: %q, key: %q}\nbackends: [{url: %q}]\nsticky: {secrets: ['0123456789abcdef0123'], max_age: 1h}\n", cert, key, be.URL)), 0o600)
	p := startLBProc(t, nil, "--config", path)
	pool := x509.NewCertPool()
	pemBytes, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(pemBytes)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := cl.Get(strings.Replace(p.url, "http://", "https://", 1) + "/")
	if err != nil {
		t.Fatalf("%v\n%s", err, p.logs())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sc := resp.Header.Get("Set-Cookie")
	if string(body) != "a" || !strings.Contains(sc, "; Secure") || !strings.Contains(sc, "Max-Age=3600") || !strings.Contains(sc, "HttpOnly") {
		t.Fatalf("over TLS: %q, Set-Cookie %q", body, sc)
	}
}

// runTestBackend serves "name" on a free loopback port, printing the
// address first; tests start it as a separate process so they can SIGKILL it.
func runTestBackend(name string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("LISTEN", ln.Addr().String())
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
}

// startBackendProc starts this test binary as a backend process.
func startBackendProc(t *testing.T, name string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "UNSTUCK_TEST_BACKEND="+name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "LISTEN ")
	if err != nil || !ok {
		t.Fatalf("backend %s did not start: %q %v", name, line, err)
	}
	return cmd, "http://" + addr
}

// A backend process is SIGKILLed while clients hammer the balancer process:
// no GET fails (a request that got no byte back is retried on another
// backend, and the dead one is ejected).
func TestLBBackendProcessKilledUnderLoad(t *testing.T) {
	var args []string
	procs := map[string]*exec.Cmd{}
	for _, n := range []string{"a", "b", "c"} {
		cmd, url := startBackendProc(t, n)
		procs[n] = cmd
		args = append(args, "--backend", n+"="+url)
	}
	p := startLBProc(t, nil, append([]string{"--sticky", "none"}, args...)...)
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
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
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := ok.Load(); n < 300 {
			return fmt.Errorf("%d requests before the kill", n)
		}
		return nil
	})
	if err := procs["b"].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := ok.Load()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := ok.Load() - killedAt; n < 600 {
			return fmt.Errorf("%d requests since the kill", n)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	// The one format BENCHMARKS.md's Faults table quotes (GETs only: no
	// writes to lose here; internal/faults and the experiment count those).
	t.Logf("FAULT instance-sigkill-behind-lb: requests=%d failed_503=0 failed_other=%d longest_error_window=0s acked_writes=0 acked_writes_lost=0",
		ok.Load()+failed.Load(), failed.Load())
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d of %d GETs failed after a backend process was killed; first: %v\n%s", f, f+ok.Load(), firstErr.Load(), p.logs())
	}
	var b map[string]any
	for _, x := range listBackends(t, p.admin) {
		if x["name"] == "b" {
			b = x
		}
	}
	if b["state"] != "ejected" {
		t.Fatalf("killed backend: %v", b)
	}
}
