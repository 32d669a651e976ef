package storeurl_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/storeurl"
	"github.com/unstuck-dev/unstuck/internal/testenv"
)

func TestOpenEveryKind(t *testing.T) {
	ctx := context.Background()
	n := testenv.NATS(t)
	r := testenv.Redis(t)
	for _, raw := range []string{n.URL(), "redis://" + r.Addr(), "memory"} {
		p, err := storeurl.Open(ctx, raw, storeurl.Options{NearCache: true})
		if err != nil {
			t.Fatalf("Open(%s): %v", raw, err)
		}
		if p.Sessions == nil {
			t.Errorf("Open(%s): no session store", raw)
		}
		if raw != "memory" && (p.Broker == nil || p.Presence == nil || p.Jobs == nil) {
			t.Errorf("Open(%s): missing parts %+v", raw, p)
		}
		p.Close()
	}
}

func TestOpenRejectsBadURLs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dead := fmt.Sprintf("redis://127.0.0.1:%d", testenv.FreePort(t))
	for raw, want := range map[string]string{
		"":                 "want nats://",
		"mysql://x:1":      `unknown scheme "mysql"`,
		"redis://":         "want nats://",
		"not a url at all": "want nats://",
		dead:               "connect to",
		strings.Replace(dead, "//", "//:secretpw@", 1): "connect to",
	} {
		_, err := storeurl.Open(ctx, raw, storeurl.Options{})
		if err == nil {
			t.Errorf("Open(%q) succeeded", raw)
			continue
		}
		if want != "" && !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want it to mention %q", raw, err, want)
		}
		if strings.Contains(err.Error(), "secretpw") {
			t.Errorf("Open(%q) error leaks the password: %v", raw, err)
		}
	}
}
