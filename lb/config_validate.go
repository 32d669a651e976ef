package lb

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Validate checks every field and returns a *FieldError naming the first
// problem. It changes nothing: a zero field stands for its default (see
// ApplyDefaults) and is valid as such.
func (c *Config) Validate() error {
	for _, check := range []func() error{
		c.validateListeners,
		c.validateDeploy,
		c.validateBackends,
		c.Policy.validate,
		c.Sticky.validate,
		c.Health.validate,
		c.Retries.validate,
		c.validateBounds,
		c.Log.validate,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// validateListeners checks listen, tls, admin and trusted_proxies.
func (c *Config) validateListeners() error {
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return fieldErr("listen", "%q is not host:port", c.Listen)
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return fieldErr("tls", "cert and key must be set together")
	}
	if c.Admin.Listen != "" && c.Admin.Listen != "off" {
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
	return nil
}

// validateBackends checks each backend and that their names, given or
// defaulted, differ.
func (c *Config) validateBackends() error {
	if len(c.Backends) == 0 {
		return fieldErr("backends", "at least one backend is required")
	}
	seen := map[string]int{}
	for i, b := range c.Backends {
		f := fmt.Sprintf("backends[%d]", i)
		if err := b.validate(f + "."); err != nil {
			return err
		}
		name := b.nameOrDefault(i)
		if j, dup := seen[name]; dup {
			return fieldErr(f+".name", "%q is also the name of backends[%d]", name, j)
		}
		seen[name] = i
	}
	return nil
}

var backendNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// validate checks one backend, the same for the config file, a --backend
// flag and the admin API; prefix leads the field names in errors
// ("backends[2]." or ""). An empty name or a zero weight is valid: it
// takes a default.
func (b BackendConfig) validate(prefix string) error {
	if b.Name != "" && !backendNameRE.MatchString(b.Name) {
		return fieldErr(prefix+"name", "%q: use 1-64 letters, digits, '-', '_' or '.'", b.Name)
	}
	if isDNSURL(b.URL) {
		if _, err := parseDNSURL(b.URL); err != nil {
			return fieldErr(prefix+"url", "%v", err)
		}
	} else if _, err := parseBackendURL(b.URL); err != nil {
		return fieldErr(prefix+"url", "%v", err)
	}
	if b.Weight < 0 || b.Weight > 10000 {
		return fieldErr(prefix+"weight", "%d is not between 1 and 10000", b.Weight)
	}
	return nil
}

// validate checks the options every policy shares (key: what a keyed
// policy hashes; factor: hash's bound and sticky spill's), then has the
// named policy check its own by building it.
func (p PolicyConfig) validate() error {
	kind, ok := policyKindOf(p.Name)
	if !ok {
		return fieldErr("policy.name", "%q is not one of %s", p.Name, strings.Join(PolicyNames(), ", "))
	}
	if p.Key != "" {
		if _, err := parseHashKey(p.Key); err != nil {
			return fieldErr("policy.key", "%v", err)
		}
	}
	// Written so that NaN fails too.
	if p.Factor != 0 && !(p.Factor > 1 && p.Factor <= 100) {
		return fieldErr("policy.factor", "%g must be above 1 (1.25 is usual)", p.Factor)
	}
	p.applyDefaults()
	_, err := kind.build(p)
	return err
}

var cookieNameRE = regexp.MustCompile(`^[!#$%&'*+\-.^_` + "`" + `|~0-9A-Za-z]{1,64}$`)

func (s StickyConfig) validate() error {
	switch s.Mode {
	case "", "cookie", "none":
	default:
		return fieldErr("sticky.mode", "%q is not cookie or none", s.Mode)
	}
	if s.Cookie != "" && !cookieNameRE.MatchString(s.Cookie) {
		return fieldErr("sticky.cookie", "%q is not a valid cookie name", s.Cookie)
	}
	for i, secret := range s.Secrets {
		if len(secret) < MinSecretLen {
			return fieldErr(fmt.Sprintf("sticky.secrets[%d]", i), "shorter than %d bytes", MinSecretLen)
		}
	}
	if s.MaxAge < 0 {
		return fieldErr("sticky.max_age", "must not be negative")
	}
	if s.TTL != 0 && s.TTL < time.Second {
		return fieldErr("sticky.ttl", "must be at least 1s")
	}
	return nil
}

func (h HealthConfig) validate() error {
	a := h.Active
	if a.Path != "" && !strings.HasPrefix(a.Path, "/") {
		return fieldErr("health.active.path", "%q must start with /", a.Path)
	}
	if a.Interval != 0 && a.Interval < 10*time.Millisecond {
		return fieldErr("health.active.interval", "must be at least 10ms")
	}
	if a.Status != 0 && (a.Status < 100 || a.Status > 599) {
		return fieldErr("health.active.status", "%d is not an HTTP status", a.Status)
	}
	if a.Rise < 0 || a.Fall < 0 {
		return fieldErr("health.active", "rise and fall must be at least 1")
	}
	p := h.Passive
	if p.Failures < 0 {
		return fieldErr("health.passive.failures", "must be at least 1")
	}
	if p.Ejection < 0 || p.MaxEjection < 0 {
		return fieldErr("health.passive.ejection", "must not be negative")
	}
	if p.MaxEjection != 0 && p.MaxEjection < cmp.Or(p.Ejection, defaultEjection) {
		return fieldErr("health.passive.max_ejection", "shorter than ejection")
	}
	for i, st := range p.Statuses {
		if st < 400 || st > 599 {
			return fieldErr(fmt.Sprintf("health.passive.statuses[%d]", i), "%d is not an HTTP error status (400-599)", st)
		}
	}
	if p.MaxEjectedPercent < 0 || p.MaxEjectedPercent > 100 {
		return fieldErr("health.passive.max_ejected_percent", "%d is not a percentage", p.MaxEjectedPercent)
	}
	if t := h.PanicThreshold; t != nil && (*t < 0 || *t > 100) {
		return fieldErr("health.panic_threshold", "%d is not a percentage", *t)
	}
	if h.SlowStart < 0 {
		return fieldErr("health.slow_start", "must not be negative")
	}
	return nil
}

var methodRE = regexp.MustCompile(`^[A-Z]{1,20}$`)

func (r RetryConfig) validate() error {
	if r.BodyBytes < 0 {
		return fieldErr("retries.body_bytes", "must not be negative")
	}
	for i, m := range r.Methods {
		if !methodRE.MatchString(m) {
			return fieldErr(fmt.Sprintf("retries.methods[%d]", i), "%q is not an HTTP method", m)
		}
	}
	return nil
}

// validateBounds checks that no timeout, window or limit is negative.
func (c *Config) validateBounds() error {
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
	return nil
}

func (l LogConfig) validate() error {
	switch l.Level {
	case "", "debug", "info", "warn", "error":
	default:
		return fieldErr("log.level", "%q is not debug, info, warn or error", l.Level)
	}
	switch l.Format {
	case "", "text", "json":
	default:
		return fieldErr("log.format", "%q is not text or json", l.Format)
	}
	return nil
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
	}
	bc.URL = s
	if err := bc.validate(""); err != nil {
		return BackendConfig{}, err
	}
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
