package lb

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

var backendNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Validate applies defaults and checks every field, returning a
// *FieldError for the first problem.
func (c *Config) Validate() error {
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fieldErr("listen", "%q is not host:port", c.Listen)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return fieldErr("tls", "cert and key must be set together")
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = "127.0.0.1:9090"
	}
	if c.Admin.Listen != "off" {
		host, _, err := net.SplitHostPort(c.Admin.Listen)
		if err != nil {
			return fieldErr("admin.listen", "%q is not host:port", c.Admin.Listen)
		}
		if !isLoopbackHost(host) && c.Admin.Token == "" {
			return fieldErr("admin.token", "the admin listener %q is not on loopback: set a token (or listen on 127.0.0.1)", c.Admin.Listen)
		}
	}
	for i, s := range c.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			return fieldErr(fmt.Sprintf("trusted_proxies[%d]", i), "%q is not a CIDR or IP address", s)
		}
	}
	if len(c.Backends) == 0 {
		return fieldErr("backends", "at least one backend is required")
	}
	seen := map[string]int{}
	for i := range c.Backends {
		b := &c.Backends[i]
		f := fmt.Sprintf("backends[%d]", i)
		if b.Name == "" {
			b.Name = "b" + strconv.Itoa(i+1)
		}
		if !backendNameRE.MatchString(b.Name) {
			return fieldErr(f+".name", "%q: use 1-64 letters, digits, '-', '_' or '.'", b.Name)
		}
		if j, dup := seen[b.Name]; dup {
			return fieldErr(f+".name", "%q is also the name of backends[%d]", b.Name, j)
		}
		seen[b.Name] = i
		if _, err := parseBackendURL(b.URL); err != nil {
			return fieldErr(f+".url", "%v", err)
		}
		if b.Weight == 0 {
			b.Weight = 1
		}
		if b.Weight < 0 || b.Weight > 10000 {
			return fieldErr(f+".weight", "%d is not between 1 and 10000", b.Weight)
		}
	}
	switch c.Policy.Name {
	case "":
		c.Policy.Name = PolicyRoundRobin
	case PolicyRoundRobin, PolicyLeastConn, PolicyP2C, PolicyRandom, PolicyHash:
	default:
		return fieldErr("policy.name", "%q is not one of round-robin, least-conn, p2c, random, hash", c.Policy.Name)
	}
	if c.Policy.Key == "" {
		c.Policy.Key = "ip"
	}
	if _, err := parseHashKey(c.Policy.Key); err != nil {
		return fieldErr("policy.key", "%v", err)
	}
	if c.Policy.Factor == 0 {
		c.Policy.Factor = DefaultBalanceFactor
	}
	if c.Policy.Factor <= 1 || c.Policy.Factor > 100 {
		return fieldErr("policy.factor", "%g must be above 1 (1.25 is usual)", c.Policy.Factor)
	}
	switch c.Sticky.Mode {
	case "":
		c.Sticky.Mode = "cookie"
	case "cookie", "none":
	default:
		return fieldErr("sticky.mode", "%q is not cookie or none", c.Sticky.Mode)
	}
	if c.Sticky.Cookie == "" {
		c.Sticky.Cookie = DefaultCookieName
	}
	if !cookieNameRE.MatchString(c.Sticky.Cookie) {
		return fieldErr("sticky.cookie", "%q is not a valid cookie name", c.Sticky.Cookie)
	}
	for i, s := range c.Sticky.Secrets {
		if len(s) < MinSecretLen {
			return fieldErr(fmt.Sprintf("sticky.secrets[%d]", i), "shorter than %d bytes", MinSecretLen)
		}
	}
	if c.Sticky.MaxAge < 0 {
		return fieldErr("sticky.max_age", "must not be negative")
	}
	if c.Sticky.TTL == 0 {
		c.Sticky.TTL = 24 * time.Hour
		if c.Sticky.MaxAge > c.Sticky.TTL {
			c.Sticky.TTL = c.Sticky.MaxAge
		}
	}
	if c.Sticky.TTL < time.Second {
		return fieldErr("sticky.ttl", "must be at least 1s")
	}
	a := &c.Health.Active
	if a.Path != "" && !strings.HasPrefix(a.Path, "/") {
		return fieldErr("health.active.path", "%q must start with /", a.Path)
	}
	setDur(&a.Interval, 5*time.Second)
	setDur(&a.Timeout, 2*time.Second)
	if a.Interval < 10*time.Millisecond {
		return fieldErr("health.active.interval", "must be at least 10ms")
	}
	if a.Status != 0 && (a.Status < 100 || a.Status > 599) {
		return fieldErr("health.active.status", "%d is not an HTTP status", a.Status)
	}
	setInt(&a.Rise, 2)
	setInt(&a.Fall, 3)
	if a.Rise < 1 || a.Fall < 1 {
		return fieldErr("health.active", "rise and fall must be at least 1")
	}
	p := &c.Health.Passive
	setInt(&p.Failures, 5)
	setDur(&p.Ejection, 30*time.Second)
	setDur(&p.MaxEjection, max(5*time.Minute, p.Ejection))
	setInt(&p.MaxEjectedPercent, 50)
	if p.Failures < 1 {
		return fieldErr("health.passive.failures", "must be at least 1")
	}
	if p.MaxEjection < p.Ejection {
		return fieldErr("health.passive.max_ejection", "shorter than ejection")
	}
	if p.MaxEjectedPercent < 0 || p.MaxEjectedPercent > 100 {
		return fieldErr("health.passive.max_ejected_percent", "%d is not a percentage", p.MaxEjectedPercent)
	}
	if c.Health.PanicThreshold == nil {
		v := 50
		c.Health.PanicThreshold = &v
	}
	if t := *c.Health.PanicThreshold; t < 0 || t > 100 {
		return fieldErr("health.panic_threshold", "%d is not a percentage", t)
	}
	if c.Health.SlowStart < 0 {
		return fieldErr("health.slow_start", "must not be negative")
	}
	if len(c.Retries.Methods) == 0 {
		c.Retries.Methods = proxy.DefaultRetryMethods()
	}
	for i, m := range c.Retries.Methods {
		if !methodRE.MatchString(m) {
			return fieldErr(fmt.Sprintf("retries.methods[%d]", i), "%q is not an HTTP method", m)
		}
	}
	setInt(&c.Retries.BodyBytes, 64<<10)
	for _, d := range []struct {
		f string
		v time.Duration
	}{
		{"timeouts.client_header", c.Timeouts.ClientHeader}, {"timeouts.client_idle", c.Timeouts.ClientIdle},
		{"timeouts.client_write", c.Timeouts.ClientWrite}, {"timeouts.dial", c.Timeouts.Dial},
		{"timeouts.upstream", c.Timeouts.Upstream}, {"timeouts.upstream_idle", c.Timeouts.UpstreamIdle},
		{"websocket.idle", c.WebSocket.Idle}, {"websocket.max_lifetime", c.WebSocket.MaxLifetime},
		{"websocket.close_window", c.WebSocket.CloseWindow}, {"drain.idle", c.Drain.Idle},
		{"drain.deadline", c.Drain.Deadline}, {"shutdown.grace", c.Shutdown.Grace},
	} {
		if d.v < 0 {
			return fieldErr(d.f, "must not be negative")
		}
	}
	if c.Limits.MaxHeaderBytes < 0 || c.Limits.MaxBodyBytes < 0 || c.Limits.MaxConns < 0 {
		return fieldErr("limits", "must not be negative")
	}
	setDur(&c.WebSocket.CloseWindow, 10*time.Second)
	setDur(&c.Drain.Idle, 5*time.Minute)
	setDur(&c.Drain.Deadline, time.Hour)
	setDur(&c.Shutdown.Grace, 30*time.Second)
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		return fieldErr("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "":
		c.Log.Format = "text"
	case "text", "json":
	default:
		return fieldErr("log.format", "%q is not text or json", c.Log.Format)
	}
	return nil
}

var (
	cookieNameRE = regexp.MustCompile(`^[!#$%&'*+\-.^_` + "`" + `|~0-9A-Za-z]{1,64}$`)
	methodRE     = regexp.MustCompile(`^[A-Z]{1,20}$`)
)

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

func setInt(i *int, def int) {
	if *i == 0 {
		*i = def
	}
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseBackendURL accepts http(s)://host:port with no path, query or user.
func parseBackendURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("missing: want http://host:port")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q is not an http or https URL", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("%q: only scheme://host:port is supported (no path, query or user)", s)
	}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return nil, fmt.Errorf("%q has a bad port", s)
	}
	u.Path = ""
	return u, nil
}

// ParseBackendFlag parses a --backend value, [NAME=]URL.
func ParseBackendFlag(s string) (BackendConfig, error) {
	var bc BackendConfig
	if i := strings.IndexByte(s, '='); i >= 0 && !strings.ContainsAny(s[:i], ":/") {
		bc.Name, s = s[:i], s[i+1:]
		if !backendNameRE.MatchString(bc.Name) {
			return bc, fmt.Errorf("name %q: use 1-64 letters, digits, '-', '_' or '.'", bc.Name)
		}
	}
	if _, err := parseBackendURL(s); err != nil {
		return bc, err
	}
	bc.URL = s
	return bc, nil
}

func parseHashKey(s string) (HashKey, error) {
	switch {
	case s == "ip":
		return HashKey{Source: "ip"}, nil
	case strings.HasPrefix(s, "header:") && len(s) > len("header:"):
		return HashKey{Source: "header", Name: s[len("header:"):]}, nil
	case strings.HasPrefix(s, "cookie:") && len(s) > len("cookie:"):
		return HashKey{Source: "cookie", Name: s[len("cookie:"):]}, nil
	}
	return HashKey{}, fmt.Errorf("%q is not ip, header:NAME or cookie:NAME", s)
}
