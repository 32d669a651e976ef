package lb

import (
	"crypto/tls"
	"fmt"
	"time"
)

// HTTP2Config is HTTP/2 to clients. Requests that arrive over HTTP/2 are
// routed, limited, retried, logged and counted as HTTP/1.1 ones are, and
// reach the backends over the same HTTP/1.1 keep-alive connections.
type HTTP2Config struct {
	// Disabled keeps TLS listeners to HTTP/1.1: ALPN offers only
	// http/1.1. Otherwise it offers h2 first, then http/1.1 (WebSockets
	// and clients without HTTP/2 use that).
	Disabled bool `yaml:"disabled"`
	// H2C serves cleartext HTTP/2 with prior knowledge on a plain
	// listener (for a TLS-terminating proxy in front that speaks h2c).
	H2C bool `yaml:"h2c"`
	// MaxConcurrentStreams bounds the streams one client connection may
	// have open; more are refused [100].
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
}

// ProxyProtocolConfig accepts the PROXY protocol (v1 text or v2 binary,
// as sent by AWS NLB, HAProxy send-proxy or another unstuck) on the
// proxy listener: the client address it carries is the one used for
// X-Forwarded-For, the hash policy's "ip" key and the logs.
type ProxyProtocolConfig struct {
	// Enabled requires a PROXY header on every connection from Trusted
	// and refuses connections from anyone else.
	Enabled bool `yaml:"enabled"`
	// Trusted lists the CIDRs of the L4 balancers allowed to send a PROXY
	// header; required when Enabled.
	Trusted []string `yaml:"trusted"`
	// Timeout bounds the wait for the header [5s].
	Timeout time.Duration `yaml:"timeout"`
}

// validateDeploy checks http2 and proxy_protocol.
func (c *Config) validateDeploy() error {
	if n := c.HTTP2.MaxConcurrentStreams; n > 10000 {
		return fieldErr("http2.max_concurrent_streams", "%d is more than 10000", n)
	}
	p := c.ProxyProtocol
	if p.Enabled && len(p.Trusted) == 0 {
		return fieldErr("proxy_protocol.trusted", "required when proxy_protocol is enabled: the addresses of the balancers in front (anyone could forge a client address otherwise)")
	}
	for i, s := range p.Trusted {
		if _, err := parsePrefix(s); err != nil {
			return fieldErr(fmt.Sprintf("proxy_protocol.trusted[%d]", i), "%q is not a CIDR or IP address", s)
		}
	}
	if p.Timeout < 0 {
		return fieldErr("proxy_protocol.timeout", "must not be negative")
	}
	return nil
}

func (c *Config) applyDeployDefaults() {
	setDefault(&c.HTTP2.MaxConcurrentStreams, 100)
	setDefault(&c.ProxyProtocol.Timeout, 5*time.Second)
}

// ALPN is what a TLS listener of this config offers: h2 and http/1.1, or
// only http/1.1 when http2.disabled.
func (c *Config) ALPN() []string {
	if c.HTTP2.Disabled {
		return []string{"http/1.1"}
	}
	return []string{"h2", "http/1.1"}
}

// ServerTLS returns the TLS config for the proxy listener from tls.cert
// and tls.key (nil when they are not set), offering ALPN as ALPN says.
func (c *Config) ServerTLS() (*tls.Config, error) {
	if c.TLS.Cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: c.ALPN(), MinVersion: tls.VersionTLS12}, nil
}
