package lb

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/unstuck-dev/unstuck/internal/proxyproto"
)

// startHealth starts b's active checks when a path is configured. Checks
// run in a goroutine stopped by the backend's removal or Close.
func (bl *Balancer) startHealth(b *Backend, hc ActiveHealthConfig) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.healthCfg = hc
	if hc.Path == "" || b.removed {
		b.healthy.Store(true)
		b.stopHealth = nil
		return
	}
	ctx, cancel := context.WithCancel(bl.ctx)
	b.stopHealth = cancel
	bl.wg.Add(1)
	go func() {
		defer bl.wg.Done()
		bl.checkLoop(ctx, b, hc)
	}()
}

func (bl *Balancer) restartHealth(b *Backend, hc ActiveHealthConfig) {
	b.mu.Lock()
	stop := b.stopHealth
	b.mu.Unlock()
	if stop != nil {
		stop()
	}
	bl.startHealth(b, hc)
}

// checkLoop probes b every interval. A healthy backend goes down after Fall
// failures in a row, a down one comes up after Rise successes in a row
// (then slow start ramps its share back).
func (bl *Balancer) checkLoop(ctx context.Context, b *Backend, hc ActiveHealthConfig) {
	tr := &http.Transport{
		MaxIdleConnsPerHost: 1,
		TLSClientConfig:     &tls.Config{ServerName: cmp.Or(b.tlsName, b.url.Hostname())},
		DisableCompression:  true,
	}
	if b.sendProxy {
		// The backend wants a PROXY header first: a LOCAL one says the
		// check is the balancer's own connection.
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if _, err := c.Write(proxyproto.AppendV2Local(nil)); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		Timeout:   hc.Timeout,
		// A redirect is an answer, not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	target := b.url.String() + hc.Path
	counts := bl.m.checkCounters(b.name)
	rise, fall := 0, 0
	t := time.NewTicker(hc.Interval)
	defer t.Stop()
	for {
		result, why := probe(ctx, client, target, hc.Status)
		if ctx.Err() != nil {
			return // stopped mid-probe: not the backend's failure
		}
		counts[result].Inc()
		if result == checkPass {
			fall = 0
			rise++
			if !b.healthy.Load() && rise >= hc.Rise {
				b.healthy.Store(true)
				b.startRamp(time.Now(), bl.view.Load().cfg.Health.SlowStart)
				bl.log.Info("backend up", "backend", b.name, "checks_passed", rise)
			}
		} else {
			rise = 0
			fall++
			if b.healthy.Load() && fall >= hc.Fall {
				b.healthy.Store(false)
				bl.log.Warn("backend down", "backend", b.name, "checks_failed", fall, "last", why)
				bl.kickSource(b)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe makes one check request; want 0 accepts 2xx and 3xx. The result
// is checkPass, checkFail or checkTimeout (the client's timeout expired,
// connecting or waiting for the answer); why says what was seen.
func probe(ctx context.Context, c *http.Client, target string, want int) (result, why string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return checkFail, err.Error()
	}
	req.Header.Set("User-Agent", "unstuck-lb-health")
	resp, err := c.Do(req)
	if err != nil {
		return failure(err), err.Error()
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		// The status came in time but the body did not: a backend that
		// hangs mid-answer is not one to send users to.
		return failure(err), resp.Status + ", then " + err.Error()
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode < 400
	if want != 0 {
		ok = resp.StatusCode == want
	}
	if !ok {
		return checkFail, resp.Status
	}
	return checkPass, resp.Status
}

// failure tells a timed-out check from one refused or reset.
func failure(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return checkTimeout
	}
	return checkFail
}
