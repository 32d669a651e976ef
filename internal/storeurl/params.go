package storeurl

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
)

// params are the store URL's own query parameters, which tune the parts
// rather than the connection; Open takes them off before dialing.
type params struct {
	// wait and waitTimeout (redis: ?wait=N&wait_timeout=D): session and
	// job writes wait until N replicas hold them.
	wait        int
	waitTimeout time.Duration
	// replicas (nats: ?replicas=N): replicas of every bucket and stream
	// the parts create.
	replicas int
}

// maxReplicas bounds ?wait= and ?replicas=; JetStream allows at most 5.
const maxReplicas = 5

// splitParams takes the parameters that are the store's, not the
// client's, off raw.
func splitParams(raw, kind string) (string, params, error) {
	var p params
	base, query, ok := strings.Cut(raw, "?")
	if !ok {
		return raw, p, nil
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", p, fmt.Errorf("store URL %q: query: %w", connect.Redact(raw), err)
	}
	count := func(name string) (int, error) {
		v := q.Get(name)
		q.Del(name)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxReplicas {
			return 0, fmt.Errorf("store URL %q: %s=%q: want a number from 0 to %d", connect.Redact(raw), name, v, maxReplicas)
		}
		return n, nil
	}
	switch kind {
	case "redis":
		if p.wait, err = count("wait"); err != nil {
			return "", p, err
		}
		if v := q.Get("wait_timeout"); v != "" {
			q.Del("wait_timeout")
			if p.waitTimeout, err = time.ParseDuration(v); err != nil || p.waitTimeout <= 0 || p.waitTimeout > time.Minute {
				return "", p, fmt.Errorf("store URL %q: wait_timeout=%q: want a duration up to 1m, such as 500ms", connect.Redact(raw), v)
			}
		}
	case "nats":
		if p.replicas, err = count("replicas"); err != nil {
			return "", p, err
		}
	}
	if len(q) == 0 {
		return base, p, nil
	}
	return base + "?" + q.Encode(), p, nil
}
