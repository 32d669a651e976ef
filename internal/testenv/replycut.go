package testenv

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// ReplyCutter is a TCP proxy in front of a server that can lose one reply:
// once armed with a marker, the next request containing it reaches the
// server and is applied, and the connection is cut before the reply comes
// back, as when a server dies or a network drops between the two. Clients
// then see a dead connection for a request that did take effect, the case
// a repeat must recognise.
type ReplyCutter struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	marker []byte // armed: cut after the next request containing it
	crash  bool   // the cut closes every connection, not only its own
	conns  map[net.Conn]bool

	cuts atomic.Int32
}

// CutReplies starts a ReplyCutter in front of addr, closed when the test
// ends.
func CutReplies(t testing.TB, addr string) *ReplyCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ReplyCutter{ln: ln, target: addr, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *ReplyCutter) Addr() string { return p.ln.Addr().String() }

// Arm makes the proxy lose the reply to the next request that contains
// marker (a command name such as "EVALSHA").
func (p *ReplyCutter) Arm(marker string) {
	p.mu.Lock()
	p.marker = []byte(marker)
	p.crash = false
	p.mu.Unlock()
}

// ArmCrash is Arm for a server that dies just after applying the request:
// with the reply, every connection through the proxy is cut, so a client
// holding several (a pool, a dedicated one) cannot repeat the request over
// one that was open before.
func (p *ReplyCutter) ArmCrash(marker string) {
	p.mu.Lock()
	p.marker = []byte(marker)
	p.crash = true
	p.mu.Unlock()
}

// Cuts is how many replies the proxy has lost.
func (p *ReplyCutter) Cuts() int { return int(p.cuts.Load()) }

func (p *ReplyCutter) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// severAll closes every connection through the proxy; new ones are still
// accepted.
func (p *ReplyCutter) severAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *ReplyCutter) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

func (p *ReplyCutter) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			p.conns = nil
			p.mu.Unlock()
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(client, server) {
			client.Close()
			server.Close()
			return
		}
		go p.pipe(client, server)
	}
}

// pipe forwards one connection. A request carrying the armed marker is
// forwarded, and then the connection is cut instead of its reply being
// forwarded.
func (p *ReplyCutter) pipe(client, server net.Conn) {
	cut := make(chan struct{})
	crash := false // set before cut is closed
	var once sync.Once
	doCut := func() { once.Do(func() { close(cut) }) }
	go func() {
		defer server.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				p.mu.Lock()
				armed := p.marker != nil && bytes.Contains(buf[:n], p.marker)
				if armed {
					p.marker = nil
					crash, p.crash = p.crash, false
				}
				p.mu.Unlock()
				if armed {
					doCut() // before the reply can arrive
				}
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer client.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			select {
			case <-cut:
				// The request was applied; its reply is lost.
				p.cuts.Add(1)
				server.Close()
				if crash {
					p.severAll()
				}
				return
			default:
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				server.Close()
			}
			return
		}
	}
}
