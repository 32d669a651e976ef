package storeurl_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unstuck-dev/unstuck/internal/storeurl"
	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/session"
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
		"":                                       "want nats://",
		"mysql://x:1":                            `unknown scheme "mysql"`,
		"redis://":                               "want nats://",
		"not a url at all":                       "want nats://",
		dead:                                     "connect to",
		"dynamodb://":                            "dynamodb",
		"dynamodb://t?endpoint=ftp://x":          "endpoint",
		"redis+sentinel://a:26379":               "master's name",
		"redis+sentinel:///m":                    "no Sentinel address",
		"redis+sentinel://:secretpw@a:26379,b/m": "want HOST:PORT",
		"redis+sentinel://a:26379/m?db=x":        "db",
		"redis+sentinel://a:26379/m?bogus=1":     "bogus",
		"redis://:secretpw@h:1?wait=9":           "wait",
		"redis://h:1?wait_timeout=forever":       "wait_timeout",
		"nats://a:4222,nats://b:4222?replicas=6": "replicas",
		"nats://a:4222,redis://b:4222":           "in the list",
		"nats://ann:secretpw@a:4222,nats://b:x":  "in the list",
		"redis+sentinel://127.0.0.1:1,127.0.0.1:2/unstuck":                                     "connect to",
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
	for _, s := range []string{"memory", "nats://127.0.0.1:4222", "nats://a:4222,nats://b:4222?replicas=3", "nats://a:1,", "nats://a:1,redis://b:2",
		"redis+sentinel://:pw@a:26379,b:26379/mymaster?db=2", "redis+sentinel://a:1/", "redis+sentinel://a:x/m", "redis+sentinel://@,/m?db=-1",
		"redis://h:1?wait=1&wait_timeout=250ms", "redis://h:1?wait=9", "redis://h:1?wait_timeout=0s", "dynamodb://t?region=eu-west-1", "dynamodb://t?endpoint=http://127.0.0.1:8000&create=true", "redis://:pw@h:6379/2", "rediss://h:1", "", "redis://", "://", "nats:/x", "%zz"} {
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

// TestOpenReplicated: a redis+sentinel:// URL with ?wait=1 gives parts
// whose writes wait for a replica, and a NATS server list with
// ?replicas=3 gives parts whose buckets and streams have three replicas.
func TestOpenReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("starts replicated Redis and NATS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sentinel := testenv.RedisSentinel(t)
	p, err := storeurl.Open(ctx, sentinel.URL()+"?wait=1&wait_timeout=2s", storeurl.Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", sentinel.URL(), err)
	}
	defer p.Close()
	if p.Kind != "redis" || p.SessionsOnly() {
		t.Fatalf("Open(sentinel) = %s parts, sessions only %v", p.Kind, p.SessionsOnly())
	}
	if _, err := p.Sessions.Commit(ctx, "s1", session.Change{Create: true, Deadline: time.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("Commit over Sentinel with wait=1: %v", err)
	}
	primary, err := sentinel.Primary()
	if err != nil {
		t.Fatal(err)
	}
	if wait := commandCalls(t, primary, "wait"); wait == 0 {
		t.Fatal("wait=1 sent no WAIT")
	}

	cluster := testenv.NATSCluster(t, 3)
	np, err := storeurl.Open(ctx, cluster.URL()+"?replicas=3", storeurl.Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", cluster.URL(), err)
	}
	defer np.Close()
	nc, err := nats.Connect(cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	names := js.StreamNames(ctx)
	n := 0
	for name := range names.Name() {
		info, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := info.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
		n++
	}
	if n < 3 {
		t.Fatalf("%d streams, want the session, chat and jobs ones", n)
	}
}

// commandCalls reads how often server ran command, from INFO commandstats.
func commandCalls(t *testing.T, server *testenv.RedisServer, command string) int {
	t.Helper()
	info, err := server.Do("INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+command+":calls="); ok {
			n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
			return n
		}
	}
	return 0
}
