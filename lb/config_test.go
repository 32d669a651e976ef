package lb

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := LoadConfig("testdata/unstuck.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Backends) != 3 || cfg.Backends[0].Weight != 2 || cfg.Policy.Name != PolicyP2C ||
		cfg.Health.Active.Path != "/healthz" || cfg.Sticky.TTL != 24*time.Hour {
		t.Fatalf("example config read as %+v", cfg)
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig("c.yaml", []byte("backends:\n  - url: http://127.0.0.1:1\n  - url: http://127.0.0.1:2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backends[0].Name != "b1" || cfg.Backends[1].Name != "b2" || cfg.Backends[1].Weight != 1 {
		t.Errorf("backend defaults: %+v", cfg.Backends)
	}
	if cfg.Policy.Name != PolicyRoundRobin || cfg.Sticky.Mode != "cookie" || cfg.Sticky.Cookie != DefaultCookieName ||
		cfg.Policy.Factor != 1.25 || cfg.Health.Active.Rise != 2 || cfg.Health.Active.Fall != 3 ||
		*cfg.Health.PanicThreshold != 50 || cfg.Sticky.MaxAge != 0 || cfg.Admin.Listen != "127.0.0.1:9090" {
		t.Errorf("defaults: %+v", cfg)
	}
}

// Validate only reads: defaults come from ApplyDefaults, a separate step
// that is idempotent and turns a valid config into a valid config.
func TestValidateChangesNothingApplyDefaultsFillsIn(t *testing.T) {
	raw := func() *Config {
		return &Config{Backends: []BackendConfig{{URL: "http://127.0.0.1:1"}, {Name: "x", URL: "http://127.0.0.1:2"}},
			Sticky: StickyConfig{MaxAge: 48 * time.Hour}}
	}
	cfg := raw()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, raw()) {
		t.Fatalf("Validate changed the config: %+v", cfg)
	}
	cfg.ApplyDefaults()
	if cfg.Listen != ":8080" || cfg.Backends[0].Name != "b1" || cfg.Backends[1].Name != "x" ||
		cfg.Backends[0].Weight != 1 || cfg.Sticky.TTL != 48*time.Hour || cfg.Health.Passive.MaxEjection != 5*time.Minute ||
		strings.Join(cfg.Retries.Methods, ",") != "GET,HEAD,OPTIONS" || cfg.Log.Format != "text" {
		t.Fatalf("defaults: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults made the config invalid: %v", err)
	}
	again := *cfg
	again.ApplyDefaults()
	if !reflect.DeepEqual(&again, cfg) {
		t.Fatal("ApplyDefaults is not idempotent")
	}
	// A default name counts as a name: an explicit one may not repeat it.
	dup := &Config{Backends: []BackendConfig{{URL: "http://a:1"}, {Name: "b1", URL: "http://a:2"}}}
	if err := dup.Validate(); err == nil || !strings.Contains(err.Error(), "backends[1].name") {
		t.Fatalf("duplicate of a default name: %v", err)
	}
	// max_ejection is compared with the default ejection when none is set.
	short := &Config{Backends: []BackendConfig{{URL: "http://a:1"}}, Health: HealthConfig{Passive: PassiveHealthConfig{MaxEjection: 10 * time.Second}}}
	if err := short.Validate(); err == nil || !strings.Contains(err.Error(), "max_ejection") {
		t.Fatalf("max_ejection below the default ejection: %v", err)
	}
}

// Every config error names the file, the line and the field.
func TestConfigErrorsNameFileLineField(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown field", "listen: :80\nbackends:\n  - url: http://a:1\n    wieght: 3\n", `x.yaml:4:5: backends[0]: unknown field "wieght"`},
		{"bad url", "backends:\n  - url: http://a:1\n  - name: two\n    url: ftp://b\n", `x.yaml:4:10: backends[1].url: "ftp://b" is not an http or https URL`},
		{"bad duration", "backends: [{url: 'http://a:1'}]\nhealth:\n  active:\n    interval: soon\n", `x.yaml:4:15: health.active.interval: "soon" is not a duration like 500ms, 30s or 1h`},
		{"list for scalar", "listen: [a]\nbackends: [{url: 'http://a:1'}]\n", `x.yaml:1:9: listen: a list where a string belongs`},
		{"mapping for list", "backends:\n  url: http://a:1\n", `x.yaml:2:3: backends: a mapping where a list belongs`},
		{"bad policy", "backends: [{url: 'http://a:1'}]\npolicy:\n  name: fastest\n", `x.yaml:3:9: policy.name: "fastest" is not one of`},
		{"duplicate name", "backends:\n  - {name: a, url: 'http://a:1'}\n  - {name: a, url: 'http://a:2'}\n", `x.yaml:3:12: backends[1].name: "a" is also the name of backends[0]`},
		{"no backends", "listen: :80\n", `x.yaml:1:1: backends: at least one backend is required`},
		{"admin off loopback", "backends: [{url: 'http://a:1'}]\nadmin:\n  listen: 0.0.0.0:9090\n", `admin.token: the admin listener "0.0.0.0:9090" is not on loopback`},
		{"short secret", "backends: [{url: 'http://a:1'}]\nsticky:\n  secrets: [short]\n", `x.yaml:3:13: sticky.secrets[0]: shorter than 16 bytes`},
		{"syntax", "backends: [\n", `x.yaml:`},
		{"wrong type", "backends: [{url: 'http://a:1', weight: heavy}]\n", `x.yaml:1:40: backends[0].weight: "heavy" is not an integer`},
		{"bad cidr", "backends: [{url: 'http://a:1'}]\ntrusted_proxies: [10.0.0.0/33]\n", `x.yaml:2:19: trusted_proxies[0]`},
		{"bad key", "backends: [{url: 'http://a:1'}]\npolicy: {name: hash, key: 'body'}\n", `policy.key: "body" is not ip`},
		{"NaN factor", "backends: [{url: 'http://a:1'}]\npolicy: {factor: .nan}\n", `policy.factor: NaN must be above 1`},
	}
	for _, c := range cases {
		_, err := ParseConfig("x.yaml", []byte(c.yaml))
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want it to contain %q", c.name, err, c.want)
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.File != "x.yaml" {
			t.Errorf("%s: %T does not name the file", c.name, err)
		}
	}
}

func TestParseBackendFlag(t *testing.T) {
	for in, want := range map[string]BackendConfig{
		"http://127.0.0.1:8081":     {URL: "http://127.0.0.1:8081"},
		"app=http://127.0.0.1:8081": {Name: "app", URL: "http://127.0.0.1:8081"},
		"http://h:1/?a=b":           {},
		"x y=http://h:1":            {},
		"nope":                      {},
	} {
		got, err := ParseBackendFlag(in)
		if want.URL == "" {
			if err == nil {
				t.Errorf("%q accepted as %+v", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: %+v, %v; want %+v", in, got, err, want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"backends:\n  - url: http://127.0.0.1:1\n",
		"listen: :80\nbackends: [{name: a, url: 'https://x:443', weight: 3}]\npolicy: {name: hash, key: 'header:X-User', factor: 2}\n",
		"backends: [{url: 'http://a:1'}]\nhealth: {active: {path: /h, interval: 1s}, panic_threshold: 0}\n",
		"backends: [\n",
		"a: &x [*x]\n",
		"sticky: {secrets: ['0123456789abcdefg']}\n",
		"backends: [{url: 'dns+srv://_http._tcp.app.ns.svc.cluster.local?interval=5s'}, {name: w, url: 'dns://w.test:80?family=ip6', send_proxy: true}]\n",
		"http2: {h2c: true, max_concurrent_streams: 7}\nproxy_protocol: {enabled: true, trusted: [10.0.0.0/8], timeout: 1s}\nbackends: [{url: 'http://a:1'}]\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig("fuzz.yaml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		// A valid config stays valid: defaults are a fixed point.
		if err := cfg.Validate(); err != nil {
			t.Fatalf("validated config fails again: %v", err)
		}
		again := *cfg
		again.ApplyDefaults()
		if !reflect.DeepEqual(&again, cfg) {
			t.Fatalf("ApplyDefaults changed a config it made: %+v", cfg)
		}
		if len(cfg.Backends) == 0 {
			t.Fatal("valid config without backends")
		}
	})
}

func TestDeployConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"proxy_protocol: {enabled: true}\n", "c.yaml:1:17: proxy_protocol.trusted: required"},
		{"proxy_protocol: {enabled: true, trusted: [10.0.0.0/33]}\n", "proxy_protocol.trusted[0]: \"10.0.0.0/33\" is not a CIDR"},
		{"proxy_protocol: {timeout: -1s}\n", "proxy_protocol.timeout: must not be negative"},
		{"http2: {max_concurrent_streams: 100000}\n", "http2.max_concurrent_streams: 100000 is more than 10000"},
		{"http2: {h2c: maybe}\n", "http2.h2c"},
		{"health: {passive: {ejection: -1s}}\n", "health.passive.ejection: must not be negative"},
		{"retries: {body_bytes: -1}\n", "retries.body_bytes: must not be negative"},
	} {
		_, err := ParseConfig("c.yaml", []byte(tc.yaml+"backends: [{url: \"http://127.0.0.1:1\"}]\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	cfg, err := ParseConfig("c.yaml", []byte("backends: [{url: \"http://127.0.0.1:1\"}]\n"))
	if err != nil || cfg.HTTP2.MaxConcurrentStreams != 100 || cfg.ProxyProtocol.Timeout != 5*time.Second ||
		!reflect.DeepEqual(cfg.ALPN(), []string{"h2", "http/1.1"}) {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
}
