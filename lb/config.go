package lb

import (
	"strconv"
	"strings"
	"time"
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
	// HTTP2 configures HTTP/2 to clients (config_deploy.go).
	HTTP2 HTTP2Config `yaml:"http2"`
	// ProxyProtocol accepts PROXY protocol headers from the L4 balancers
	// in front (config_deploy.go).
	ProxyProtocol ProxyProtocolConfig `yaml:"proxy_protocol"`
	// Backends are the app instances. At least one is required; a URL
	// dns://HOST:PORT or dns+srv://NAME stands for the instances DNS
	// names (discovery.go).
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
	// URL is http://host:port or https://host:port, without a path; or a
	// DNS discovery source, dns://HOST:PORT or dns+srv://NAME, that
	// stands for a backend per address (discovery_url.go has the syntax).
	URL string `yaml:"url"`
	// Weight is the backend's relative share [1].
	Weight int `yaml:"weight"`
	// SendProxy opens every connection to the backend with a PROXY
	// protocol v2 header naming the client (and health checks with a
	// LOCAL one), for apps that read the client address at the TCP level.
	// Such connections are not kept alive across requests.
	SendProxy bool `yaml:"send_proxy" json:"send_proxy"`

	// source is the dns:// or dns+srv:// URL a discovered backend came
	// from, tlsName the DNS name its certificate must carry (https);
	// both empty for a backend listed as such.
	source, tlsName string
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
// (connection errors, timeouts, the listed statuses) of real traffic.
type PassiveHealthConfig struct {
	// Disabled turns passive checks off.
	Disabled bool `yaml:"disabled"`
	// Failures in a row that eject [5].
	Failures int `yaml:"failures"`
	// Statuses are the response statuses that count as failures
	// [500, 502, 504]. 503 is left out by default: an application answers
	// 503 when something every instance shares is down (its session
	// store), and ejecting it would only pile its users on instances that
	// answer 503 too. List it to count it.
	Statuses []int `yaml:"statuses"`
	// Ejection is the first ejection's length; the n-th lasts n times
	// as long, up to MaxEjection [30s].
	Ejection    time.Duration `yaml:"ejection"`
	MaxEjection time.Duration `yaml:"max_ejection"` // [5m, or Ejection if longer]
	// MaxEjectedPercent bounds the share of the backends in service
	// (neither down nor draining) that may be ejected at once [50]; the
	// last one in service is never ejected.
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
