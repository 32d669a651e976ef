package lb

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// appPort is the port an httptest app listens on.
func appPort(a *appBackend) string {
	_, p, _ := net.SplitHostPort(a.srv.Listener.Addr().String())
	return p
}

func backendNames(l *liveLB) []string {
	var ns []string
	for _, s := range l.bl.Backends() {
		ns = append(ns, s.Name)
	}
	slices.Sort(ns)
	return ns
}

func wantBackends(t *testing.T, l *liveLB, want ...string) {
	t.Helper()
	slices.Sort(want)
	testenv.Eventually(t, 20*time.Second, func() error {
		if got := backendNames(l); !slices.Equal(got, want) {
			return fmt.Errorf("backends %v, want %v", got, want)
		}
		return nil
	})
}

func TestDNSDiscoverySRVAddsDrainsAndKeepsLastGoodSet(t *testing.T) {
	d := testenv.StartDNS(t)
	a1, a2, a3 := newApp(t, "a1"), newApp(t, "a2"), newApp(t, "a3")
	slow := make(chan struct{}) // /slow waits for it
	for _, a := range []*appBackend{a1, a2, a3} {
		a.srv.Config.Handler = slowOn(a.srv.Config.Handler, "/slow", slow)
	}
	d.SetA("a1.app.test", "127.0.0.1")
	d.SetA("a2.app.test", "127.0.0.1")
	d.SetA("a3.app.test", "127.0.0.1")
	d.SetSRV("_http._tcp.app.test", "a1.app.test:"+appPort(a1), "a2.app.test:"+appPort(a2))
	name := func(a *appBackend) string { return "app-127.0.0.1-" + appPort(a) }
	src := "dns+srv://_http._tcp.app.test?interval=50ms&resolver=" + d.Addr
	l := startLB(t, &Config{
		Backends: []BackendConfig{{URL: src}},
		Health: HealthConfig{Active: ActiveHealthConfig{Path: "/healthz", Interval: 20 * time.Millisecond, Rise: 1, Fall: 1},
			SlowStart: time.Hour},
		Drain: DrainConfig{Idle: 300 * time.Millisecond},
	})
	// The first answer is in place before New returns.
	if got := backendNames(l); !slices.Equal(got, []string{name(a1), name(a2)}) && !slices.Equal(got, []string{name(a2), name(a1)}) {
		t.Fatalf("backends at start %v", got)
	}
	for _, s := range l.bl.Backends() {
		if s.Source != src {
			t.Fatalf("%s: source %q, want %q", s.Name, s.Source, src)
		}
	}
	// A user pinned to a1 with a request in flight.
	c := jarClient(t)
	_, first := get(t, c, l.url+"/")
	pinned := map[string]*appBackend{"a1": a1, "a2": a2}[first]

	// a3 appears: added, with slow start (an hour: its weight stays low).
	d.SetSRV("_http._tcp.app.test", "a1.app.test:"+appPort(a1), "a2.app.test:"+appPort(a2), "a3.app.test:"+appPort(a3))
	wantBackends(t, l, name(a1), name(a2), name(a3))
	for _, s := range l.bl.Backends() {
		if s.Name == name(a3) && (s.Weight >= 1 || s.Source != src) {
			t.Fatalf("new backend %+v: want slow start (weight below 1) and its source", s)
		}
	}

	// DNS fails, then answers nothing: the set stays, failures counted.
	d.Fail(true)
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := sumCounter(t, l.bl, "unstuck_lb_dns_resolutions_total", "result", "error"); n < 2 {
			return fmt.Errorf("%v failed resolutions", n)
		}
		return nil
	})
	d.Fail(false)
	d.SetSRV("_http._tcp.app.test")
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := sumCounter(t, l.bl, "unstuck_lb_dns_resolutions_total", "result", "empty"); n < 2 {
			return fmt.Errorf("%v empty answers", n)
		}
		return nil
	})
	if got := backendNames(l); len(got) != 3 {
		t.Fatalf("a failing or empty DNS answer changed the set: %v", got)
	}
	st := l.bl.Discovery()
	if len(st) != 1 || st[0].Result != "empty" || st[0].Failures < 2 || len(st[0].Backends) != 3 || st[0].Name != "app" {
		t.Fatalf("discovery status %+v", st)
	}

	// The pinned user's backend vanishes while a request of its user is
	// in flight: it drains, the request completes, then it is removed.
	done := make(chan string, 1)
	go func() {
		resp, err := c.Get(l.url + "/slow")
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- strconv.Itoa(resp.StatusCode) + " " + string(b)
	}()
	testenv.Eventually(t, 20*time.Second, func() error {
		for _, s := range l.bl.Backends() {
			if s.Name == name(pinned) && s.InFlight == 1 {
				return nil
			}
		}
		return errors.New("the slow request is not in flight yet")
	})
	var keep []string
	for _, a := range []*appBackend{a1, a2, a3} {
		if a != pinned {
			keep = append(keep, a.name+".app.test:"+appPort(a))
		}
	}
	d.SetSRV("_http._tcp.app.test", keep...)
	testenv.Eventually(t, 20*time.Second, func() error {
		s, ok := l.bl.status(name(pinned))
		if !ok || !s.Draining || !s.Removing {
			return fmt.Errorf("vanished backend: %+v", s)
		}
		return nil
	})
	close(slow)
	if got := <-done; got != "200 "+pinned.name {
		t.Fatalf("request in flight on a vanished backend: %q", got)
	}
	wantBackends(t, l, func() []string {
		var ns []string
		for _, a := range []*appBackend{a1, a2, a3} {
			if a != pinned {
				ns = append(ns, name(a))
			}
		}
		return ns
	}()...)
	// Its user is re-pinned to a backend that is still there.
	if _, body := get(t, c, l.url+"/"); body == pinned.name {
		t.Fatalf("user still sent to the vanished %s", body)
	}

	// The admin API shows where backends came from.
	var list []BackendStatus
	adminJSON(t, "GET", l.admin.URL+"/api/backends", "", "", &list)
	if len(list) != 2 || list[0].Source != src {
		t.Fatalf("/api/backends: %+v", list)
	}
	var disc []DiscoveryStatus
	if code := adminJSON(t, "GET", l.admin.URL+"/api/discovery", "", "", &disc); code != 200 || len(disc) != 1 || disc[0].URL != src {
		t.Fatalf("/api/discovery: %d %+v", code, disc)
	}
	var e map[string]string
	if code := adminJSON(t, "POST", l.admin.URL+"/api/backends", "", `{"url":"dns://x.test:80"}`, &e); code != 400 {
		t.Fatalf("adding a DNS source through the API: %d %v", code, e)
	}
}

// slowOn makes path wait for release.
func slowOn(h http.Handler, path string, release chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			<-release
		}
		h.ServeHTTP(w, r)
	})
}

// listenSamePort starts n apps on 127.0.0.2, .3, ... all on one port, as
// the instances behind one DNS name with a port are.
func listenSamePort(t *testing.T, n int) ([]*appBackend, string) {
	t.Helper()
	for try := 0; try < 20; try++ {
		var ls []net.Listener
		port := "0"
		for i := range n {
			l, err := net.Listen("tcp", net.JoinHostPort(fmt.Sprintf("127.0.0.%d", i+2), port))
			if err != nil {
				break
			}
			ls = append(ls, l)
			_, port, _ = net.SplitHostPort(l.Addr().String())
		}
		if len(ls) < n {
			for _, l := range ls {
				l.Close()
			}
			continue
		}
		var apps []*appBackend
		for i, l := range ls {
			a := newApp(t, fmt.Sprintf("h%d", i+2))
			a.srv.Close()
			s := httptest.NewUnstartedServer(a.srv.Config.Handler)
			s.Listener.Close()
			s.Listener = l
			s.Start()
			t.Cleanup(s.Close)
			a.srv = s
			apps = append(apps, a)
		}
		return apps, port
	}
	t.Fatal("no port free on 127.0.0.2 and up")
	return nil, ""
}

func TestDNSDiscoveryAddressRecordsWithPort(t *testing.T) {
	d := testenv.StartDNS(t)
	apps, port := listenSamePort(t, 3)
	d.SetA("web.test", "127.0.0.2", "127.0.0.3")
	l := startLB(t, &Config{
		Sticky:   StickyConfig{Mode: "none"},
		Backends: []BackendConfig{{Name: "web", URL: "dns://web.test:" + port + "?interval=50ms&family=ip4&resolver=" + d.Addr}},
	})
	wantBackends(t, l, "web-127.0.0.2-"+port, "web-127.0.0.3-"+port)
	seen := map[string]bool{}
	for range 6 {
		_, body := get(t, http.DefaultClient, l.url+"/")
		seen[body] = true
	}
	if !seen["h2"] || !seen["h3"] {
		t.Fatalf("traffic went to %v", seen)
	}
	d.SetA("web.test", "127.0.0.3", "127.0.0.4")
	wantBackends(t, l, "web-127.0.0.3-"+port, "web-127.0.0.4-"+port)
	if apps[0].hits.Load() == 0 {
		t.Fatal("127.0.0.2 never served")
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		for range 4 {
			if _, body := get(t, http.DefaultClient, l.url+"/"); body == "h2" {
				return errors.New("still sent to the removed 127.0.0.2")
			}
		}
		return nil
	})
	// A reload keeps the discovered backends and their source.
	cfg := &Config{Sticky: StickyConfig{Mode: "none"}, Admin: AdminConfig{Listen: "off"},
		Backends: []BackendConfig{{Name: "web", URL: "dns://web.test:" + port + "?interval=50ms&family=ip4&resolver=" + d.Addr}}}
	if _, err := l.bl.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if got := backendNames(l); len(got) != 2 {
		t.Fatalf("after reload: %v", got)
	}
}

func TestDNSBackendURLErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"dns://app.test", "port: missing"},
		{"dns://app.test:0", "port: \"0\" is not a port"},
		{"dns+srv://_http._tcp.app.test:80", "port: a SRV name takes no port"},
		{"dns://10.0.0.1:80", "is an address, not a name"},
		{"dns://app.test:80?interval=soon", "interval: \"soon\" is not a duration"},
		{"dns://app.test:80?family=ipx", "family: \"ipx\" is not ip, ip4 or ip6"},
		{"dns://app.test:80?scheme=ftp", "scheme: \"ftp\" is not http or https"},
		{"dns://app.test:80?resolver=nope", "resolver: \"nope\" is not host:port"},
		{"dns://app.test:80?color=red", "unknown parameter \"color\""},
		{"dns://app.test:80/path", "no user, path or fragment"},
		{"dns://bad_name!.test:80", "is not a DNS name"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := ParseConfig("unstuck.yaml", []byte("backends:\n  - url: \""+tc.url+"\"\n"))
			if err == nil || !strings.Contains(err.Error(), "unstuck.yaml:2:") || !strings.Contains(err.Error(), "backends[0].url: ") ||
				!strings.Contains(err.Error(), tc.want) {
				t.Fatalf("config error %v; want file:line, backends[0].url and %q", err, tc.want)
			}
			if _, err := ParseBackendFlag(tc.url); err == nil || !strings.Contains(err.Error(), "url: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("--backend error %v; want url and %q", err, tc.want)
			}
		})
	}
	bc, err := ParseBackendFlag("api=dns+srv://_http._tcp.api.test?interval=5s")
	if err != nil || bc.Name != "api" || bc.URL != "dns+srv://_http._tcp.api.test?interval=5s" {
		t.Fatalf("--backend NAME=dns+srv://...: %+v %v", bc, err)
	}
	cfg, err := ParseConfig("x.yaml", []byte("backends:\n  - url: dns+srv://_http._tcp.shop.ns.svc.cluster.local\n"))
	if err != nil || cfg.Backends[0].Name != "shop" {
		t.Fatalf("a DNS entry's default name: %+v %v", cfg, err)
	}
}

func TestDNSDiscoveryReResolvesWhenABackendFails(t *testing.T) {
	d := testenv.StartDNS(t)
	a := newApp(t, "a")
	d.SetA("a.kick.test", "127.0.0.1")
	d.SetSRV("_http._tcp.kick.test", "a.kick.test:"+appPort(a))
	// An hour between resolutions: only a failure can make it look again.
	l := startLB(t, &Config{Sticky: StickyConfig{Mode: "none"},
		Backends: []BackendConfig{{URL: "dns+srv://_http._tcp.kick.test?interval=1h&resolver=" + d.Addr}}})
	b := newApp(t, "b")
	d.SetSRV("_http._tcp.kick.test", "a.kick.test:"+appPort(b))
	a.srv.Close() // a dies: connection refused
	testenv.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get(l.url + "/")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "b" {
			return fmt.Errorf("%d %q", resp.StatusCode, body)
		}
		return nil
	})
}

// FuzzParseDNSURL: any string is refused with a message naming the URL,
// or parsed into a source whose backends get valid, stable names.
func FuzzParseDNSURL(f *testing.F) {
	for _, s := range []string{
		"dns://app.test:8080", "dns+srv://_http._tcp.app.ns.svc.cluster.local?interval=5s&timeout=1s",
		"dns://a:1?scheme=https&family=ip4&resolver=127.0.0.1:53", "dns://app", "dns+srv://x:1",
		"dns://1.2.3.4:80", "dns://a:1?interval=soon", "dns://[::1]:80", "dns://_.-:65535?x=%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := parseDNSURL(s)
		if err != nil {
			if !strings.Contains(err.Error(), s) && !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("error does not name the URL: %v", err)
			}
			return
		}
		if sp.interval < 10*time.Millisecond || sp.timeout < 10*time.Millisecond || sp.name == "" || (sp.port == 0) != sp.srv {
			t.Fatalf("parsed %q into %+v", s, sp)
		}
		for _, ap := range []netip.AddrPort{netip.MustParseAddrPort("10.1.2.3:8080"), netip.MustParseAddrPort("[fd00:aaaa:bbbb:cccc:dddd:eeee:ffff:1111]:65535")} {
			name := discoveredName(dnsPrefix(sp), ap)
			if !backendNameRE.MatchString(name) || name != discoveredName(dnsPrefix(sp), ap) {
				t.Fatalf("backend name %q from %q", name, s)
			}
		}
	})
}
