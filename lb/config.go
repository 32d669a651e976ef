package lb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/unstuck-dev/unstuck/internal/proxy"
)

// Config is the whole balancer configuration, as read from YAML (see
// lb/testdata/unstuck.yaml for a commented example). Zero fields take the
// defaults named in their comments, so a Config with only Backends works.
type Config struct {
	// Listen is the proxy's address [":8080"].
	Listen string `yaml:"listen"`
	// TLS, when Cert and Key are set, serves the proxy over TLS.
	TLS TLSConfig `yaml:"tls"`
	// Admin is the admin API and /metrics listener.
	Admin AdminConfig `yaml:"admin"`
	// TrustedProxies lists CIDRs whose X-Forwarded-* and Forwarded headers
	// are believed; from anyone else they are replaced.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Backends are the app instances. At least one is required.
	Backends []BackendConfig `yaml:"backends"`
	// Policy picks a backend for users no cookie pins.
	Policy PolicyConfig `yaml:"policy"`
	// Sticky configures the affinity cookie.
	Sticky StickyConfig `yaml:"sticky"`
	// Health configures active and passive health checks.
	Health HealthConfig `yaml:"health"`
	// Retries configures the one retry on another backend.
	Retries RetryConfig `yaml:"retries"`
	// Timeouts bound every wait; zero fields take the engine's defaults.
	Timeouts TimeoutConfig `yaml:"timeouts"`
	// Limits bound client input; zero fields take the engine's defaults.
	Limits LimitConfig `yaml:"limits"`
	// WebSocket configures upgraded connections.
	WebSocket WebSocketConfig `yaml:"websocket"`
	// Drain configures how long a draining backend keeps its pinned users.
	Drain DrainConfig `yaml:"drain"`
	// Shutdown configures SIGTERM/SIGINT.
	Shutdown ShutdownConfig `yaml:"shutdown"`
	// Log configures structured logs.
	Log LogConfig `yaml:"log"`
}

// TLSConfig names a certificate and key in PEM files.
type TLSConfig struct {
	Cert string `yaml:"cert"` // PEM certificate chain file
	Key  string `yaml:"key"`  // PEM private key file
}

// AdminConfig is the admin listener.
type AdminConfig struct {
	// Listen is the admin address ["127.0.0.1:9090"]; "off" disables it.
	Listen string `yaml:"listen"`
	// Token, when set, is required as "Authorization: Bearer TOKEN". It is
	// mandatory when Listen is not a loopback address.
	Token string `yaml:"token"`
}

// BackendConfig is one app instance.
type BackendConfig struct {
	// Name identifies the backend in cookies, logs, metrics and the admin
	// API: letters, digits, '-', '_' and '.', at most 64. Defaults to b1, b2, ...
	Name string `yaml:"name"`
	// URL is http://host:port or https://host:port, without a path.
	URL string `yaml:"url"`
	// Weight is the backend's relative share [1].
	Weight int `yaml:"weight"`
}

// PolicyConfig selects and tunes the balancing policy.
type PolicyConfig struct {
	// Name is round-robin, least-conn, p2c, random or hash [round-robin].
	Name string `yaml:"name"`
	// Latency makes p2c weigh in-flight load by each backend's latency EWMA.
	Latency bool `yaml:"latency"`
	// Key is what hash hashes: "ip", "header:NAME" or "cookie:NAME" ["ip"].
	Key string `yaml:"key"`
	// Factor is c for hash's bounded load and for sticky spill [1.25].
	Factor float64 `yaml:"factor"`
}

// StickyConfig is the affinity cookie.
type StickyConfig struct {
	// Mode is "cookie" or "none" ["cookie"].
	Mode string `yaml:"mode"`
	// Cookie is the cookie's name ["unstuck_affinity"].
	Cookie string `yaml:"cookie"`
	// Secrets sign and verify cookies: the first signs, all verify, so a
	// new secret is rotated in by putting it first. At least 16 bytes each.
	// When empty, UNSTUCK_SECRET or a generated secret is used.
	Secrets []string `yaml:"secrets"`
	// MaxAge is the browser's Max-Age; zero makes a session cookie.
	MaxAge time.Duration `yaml:"max_age"`
	// TTL is how long a value is honoured, embedded and MACed in it; the
	// cookie is re-issued when less than half remains, or when half its
	// MaxAge has passed, so an active user's cookie never lapses [24h].
	TTL time.Duration `yaml:"ttl"`
	// Spill moves a pinned user off a backend carrying more than Factor
	// times the average in-flight load, and off a draining backend at once.
	// Only for apps whose state is in a shared store.
	Spill bool `yaml:"spill"`
}

// HealthConfig is the health checking.
type HealthConfig struct {
	Active  ActiveHealthConfig  `yaml:"active"`  // periodic HTTP checks
	Passive PassiveHealthConfig `yaml:"passive"` // ejection on real-traffic failures
	// PanicThreshold is a percentage: when fewer backends than that are
	// healthy, balance over all of them rather than crush the few [50];
	// 0 turns panic mode off.
	PanicThreshold *int `yaml:"panic_threshold"`
	// SlowStart is the window over which a backend that comes back ramps
	// its share from a tenth to all of it; zero turns it off.
	SlowStart time.Duration `yaml:"slow_start"`
}

// ActiveHealthConfig is the periodic HTTP check; off when Path is empty.
type ActiveHealthConfig struct {
	Path     string        `yaml:"path"`
	Interval time.Duration `yaml:"interval"` // [5s]
	Timeout  time.Duration `yaml:"timeout"`  // [2s]
	// Status is the expected status; zero accepts any 2xx or 3xx.
	Status int `yaml:"status"`
	Rise   int `yaml:"rise"` // successes in a row to come up [2]
	Fall   int `yaml:"fall"` // failures in a row to go down [3]
}

// PassiveHealthConfig ejects a backend after consecutive failures
// (connection errors, timeouts, 5xx) of real traffic.
type PassiveHealthConfig struct {
	// Disabled turns passive checks off.
	Disabled bool `yaml:"disabled"`
	// Failures in a row that eject [5].
	Failures int `yaml:"failures"`
	// Ejection is the first ejection's length; the n-th lasts n times
	// as long, up to MaxEjection [30s].
	Ejection    time.Duration `yaml:"ejection"`
	MaxEjection time.Duration `yaml:"max_ejection"` // [5m, or Ejection if longer]
	// MaxEjectedPercent bounds the share of backends ejected at once [50].
	MaxEjectedPercent int `yaml:"max_ejected_percent"`
}

// RetryConfig is the retry of a failed attempt on another backend.
type RetryConfig struct {
	// Methods are retried when they failed before any response byte
	// [GET, HEAD, OPTIONS: the safe methods; PUT and DELETE only when
	// listed, as the backend may have acted on the first attempt]. A
	// request that never connected is always retried.
	Methods []string `yaml:"methods"`
	// BodyBytes is the largest body buffered so that a request carrying it
	// can be retried [65536].
	BodyBytes int `yaml:"body_bytes"`
}

// TimeoutConfig bounds waits on both sides; zero takes the engine default.
type TimeoutConfig struct {
	ClientHeader time.Duration `yaml:"client_header"` // to read a request head [10s]
	ClientIdle   time.Duration `yaml:"client_idle"`   // keep-alive wait [60s]
	ClientWrite  time.Duration `yaml:"client_write"`  // to write to the client [30s]
	Dial         time.Duration `yaml:"dial"`          // to connect to a backend [3s]
	Upstream     time.Duration `yaml:"upstream"`      // to the response head; 504 after [30s]
	UpstreamIdle time.Duration `yaml:"upstream_idle"` // pooled backend connection idle [90s]
}

// LimitConfig bounds client input; zero takes the engine default.
type LimitConfig struct {
	MaxHeaderBytes int   `yaml:"max_header_bytes"` // request line and headers; 431 above [64 KiB]
	MaxBodyBytes   int64 `yaml:"max_body_bytes"`   // request body; 413 above; 0 unlimited
	MaxConns       int   `yaml:"max_conns"`        // concurrent client connections [10000]
}

// WebSocketConfig is for upgraded connections.
type WebSocketConfig struct {
	Idle        time.Duration `yaml:"idle"`         // no traffic either way closes [10m]
	MaxLifetime time.Duration `yaml:"max_lifetime"` // zero: unlimited
	// CloseWindow spreads the 1012 closes of a drained or removed backend's
	// WebSockets, so clients do not reconnect in one storm [10s].
	CloseWindow time.Duration `yaml:"close_window"`
}

// DrainConfig is how long a draining backend keeps its pinned users.
type DrainConfig struct {
	// Idle: drained once no pinned request came for this long [5m].
	Idle time.Duration `yaml:"idle"`
	// Deadline: drained this long after draining began, whatever [1h].
	Deadline time.Duration `yaml:"deadline"`
}

// ShutdownConfig is the graceful stop.
type ShutdownConfig struct {
	// Grace is how long in-flight requests get to finish, over which
	// WebSockets are closed with 1001 [30s].
	Grace time.Duration `yaml:"grace"`
}

// LogConfig configures slog output.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error [info]
	Format string `yaml:"format"` // text or json [text]
	Access bool   `yaml:"access"` // one line per request
}

// Policy names.
const (
	PolicyRoundRobin = "round-robin"
	PolicyLeastConn  = "least-conn"
	PolicyP2C        = "p2c"
	PolicyRandom     = "random"
	PolicyHash       = "hash"
)

// FieldError is a configuration error that names where it is.
type FieldError struct {
	File   string // config file, or "" for flags
	Line   int    // 1-based; 0 when unknown
	Column int
	Field  string // e.g. "backends[1].url"
	Msg    string
}

// Error formats the error as FILE:LINE:COLUMN: FIELD: MESSAGE, leaving out
// what is unknown.
func (e *FieldError) Error() string {
	var sb strings.Builder
	if e.File != "" {
		sb.WriteString(e.File)
		sb.WriteByte(':')
	}
	if e.Line > 0 {
		sb.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			sb.WriteByte(':')
			sb.WriteString(strconv.Itoa(e.Column))
		}
		sb.WriteByte(':')
	}
	if sb.Len() > 0 {
		sb.WriteByte(' ')
	}
	if e.Field != "" {
		sb.WriteString(e.Field)
		sb.WriteString(": ")
	}
	sb.WriteString(e.Msg)
	return sb.String()
}

// maxConfigBytes bounds a config file; real ones are a few KB.
const maxConfigBytes = 4 << 20

// LoadConfig reads and validates the YAML file at path.
func LoadConfig(path string) (*Config, error) { return LoadConfigWith(path, nil) }

// LoadConfigWith is LoadConfig with override called between decoding and
// validation, so command-line flags can override the file.
func LoadConfigWith(path string, override func(*Config)) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return nil, &FieldError{File: path, Msg: "file larger than 4 MiB"}
	}
	return ParseConfigWith(path, data, override)
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// ParseConfig parses YAML config data; file names it in errors. Unknown
// fields are errors, and every error names file, line and field. The result
// has defaults applied and is validated.
func ParseConfig(file string, data []byte) (*Config, error) {
	return ParseConfigWith(file, data, nil)
}

// ParseConfigWith is ParseConfig with override called between decoding and
// validation.
func ParseConfigWith(file string, data []byte, override func(*Config)) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, err)
	}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		err = yamlError(file, err)
		var fe *FieldError
		if errors.As(err, &fe) && fe.Line > 0 {
			fe.Field, fe.Column = fieldAtLine(&root, fe.Line, fe.Msg)
		}
		return nil, err
	}
	if override != nil {
		override(cfg)
	}
	if err := cfg.Validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			fe.File = file
			if n := lookupNode(&root, fe.Field); n != nil {
				fe.Line, fe.Column = n.Line, n.Column
			}
		}
		return nil, err
	}
	return cfg, nil
}

// yamlError turns yaml's messages ("yaml: line 3: ...", or a TypeError's
// list) into file:line: errors; the first one is reported.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			return &FieldError{File: file, Line: line, Msg: cleanYAMLMsg(m[2])}
		}
		return &FieldError{File: file, Msg: cleanYAMLMsg(msg)}
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{File: file, Line: line, Msg: m[2]}
	}
	return &FieldError{File: file, Msg: msg}
}

var (
	fieldNotFoundRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	cannotCollRE    = regexp.MustCompile(`^cannot unmarshal !!(seq|map) into (\S+)$`)
	cannotRE        = regexp.MustCompile("^cannot unmarshal !!\\w+ `(.*)` into (\\S+)$")
)

// typeNames says in words what a Go type expects.
var typeNames = map[string]string{
	"time.Duration": "a duration like 500ms, 30s or 1h",
	"int":           "an integer",
	"int64":         "an integer",
	"float64":       "a number",
	"bool":          "true or false",
	"string":        "a string",
}

func cleanYAMLMsg(msg string) string {
	if m := fieldNotFoundRE.FindStringSubmatch(msg); m != nil {
		return "unknown field " + strconv.Quote(m[1])
	}
	if m := cannotCollRE.FindStringSubmatch(msg); m != nil {
		what := "a list"
		if m[1] == "map" {
			what = "a mapping"
		}
		want, ok := typeNames[m[2]]
		switch {
		case ok:
		case strings.HasPrefix(m[2], "[]"):
			want = "a list"
		default:
			want = "a mapping"
		}
		return what + " where " + want + " belongs"
	}
	if m := cannotRE.FindStringSubmatch(msg); m != nil {
		want, ok := typeNames[m[2]]
		if !ok {
			want = strings.TrimPrefix(strings.TrimPrefix(m[2], "[]"), "lb.")
			if strings.HasPrefix(m[2], "[]") {
				want = "a list"
			} else {
				want = "a mapping (" + want + ")"
			}
		}
		return strconv.Quote(m[1]) + " is not " + want
	}
	// "cannot unmarshal !!str `abc` into int" names Go types; keep it, it
	// is the clearest yaml offers, but drop the package path.
	return strings.ReplaceAll(msg, "lb.", "")
}

// fieldAtLine names the field whose key or value is on line, and its
// column: for an unknown field, the mapping that holds it.
func fieldAtLine(root *yaml.Node, line int, msg string) (string, int) {
	unknown := strings.HasPrefix(msg, "unknown field ")
	// The message quotes the offending value (or key) first; on a line
	// with several fields (flow style) it picks the right one.
	quoted := ""
	if i := strings.IndexByte(msg, '"'); i >= 0 {
		if v, err := strconv.QuotedPrefix(msg[i:]); err == nil {
			quoted, _ = strconv.Unquote(v)
		}
	}
	match := func(n *yaml.Node) bool { return n.Line == line && (quoted == "" || n.Value == quoted) }
	var walk func(n *yaml.Node, path string) (string, int, bool)
	walk = func(n *yaml.Node, path string) (string, int, bool) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if p, col, ok := walk(c, path); ok {
					return p, col, true
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if unknown && match(k) {
					return path, k.Column, true
				}
				if !unknown && quoted == "" && v.Kind != yaml.ScalarNode && v.Line == line {
					return p, v.Column, true // a list or mapping where a scalar belongs
				}
				if !unknown && v.Kind == yaml.ScalarNode && match(v) {
					return p, v.Column, true
				}
				if r, col, ok := walk(v, p); ok {
					return r, col, true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				if !unknown && c.Kind == yaml.ScalarNode && match(c) {
					return p, c.Column, true
				}
				if r, col, ok := walk(c, p); ok {
					return r, col, true
				}
			}
		}
		return "", 0, false
	}
	p, col, _ := walk(root, "")
	return p, col
}

// lookupNode finds the node at a field path like "backends[1].url", or the
// deepest existing node on the way, so an error points as near as it can.
func lookupNode(root *yaml.Node, path string) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if path == "" {
		return n
	}
	for _, seg := range strings.Split(path, ".") {
		name, idx := seg, -1
		if i := strings.IndexByte(seg, '['); i >= 0 && strings.HasSuffix(seg, "]") {
			name = seg[:i]
			idx, _ = strconv.Atoi(seg[i+1 : len(seg)-1])
		}
		if n.Kind != yaml.MappingNode {
			return n
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				next = n.Content[i+1]
				if idx < 0 && next.Kind != yaml.MappingNode {
					// A scalar value: point at it.
					return next
				}
				break
			}
		}
		if next == nil {
			return n
		}
		n = next
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return n
			}
			n = n.Content[idx]
		}
	}
	return n
}

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
