package lb

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// The known HTTP/2 attacks, each spoken in raw frames to the balancer's
// real TLS listener. Each test checks that the attacker is contained
// (bounded streams, bounded backend work, the connection closed where the
// protocol says so) and that another client is served meanwhile.

// slowApp holds /slow requests until their client goes away or release
// closes, and counts how many it holds at once; /big answers 1 MiB.
type slowApp struct {
	*appBackend
	cur, peak atomic.Int64
	release   chan struct{}
	once      sync.Once
}

// releaseAll lets every held request answer.
func (s *slowApp) releaseAll() { s.once.Do(func() { close(s.release) }) }

func newSlowApp(t *testing.T) *slowApp {
	s := &slowApp{appBackend: newApp(t, "slow"), release: make(chan struct{})}
	t.Cleanup(s.releaseAll)
	inner := s.srv.Config.Handler
	s.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			n := s.cur.Add(1)
			defer s.cur.Add(-1)
			for {
				p := s.peak.Load()
				if n <= p || s.peak.CompareAndSwap(p, n) {
					break
				}
			}
			select {
			case <-r.Context().Done():
			case <-s.release:
			}
		case "/big":
			w.Header().Set("Content-Length", "1048576")
			w.Write(make([]byte, 1<<20))
		default:
			inner.ServeHTTP(w, r)
		}
	})
	return s
}

// h2conn is a raw HTTP/2 client connection: frames out through fr, frames
// in collected by a reader goroutine.
type h2conn struct {
	t    *testing.T
	c    *tls.Conn
	fr   *http2.Framer
	wmu  sync.Mutex
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	host string

	mu      sync.Mutex
	resets  map[uint32]http2.ErrCode
	status  map[uint32]string
	data    map[uint32]int
	goAway  *http2.GoAwayFrame
	readErr error
	closed  chan struct{}
}

func dialH2(t *testing.T, addr string, tc *tls.Config, settings ...http2.Setting) *h2conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	h := &h2conn{t: t, c: c, host: addr, resets: map[uint32]http2.ErrCode{}, status: map[uint32]string{},
		data: map[uint32]int{}, closed: make(chan struct{})}
	h.enc = hpack.NewEncoder(&h.hbuf)
	h.fr = http2.NewFramer(c, c)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	go h.read()
	return h
}

func (h *h2conn) read() {
	defer close(h.closed)
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.mu.Lock()
			h.readErr = err
			h.mu.Unlock()
			return
		}
		h.mu.Lock()
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.wmu.Lock()
				h.fr.WriteSettingsAck()
				h.wmu.Unlock()
			}
		case *http2.RSTStreamFrame:
			h.resets[f.StreamID] = f.ErrCode
		case *http2.GoAwayFrame:
			h.goAway = f
		case *http2.MetaHeadersFrame:
			h.status[f.StreamID] = f.PseudoValue("status")
		case *http2.DataFrame:
			h.data[f.StreamID] += len(f.Data())
		}
		h.mu.Unlock()
	}
}

// block encodes a request's header block; extra are more fields.
func (h *h2conn) block(path string, extra ...hpack.HeaderField) []byte {
	h.hbuf.Reset()
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: h.host}, {Name: ":path", Value: path},
	}, extra...) {
		h.enc.WriteField(f)
	}
	return bytes.Clone(h.hbuf.Bytes())
}

// get opens stream id with a GET of path; its error is the connection's.
func (h *h2conn) get(id uint32, path string) error {
	b := h.block(path)
	h.wmu.Lock()
	defer h.wmu.Unlock()
	return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndStream: true, EndHeaders: true})
}

func (h *h2conn) snapshot() (resets map[uint32]http2.ErrCode, status map[uint32]string, goAway *http2.GoAwayFrame, readErr error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	resets, status = map[uint32]http2.ErrCode{}, map[uint32]string{}
	for k, v := range h.resets {
		resets[k] = v
	}
	for k, v := range h.status {
		status[k] = v
	}
	return resets, status, h.goAway, h.readErr
}

// waitClosed waits for the balancer to close the connection.
func (h *h2conn) waitClosed(d time.Duration) error {
	select {
	case <-h.closed:
		return nil
	case <-time.After(d):
		return errors.New("connection still open")
	}
}

// stillServes checks that a well-behaved client is answered meanwhile.
func stillServes(t *testing.T, l *liveLB, tc *tls.Config) {
	t.Helper()
	resp, err := h2Client(tc).Get(l.url + "/")
	if err != nil {
		t.Fatalf("another client while under attack: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("another client while under attack: %d", resp.StatusCode)
	}
}

// settled waits until no request is in flight to any backend: nothing the
// attacker started is left holding a backend connection.
func settled(t *testing.T, l *liveLB) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func() error {
		for _, s := range l.bl.Backends() {
			if s.InFlight != 0 {
				return fmt.Errorf("%s: %d in flight", s.Name, s.InFlight)
			}
		}
		return nil
	})
}

const attackStreams = 8 // http2.max_concurrent_streams in these tests

func attackLB(t *testing.T, mut func(*Config)) (*liveLB, *tls.Config, *slowApp) {
	app := newSlowApp(t)
	cfg := &Config{Sticky: StickyConfig{Mode: "none"}, HTTP2: HTTP2Config{MaxConcurrentStreams: attackStreams}}
	if mut != nil {
		mut(cfg)
	}
	l, tc := startLBTLS(t, cfg, nil, app.appBackend)
	return l, tc, app
}

// CVE-2023-44487: open a stream and cancel it at once, thousands of times,
// so that the server keeps starting work the client never waits for.
func TestHTTP2RapidResetIsBounded(t *testing.T) {
	l, tc, app := attackLB(t, nil)
	h := dialH2(t, l.addr, tc)
	sent := 0
	for id := uint32(1); id < 20000; id += 2 {
		if h.get(id, "/slow") != nil {
			break
		}
		h.wmu.Lock()
		err := h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		h.wmu.Unlock()
		if err != nil {
			break
		}
		sent++
	}
	stillServes(t, l, tc)
	if p := app.peak.Load(); p > attackStreams {
		t.Fatalf("%d requests held by the backend at once from one connection; max_concurrent_streams is %d", p, attackStreams)
	}
	// Every cancelled stream's upstream request was abandoned: nothing
	// stays in flight, the backend holds nothing.
	settled(t, l)
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := app.cur.Load(); n != 0 {
			return fmt.Errorf("backend still holds %d requests of reset streams", n)
		}
		return nil
	})
	t.Logf("%d streams opened and reset; backend peak %d; resets counted %v", sent, app.peak.Load(),
		sumCounter(t, l.bl, "unstuck_lb_http2_errors_total", "kind", "too_many_early_resets"))
}

// CVE-2024-27316 and its siblings: a header block that never ends, in
// CONTINUATION frames. Over the header list limit the connection is
// closed, long before the attacker is done.
func TestHTTP2ContinuationFloodClosesTheConnection(t *testing.T) {
	l, tc, _ := attackLB(t, func(c *Config) { c.Limits.MaxHeaderBytes = 16 << 10 })
	h := dialH2(t, l.addr, tc)
	first := h.block("/")
	h.wmu.Lock()
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true}); err != nil {
		t.Fatal(err)
	}
	h.wmu.Unlock()
	// Literal fields of 4 KiB each, in CONTINUATION frames, never ending.
	h.hbuf.Reset()
	h.enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", 4000)})
	frag := bytes.Clone(h.hbuf.Bytes())
	sent := 0
	var werr error
	for sent < 64<<20 {
		h.wmu.Lock()
		werr = h.fr.WriteContinuation(1, false, frag)
		h.wmu.Unlock()
		if werr != nil {
			break
		}
		sent += len(frag)
		select {
		case <-h.closed:
			werr = errors.New("closed")
		default:
		}
		if werr != nil {
			break
		}
	}
	if err := h.waitClosed(20 * time.Second); err != nil {
		t.Fatalf("after %d bytes of CONTINUATION: %v", sent, err)
	}
	if sent > 8<<20 {
		t.Fatalf("the balancer read %d MiB of one header block before closing", sent>>20)
	}
	_, _, goAway, _ := h.snapshot()
	if goAway == nil || goAway.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("closed without GOAWAY PROTOCOL_ERROR: %+v", goAway)
	}
	stillServes(t, l, tc)
	if n := sumCounter(t, l.bl, "unstuck_lb_requests_total", "code", "200"); n != 1 {
		t.Fatalf("%v requests reached a backend; want only the other client's", n)
	}
}

// The empty-CONTINUATION variant costs no memory, only a connection that
// never completes a request: the idle timeout closes it.
func TestHTTP2EmptyContinuationFloodEndsAtIdleTimeout(t *testing.T) {
	l, tc, _ := attackLB(t, func(c *Config) { c.Timeouts.ClientIdle = time.Second })
	h := dialH2(t, l.addr, tc)
	h.wmu.Lock()
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block("/"), EndStream: true}); err != nil {
		t.Fatal(err)
	}
	h.wmu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		h.wmu.Lock()
		err := h.fr.WriteContinuation(1, false, nil)
		h.wmu.Unlock()
		if err != nil {
			break
		}
		select {
		case <-h.closed:
			deadline = time.Time{}
		case <-time.After(time.Millisecond):
		}
	}
	if err := h.waitClosed(10 * time.Second); err != nil {
		t.Fatal("endless empty CONTINUATION frames kept the connection open past the idle timeout")
	}
	stillServes(t, l, tc)
}

// A header list over limits.max_header_bytes, in one frame: the stream
// is answered 431, the backend never sees it, and the connection serves on.
// (Spread over CONTINUATION frames past the limit, it closes the
// connection instead: see the flood test.)
func TestHTTP2OversizedHeaderListIs431(t *testing.T) {
	l, tc, app := attackLB(t, func(c *Config) { c.Limits.MaxHeaderBytes = 4 << 10 })
	h := dialH2(t, l.addr, tc)
	var fields []hpack.HeaderField
	for i := range 4 {
		fields = append(fields, hpack.HeaderField{Name: fmt.Sprintf("x-big-%d", i), Value: strings.Repeat("b", 3000)})
	}
	b := h.block("/", fields...)
	h.wmu.Lock()
	err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b, EndStream: true, EndHeaders: true})
	h.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, status, _, _ := h.snapshot(); status[1] != "431" {
			return fmt.Errorf("stream 1: status %q, want 431", status[1])
		}
		return nil
	})
	// A request within limits on the same connection still works.
	if err := h.get(3, "/"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, status, _, _ := h.snapshot(); status[3] != "200" {
			return fmt.Errorf("stream 3: %q", status[3])
		}
		return nil
	})
	if n := app.hits.Load(); n != 1 {
		t.Fatalf("backend saw %d requests, want 1: an oversized header list reached it", n)
	}
}

// More streams at once than max_concurrent_streams: the extra ones are
// refused, and the backend never holds more than the limit.
func TestHTTP2TooManyConcurrentStreamsAreRefused(t *testing.T) {
	l, tc, app := attackLB(t, nil)
	h := dialH2(t, l.addr, tc)
	const extra = 20
	for i := range attackStreams + extra {
		if err := h.get(uint32(2*i+1), "/slow"); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		resets, _, goAway, _ := h.snapshot()
		if goAway != nil {
			return nil
		}
		if len(resets) < extra {
			return fmt.Errorf("%d streams refused, want %d", len(resets), extra)
		}
		return nil
	})
	resets, _, _, _ := h.snapshot()
	for id, code := range resets {
		if code != http2.ErrCodeRefusedStream && code != http2.ErrCodeProtocol {
			t.Fatalf("stream %d reset with %v", id, code)
		}
	}
	stillServes(t, l, tc)
	if p := app.peak.Load(); p > attackStreams {
		t.Fatalf("backend held %d requests of one connection at once; max_concurrent_streams is %d", p, attackStreams)
	}
	app.releaseAll()
	testenv.Eventually(t, 10*time.Second, func() error {
		_, status, _, _ := h.snapshot()
		ok := 0
		for _, s := range status {
			if s == "200" {
				ok++
			}
		}
		if admitted := attackStreams + extra - len(resets); ok != admitted {
			return fmt.Errorf("%d of %d admitted streams answered", ok, admitted)
		}
		return nil
	})
	settled(t, l)
}

// A client that never grants flow-control window: its streams cannot
// make progress. Each is reset within timeouts.client_write plus
// timeouts.upstream, and the backend connections they held are released.
func TestHTTP2FlowControlStallIsReset(t *testing.T) {
	l, tc, _ := attackLB(t, func(c *Config) {
		c.Timeouts.ClientWrite = 300 * time.Millisecond
		c.Timeouts.Upstream = time.Second
	})
	h := dialH2(t, l.addr, tc, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	for i := range attackStreams {
		if err := h.get(uint32(2*i+1), "/big"); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		resets, _, goAway, _ := h.snapshot()
		if goAway != nil {
			return nil
		}
		if len(resets) < attackStreams {
			return fmt.Errorf("%d of %d stalled streams reset", len(resets), attackStreams)
		}
		return nil
	})
	settled(t, l)
	stillServes(t, l, tc)
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, n := range h.data {
		if n > 0 {
			t.Fatalf("stream %d got %d bytes with a zero window", id, n)
		}
	}
}

// Shutdown sends GOAWAY: a stream in flight finishes, the connection then
// closes, and Shutdown returns once it has.
func TestHTTP2ShutdownLetsStreamsFinish(t *testing.T) {
	l, tc, app := attackLB(t, nil)
	c := h2Client(tc)
	got := make(chan string, 1)
	go func() {
		resp, err := c.Get(l.url + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		resp.Body.Close()
		got <- resp.Status
	}()
	testenv.Eventually(t, 10*time.Second, func() error {
		if app.cur.Load() != 1 {
			return errors.New("the slow request has not reached the backend")
		}
		return nil
	})
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- l.bl.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a stream in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	app.releaseAll()
	if s := <-got; s != "200 OK" {
		t.Fatalf("stream in flight at shutdown: %s", s)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
