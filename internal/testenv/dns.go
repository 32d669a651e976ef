package testenv

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// DNS is a real DNS server (miekg/dns, UDP on a free loopback port)
// whose zone a test changes while the code under test watches it. Its
// answers are authoritative, as a cluster DNS server's are.
type DNS struct {
	// Addr is the server's host:port, for a resolver setting.
	Addr string
	mu   sync.Mutex
	a    map[string][]netip.Addr // fqdn -> A/AAAA
	srv  map[string][]*dns.SRV   // fqdn -> SRV
	fail atomic.Bool             // answer SERVFAIL
}

// StartDNS starts a DNS server with an empty zone for the test's
// lifetime.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	f := &DNS{a: map[string][]netip.Addr{}, srv: map[string][]*dns.SRV{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.Addr = pc.LocalAddr().String()
	started := make(chan struct{})
	s := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(f.serve), NotifyStartedFunc: func() { close(started) }}
	go s.ActivateAndServe()
	<-started
	t.Cleanup(func() { s.Shutdown() })
	return f
}

func (f *DNS) serve(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true // an empty answer is then "no records", not a lame referral
	if f.fail.Load() {
		m.SetRcode(r, dns.RcodeServerFailure)
		w.WriteMsg(m)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, q := range r.Question {
		name := strings.ToLower(q.Name)
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 1, Rrtype: q.Qtype}
		_, isA := f.a[name]
		_, isSRV := f.srv[name]
		if !isA && !isSRV {
			m.SetRcode(r, dns.RcodeNameError)
			continue
		}
		switch q.Qtype {
		case dns.TypeA, dns.TypeAAAA:
			for _, ip := range f.a[name] {
				if ip.Is4() && q.Qtype == dns.TypeA {
					m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip.AsSlice()})
				}
				if ip.Is6() && q.Qtype == dns.TypeAAAA {
					m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
				}
			}
		case dns.TypeSRV:
			for _, s := range f.srv[name] {
				rr := *s
				rr.Hdr = hdr
				m.Answer = append(m.Answer, &rr)
			}
		}
	}
	w.WriteMsg(m)
}

// SetA sets name's A and AAAA records.
func (f *DNS) SetA(name string, ips ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var as []netip.Addr
	for _, ip := range ips {
		as = append(as, netip.MustParseAddr(ip))
	}
	f.a[dns.Fqdn(name)] = as
}

// SetSRV points name's SRV records at targets "host:port", priority 0;
// none makes an empty answer.
func (f *DNS) SetSRV(name string, targets ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var rs []*dns.SRV
	for _, t := range targets {
		h, p, _ := net.SplitHostPort(t)
		port, _ := strconv.Atoi(p)
		rs = append(rs, &dns.SRV{Priority: 0, Weight: 10, Port: uint16(port), Target: dns.Fqdn(h)})
	}
	f.srv[dns.Fqdn(name)] = rs
}

// Fail makes every answer SERVFAIL (on) or normal again (off).
func (f *DNS) Fail(on bool) { f.fail.Store(on) }
