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
	d := testenv.DynamoDB(t)
	dynamo := "dynamodb://sessions?region=us-east-1&create=true&endpoint=" + d.Endpoint()
	for raw, sessionsOnly := range map[string]bool{n.URL(): false, "redis://" + r.Addr(): false, "memory": true, dynamo: true} {
		p, err := storeurl.Open(ctx, raw, storeurl.Options{NearCache: true})
		if err != nil {
			t.Fatalf("Open(%s): %v", raw, err)
		}
		if p.Sessions == nil {
			t.Errorf("Open(%s): no session store", raw)
		}
		if p.SessionsOnly() != sessionsOnly {
			t.Errorf("Open(%s): SessionsOnly = %v", raw, p.SessionsOnly())
		}
		if !sessionsOnly && (p.Broker == nil || p.Presence == nil || p.Jobs == nil) {
			t.Errorf("Open(%s): missing parts %+v", raw, p)
		}
		if sessionsOnly {
			bp, err := storeurl.Open(ctx, n.URL(), storeurl.Options{})
			if err != nil {
				t.Fatal(err)
			}
			p.UseBackplane(bp)
			if p.SessionsOnly() {
				t.Errorf("Open(%s) with a backplane still sessions-only", raw)
			}
		}
		p.Close()
	}
}

func TestOpenRejectsBadURLs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dead := fmt.Sprintf("redis://127.0.0.1:%d", testenv.FreePort(t))
	for raw, want := range map[string]string{
		"":                              "want nats://",
		"mysql://x:1":                   `unknown scheme "mysql"`,
		"redis://":                      "want nats://",
		"not a url at all":              "want nats://",
		dead:                            "connect to",
		"dynamodb://":                   "dynamodb",
		"dynamodb://t?endpoint=ftp://x": "endpoint",
		strings.Replace(dead, "//", "//:secretpw@", 1):                                         "connect to",
		strings.Replace(strings.Replace(dead, "redis", "nats", 1), "//", "//ann:secretpw@", 1): "connect to",
		strings.Replace(strings.Replace(dead, "redis", "nats", 1), "//", "//secretpw@", 1):     "connect to", // a NATS token
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

// FuzzKind feeds the store URL check garbage: it must answer a kind or an
// error that names the URL, and never panic.
func FuzzKind(f *testing.F) {
	for _, s := range []string{"memory", "nats://127.0.0.1:4222", "dynamodb://t?region=eu-west-1", "dynamodb://t?endpoint=http://127.0.0.1:8000&create=true", "redis://:pw@h:6379/2", "rediss://h:1", "", "redis://", "://", "nats:/x", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		k, err := storeurl.Kind(raw)
		if err != nil {
			if k != "" {
				t.Fatalf("Kind(%q) = %q with error %v", raw, k, err)
			}
			return
		}
		if k != "memory" && k != "nats" && k != "redis" && k != "dynamodb" {
			t.Fatalf("Kind(%q) = %q", raw, k)
		}
	})
}
