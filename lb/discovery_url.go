package lb

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The syntax of a DNS discovery backend URL:
//
//	dns://HOST:PORT[?PARAMS]        A and AAAA records of HOST; every address, at PORT
//	dns+srv://NAME[?PARAMS]         SRV records of NAME (e.g. _http._tcp.app.ns.svc.cluster.local),
//	                                lowest priority only; every address of every target, at its port
//
// PARAMS (all optional):
//
//	scheme=http|https    how to speak to the backends [http]; https verifies the certificate
//	                     against the DNS name (HOST, or the SRV target)
//	interval=DURATION    how often to resolve again [10s]
//	timeout=DURATION     bound on one resolution [5s]
//	family=ip|ip4|ip6    which addresses [ip: both]
//	resolver=HOST:PORT   DNS server to ask [the system's, from /etc/resolv.conf]

// dnsSpec is a parsed DNS discovery URL.
type dnsSpec struct {
	raw      string
	srv      bool
	name     string // the name to resolve
	port     uint16 // dns://; SRV records carry their own
	scheme   string
	interval time.Duration
	timeout  time.Duration
	family   string // ip, ip4, ip6: net.Resolver.LookupNetIP's network
	resolver string // host:port, or "" for the system's
}

const (
	defaultDNSInterval = 10 * time.Second
	defaultDNSTimeout  = 5 * time.Second
)

// isDNSURL reports whether a backend URL names a DNS discovery source.
func isDNSURL(s string) bool {
	return strings.HasPrefix(s, "dns://") || strings.HasPrefix(s, "dns+srv://")
}

// parseDNSURL parses a DNS discovery URL; its errors name the part that is
// wrong.
func parseDNSURL(s string) (*dnsSpec, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL", s)
	}
	sp := &dnsSpec{raw: s, srv: u.Scheme == "dns+srv", scheme: "http", interval: defaultDNSInterval,
		timeout: defaultDNSTimeout, family: "ip"}
	bad := func(part, format string, args ...any) error {
		return fmt.Errorf("%s: %s: %s", s, part, fmt.Sprintf(format, args...))
	}
	if u.User != nil || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, bad("url", "no user, path or fragment: want %s", dnsSyntax(sp.srv))
	}
	host := u.Hostname()
	if host == "" {
		return nil, bad("host", "missing: want %s", dnsSyntax(sp.srv))
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil, bad("host", "%q is an address, not a name to resolve: list it as http://%s instead", host, u.Host)
	}
	if !validDNSName(host) {
		return nil, bad("host", "%q is not a DNS name", host)
	}
	sp.name = host
	switch {
	case sp.srv && u.Port() != "":
		return nil, bad("port", "a SRV name takes no port: the records carry it")
	case !sp.srv && u.Port() == "":
		return nil, bad("port", "missing: want dns://HOST:PORT")
	case !sp.srv:
		p, err := strconv.Atoi(u.Port())
		if err != nil || p < 1 || p > 65535 {
			return nil, bad("port", "%q is not a port", u.Port())
		}
		sp.port = uint16(p)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, bad("query", "%v", err)
	}
	for k, vs := range q {
		v := vs[len(vs)-1]
		if len(vs) > 1 {
			return nil, bad(k, "given %d times", len(vs))
		}
		switch k {
		case "scheme":
			if v != "http" && v != "https" {
				return nil, bad(k, "%q is not http or https", v)
			}
			sp.scheme = v
		case "interval", "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d < 10*time.Millisecond || d > 24*time.Hour {
				return nil, bad(k, "%q is not a duration between 10ms and 24h", v)
			}
			if k == "interval" {
				sp.interval = d
			} else {
				sp.timeout = d
			}
		case "family":
			if v != "ip" && v != "ip4" && v != "ip6" {
				return nil, bad(k, "%q is not ip, ip4 or ip6", v)
			}
			sp.family = v
		case "resolver":
			h, p, err := net.SplitHostPort(v)
			if n, perr := strconv.Atoi(p); err != nil || h == "" || perr != nil || n < 1 || n > 65535 {
				return nil, bad(k, "%q is not host:port", v)
			}
			sp.resolver = v
		default:
			return nil, bad("query", "unknown parameter %q (scheme, interval, timeout, family, resolver)", k)
		}
	}
	return sp, nil
}

func dnsSyntax(srv bool) string {
	if srv {
		return "dns+srv://NAME"
	}
	return "dns://HOST:PORT"
}

func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// dnsPrefix is the name prefix of a DNS source's backends when the entry
// has no name: the first label of the name that is not a SRV service or
// protocol label ("app" for _http._tcp.app.ns.svc.cluster.local).
func dnsPrefix(sp *dnsSpec) string {
	for _, l := range strings.Split(sp.name, ".") {
		if l != "" && !strings.HasPrefix(l, "_") {
			if len(l) > 32 {
				l = l[:32]
			}
			return l
		}
	}
	return "dns"
}

// discoveredName is the stable name of the backend at ap from a source
// whose entry is named prefix: the same on every balancer and across
// re-resolutions, so sticky cookies keep pointing at it.
func discoveredName(prefix string, ap netip.AddrPort) string {
	a := strings.ReplaceAll(ap.Addr().Unmap().String(), ":", "_")
	suffix := "-" + a + "-" + strconv.Itoa(int(ap.Port()))
	if len(prefix)+len(suffix) > 64 {
		prefix = prefix[:64-len(suffix)]
	}
	return prefix + suffix
}
