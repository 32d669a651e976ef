package proxy

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
)

// wsBackend answers WebSocket upgrades by hand and hands the raw
// connection to script.
func wsBackend(t *testing.T, script func(c net.Conn, br *bufio.Reader)) *Upstream {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "not websocket", 400)
			return
		}
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
			base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n")
		script(c, brw.Reader)
	})
	return u
}

func writeFrame(w io.Writer, op byte, payload []byte, mask bool) error {
	h := []byte{0x80 | op, 0}
	switch n := len(payload); {
	case n < 126:
		h[1] = byte(n)
	case n < 1<<16:
		h[1] = 126
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h[1] = 127
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	p := append([]byte(nil), payload...)
	if mask {
		h[1] |= 0x80
		key := []byte{1, 2, 3, 4}
		h = append(h, key...)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	_, err := w.Write(append(h, p...))
	return err
}

func readFrame(r io.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(r, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(r, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	var key [4]byte
	if h[1]&0x80 != 0 {
		io.ReadFull(r, key[:])
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return
	}
	if h[1]&0x80 != 0 {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return h[0] & 0x0f, payload, nil
}

const wsUpgrade = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

func TestWebSocketEchoAndCloseAtFrameBoundary(t *testing.T) {
	more := make(chan struct{})
	u := wsBackend(t, func(c net.Conn, br *bufio.Reader) {
		// Echo one message.
		_, p, err := readFrame(br)
		if err != nil {
			return
		}
		writeFrame(c, 1, p, false)
		// Then send a 10-byte binary frame in two halves, so that the
		// close below is requested in the middle of it.
		c.Write([]byte{0x82, 10, 'a', 'b', 'c', 'd', 'e'})
		<-more
		c.Write([]byte("fghij"))
		io.Copy(io.Discard, br)
	})
	tunnels := make(chan *Tunnel, 1)
	var doneStatus atomic.Int64
	var sawWS atomic.Bool
	p := startProxy(t, &Server{Route: func(req *Request) (Target, error) {
		sawWS.Store(req.IsWebSocket())
		return Target{Upstream: u,
			Done:     func(o Outcome) { doneStatus.Store(int64(o.Status)) },
			OnTunnel: func(tn *Tunnel) { tunnels <- tn }}, nil
	}})
	c := p.dial()
	c.send(wsUpgrade)
	res, _ := c.resp("GET")
	if res.StatusCode != 101 || res.Header.Get("Upgrade") != "websocket" || res.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("upgrade: %d %v", res.StatusCode, res.Header)
	}
	tn := <-tunnels // Done runs before OnTunnel
	if !sawWS.Load() || doneStatus.Load() != 101 {
		t.Fatalf("IsWebSocket=%v Done status=%d", sawWS.Load(), doneStatus.Load())
	}
	if tn.Upstream() != u {
		t.Fatal("tunnel upstream")
	}
	if err := writeFrame(c.c, 1, []byte("hello"), true); err != nil {
		t.Fatal(err)
	}
	if op, p, err := readFrame(c.br); err != nil || op != 1 || string(p) != "hello" {
		t.Fatalf("echo: %d %q %v", op, p, err)
	}
	half := make([]byte, 7)
	if _, err := io.ReadFull(c.br, half); err != nil {
		t.Fatal(err)
	}
	tn.Close(1012, "service restart")
	tn.Close(1001, "second call is a no-op")
	close(more)
	rest := make([]byte, 5)
	if _, err := io.ReadFull(c.br, rest); err != nil || string(rest) != "fghij" {
		t.Fatalf("rest of the frame: %q %v", rest, err)
	}
	op, payload, err := readFrame(c.br)
	if err != nil || op != 8 || len(payload) < 2 {
		t.Fatalf("close frame: op=%d %q %v", op, payload, err)
	}
	if code := binary.BigEndian.Uint16(payload); code != 1012 || string(payload[2:]) != "service restart" {
		t.Fatalf("close code %d reason %q", code, payload[2:])
	}
	c.c.Close()
	<-tn.Closed()
}

func TestWebSocketRefusedUpgradeIsRelayed(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) })
	p := startProxy(t, &Server{Route: one(u)})
	c := p.dial()
	c.send(wsUpgrade)
	if res, _ := c.resp("GET"); res.StatusCode != 403 {
		t.Fatalf("status %d", res.StatusCode)
	}
}

func TestTunnelEndsWhenUpstreamCloses(t *testing.T) {
	u := wsBackend(t, func(c net.Conn, br *bufio.Reader) {
		writeFrame(c, 1, []byte("bye"), false)
	})
	tunnels := make(chan *Tunnel, 1)
	p := startProxy(t, &Server{Route: func(*Request) (Target, error) {
		return Target{Upstream: u, OnTunnel: func(tn *Tunnel) { tunnels <- tn }}, nil
	}})
	c := p.dial()
	c.send(wsUpgrade)
	c.resp("GET")
	if _, p, err := readFrame(c.br); err != nil || string(p) != "bye" {
		t.Fatalf("%q %v", p, err)
	}
	if !c.closed() {
		t.Fatal("client not closed after upstream left")
	}
	c.c.Close()
	<-(<-tunnels).Closed()
}

func TestTunnelIdleTimeoutSendsGoingAway(t *testing.T) {
	u := wsBackend(t, func(c net.Conn, br *bufio.Reader) { io.Copy(io.Discard, br) })
	p := startProxy(t, &Server{Route: one(u), Timeouts: Timeouts{TunnelIdle: 300 * 1e6}})
	c := p.dial()
	c.send(wsUpgrade)
	c.resp("GET")
	op, payload, err := readFrame(c.br)
	if err != nil || op != 8 || binary.BigEndian.Uint16(payload) != 1001 {
		t.Fatalf("op=%d %q %v", op, payload, err)
	}
}
