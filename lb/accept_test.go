package lb

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxyproto"
	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// xffApp answers "NAME XFF".
func xffApp(t *testing.T, name string) *appBackend {
	a := newApp(t, name)
	a.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.Header.Get("X-Forwarded-For"))
	})
	return a
}

// ppLB serves cfg with proxy_protocol on (trusting trusted), TLS when tc
// is set, logging to log.
func ppLB(t *testing.T, trusted string, tc *tls.Config, log *slog.Logger, apps ...*appBackend) (*Balancer, string) {
	t.Helper()
	cfg := &Config{
		Admin:         AdminConfig{Listen: "off"},
		Sticky:        StickyConfig{Mode: "none"},
		Policy:        PolicyConfig{Name: "hash"},
		Log:           LogConfig{Access: true},
		ProxyProtocol: ProxyProtocolConfig{Enabled: true, Trusted: []string{trusted}, Timeout: 300 * time.Millisecond},
	}
	for _, a := range apps {
		cfg.Backends = append(cfg.Backends, BackendConfig{Name: a.name, URL: a.srv.URL})
	}
	if log == nil {
		log = quietLogger()
	}
	bl, err := New(cfg, Options{Logger: log, TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go bl.Serve(ln)
	t.Cleanup(func() { bl.Close() })
	return bl, ln.Addr().String()
}

// getVia sends header then a GET on a new connection and returns the
// body, or the error that ended the connection.
func getVia(t *testing.T, addr string, header []byte) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(header, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), nil
}

func v1(src string) []byte {
	return []byte("PROXY TCP4 " + src + " 127.0.0.1 40000 8080\r\n")
}

func TestProxyProtocolClientAddressForXFFHashAndLogs(t *testing.T) {
	a, b := xffApp(t, "a"), xffApp(t, "b")
	var mu sync.Mutex
	var logs strings.Builder
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	bl, addr := ppLB(t, "127.0.0.0/8", nil, slog.New(slog.NewTextHandler(w, nil)), a, b)

	// v1 and v2 (IPv6): the backend sees the client the header named.
	if got, err := getVia(t, addr, v1("203.0.113.7")); err != nil || !strings.HasSuffix(got, " 203.0.113.7") {
		t.Fatalf("v1: %q %v", got, err)
	}
	h6 := proxyproto.AppendV2(nil, netip.MustParseAddrPort("[2001:db8::9]:5555"), netip.MustParseAddrPort("[::1]:8080"))
	if got, err := getVia(t, addr, h6); err != nil || !strings.HasSuffix(got, " 2001:db8::9") {
		t.Fatalf("v2: %q %v", got, err)
	}
	// The sender's own connection (a health check): the socket peer.
	local := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x20, 0x00, 0, 0)
	if got, err := getVia(t, addr, local); err != nil || !strings.HasSuffix(got, " 127.0.0.1") {
		t.Fatalf("v2 LOCAL: %q %v", got, err)
	}
	// hash on the client IP: every connection comes from 127.0.0.1, yet
	// clients spread, and each keeps its backend.
	where := map[string]string{}
	for i := range 40 {
		ip := fmt.Sprintf("198.51.100.%d", i+1)
		for range 2 {
			got, err := getVia(t, addr, v1(ip))
			if err != nil {
				t.Fatal(err)
			}
			name := strings.Fields(got)[0]
			if w, ok := where[ip]; ok && w != name {
				t.Fatalf("client %s moved from %s to %s under hash", ip, w, name)
			}
			where[ip] = name
		}
	}
	used := map[string]bool{}
	for _, n := range where {
		used[n] = true
	}
	if len(used) != 2 {
		t.Fatalf("40 clients behind one L4 balancer all hashed to %v", used)
	}
	mu.Lock()
	if s := logs.String(); !strings.Contains(s, "client=203.0.113.7") || !strings.Contains(s, "client=2001:db8::9") {
		t.Fatalf("access log without the PROXY clients: %s", s)
	}
	mu.Unlock()
	for result, want := range map[string]float64{"v1": 81, "v2": 1, "local": 1} {
		if n := sumCounter(t, bl, "unstuck_lb_proxy_protocol_total", "result", result); n != want {
			t.Errorf("proxy_protocol_total{result=%s} = %v, want %v", result, n, want)
		}
	}
}

func TestProxyProtocolBadInputClosesOnlyThatConnection(t *testing.T) {
	a := xffApp(t, "a")
	bl, addr := ppLB(t, "127.0.0.1", nil, nil, a)
	// No header at all, a malformed one, and an oversized v2: each
	// connection is closed without an answer.
	for _, bad := range [][]byte{nil, []byte("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"),
		append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, 0x11, 0xff, 0xff)} {
		if got, err := getVia(t, addr, bad); err == nil {
			t.Fatalf("header %q: answered %q", bad, got)
		}
	}
	// A sender that says nothing: the wait ends at proxy_protocol.timeout,
	// and the listener serves others meanwhile.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if got, err := getVia(t, addr, v1("192.0.2.50")); err != nil || got != "a 192.0.2.50" {
		t.Fatalf("while another connection is silent: %q %v", got, err)
	}
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatalf("a silent connection got %d bytes", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a silent connection was not closed at proxy_protocol.timeout")
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		inv := sumCounter(t, bl, "unstuck_lb_proxy_protocol_total", "result", "invalid")
		to := sumCounter(t, bl, "unstuck_lb_proxy_protocol_total", "result", "timeout")
		// The connection without a header sent a request line instead:
		// invalid, as is the bad port; the oversized v2 is invalid too.
		if inv != 3 || to != 1 {
			return fmt.Errorf("invalid %v, timeout %v; want 3 and 1", inv, to)
		}
		return nil
	})
}

func TestProxyProtocolOnlyFromTrustedPeers(t *testing.T) {
	a := xffApp(t, "a")
	bl, addr := ppLB(t, "10.0.0.0/8", nil, nil, a)
	if got, err := getVia(t, addr, v1("192.0.2.1")); err == nil {
		t.Fatalf("a PROXY header from an untrusted peer was believed: %q", got)
	}
	if n := sumCounter(t, bl, "unstuck_lb_proxy_protocol_total", "result", "untrusted"); n != 1 {
		t.Fatalf("untrusted = %v", n)
	}
}

func TestProxyProtocolBeforeTLSAndHTTP2(t *testing.T) {
	a := xffApp(t, "a")
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	ts.Close()
	srvTLS := &tls.Config{Certificates: ts.TLS.Certificates, NextProtos: []string{"h2", "http/1.1"}}
	_, addr := ppLB(t, "127.0.0.1", srvTLS, nil, a)
	client := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	client.NextProtos = []string{"h2"}
	client.ServerName = "example.com" // in httptest's certificate
	tr := h2Transport(client)
	tr.DialTLSContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, a)
		if err != nil {
			return nil, err
		}
		c.Write(v1("192.0.2.77"))
		tc := tls.Client(c, client)
		return tc, tc.HandshakeContext(ctx)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "a 192.0.2.77" {
		t.Fatalf("PROXY, then TLS with h2: %s %q", resp.Proto, body)
	}
}

// proxyListener reads a PROXY header off each accepted connection, as an
// app behind send_proxy does; a connection without one is refused.
type proxyListener struct {
	net.Listener
	mu   sync.Mutex
	seen []proxyproto.Header
}

type headerConn struct {
	net.Conn
	h proxyproto.Header
}

func (l *proxyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, err := proxyproto.Read(c)
		if err != nil {
			c.Close()
			continue
		}
		c.SetReadDeadline(time.Time{})
		l.mu.Lock()
		l.seen = append(l.seen, h)
		l.mu.Unlock()
		return &headerConn{c, h}, nil
	}
}

func TestSendProxyV2ToBackends(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl := &proxyListener{Listener: ln}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Context().Value(connKey{}).(proxyproto.Header)
		fmt.Fprintf(w, "%s local=%v", h.Source.Addr(), h.Local)
	}))
	srv.Listener.Close()
	srv.Listener = pl
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c.(*headerConn).h)
	}
	srv.Start()
	t.Cleanup(srv.Close)

	cfg := &Config{
		Admin: AdminConfig{Listen: "off"}, Sticky: StickyConfig{Mode: "none"},
		ProxyProtocol: ProxyProtocolConfig{Enabled: true, Trusted: []string{"127.0.0.1"}},
		Backends:      []BackendConfig{{Name: "pp", URL: srv.URL, SendProxy: true}},
		Health:        HealthConfig{Active: ActiveHealthConfig{Path: "/healthz", Interval: 20 * time.Millisecond, Rise: 1, Fall: 1}},
	}
	bl, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bl.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go bl.Serve(l)
	// Health checks open with a LOCAL header, and pass.
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := checkCount(t, bl, "pp", "pass"); n < 2 {
			return fmt.Errorf("%v checks passed", n)
		}
		return nil
	})
	// The client a PROXY header in front named is the one the backend's
	// PROXY header names, one connection per request.
	for i := range 3 {
		ip := fmt.Sprintf("203.0.113.%d", i+1)
		if got, err := getVia(t, l.Addr().String(), v1(ip)); err != nil || got != ip+" local=false" {
			t.Fatalf("backend saw %q %v, want %s", got, err, ip)
		}
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	conns := 0
	for _, h := range pl.seen {
		if !h.Local {
			conns++
			if h.Version != 2 || h.Source.Port() != 40000 {
				t.Fatalf("header %+v: want v2 with the client's port", h)
			}
		}
	}
	if conns != 3 {
		t.Fatalf("%d proxied connections for 3 requests; want one each (never pooled)", conns)
	}
}

type connKey struct{}
