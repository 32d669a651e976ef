package lb

import "github.com/prometheus/client_golang/prometheus"

// deployMetrics count what HTTP/2, PROXY protocol and DNS discovery see.
type deployMetrics struct {
	h2Errors   *prometheus.CounterVec
	proxyProto *prometheus.CounterVec
	dns        *prometheus.CounterVec
	dnsTargets *prometheus.GaugeVec
}

func newDeployMetrics() *deployMetrics {
	return &deployMetrics{
		h2Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unstuck_lb_http2_errors_total",
			Help: "HTTP/2 protocol errors by clients and defences that fired (e.g. reset flood, too many CONTINUATION frames), by kind.",
		}, []string{"kind"}),
		proxyProto: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unstuck_lb_proxy_protocol_total",
			Help: "Connections on a PROXY protocol listener by result: v1, v2, local (health check of the balancer in front), invalid, timeout, untrusted.",
		}, []string{"result"}),
		dns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unstuck_lb_dns_resolutions_total",
			Help: "DNS discovery resolutions by source and result (ok, error, empty); error and empty keep the last good set.",
		}, []string{"source", "result"}),
		dnsTargets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "unstuck_lb_dns_backends",
			Help: "Backends a DNS discovery source currently provides.",
		}, []string{"source"}),
	}
}

func (d *deployMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{d.h2Errors, d.proxyProto, d.dns, d.dnsTargets}
}

// countH2Error is the engine's HTTP2Options.CountError.
func (bl *Balancer) countH2Error(kind string) { bl.m.deploy.h2Errors.WithLabelValues(kind).Inc() }
