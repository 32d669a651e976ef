package dynamostore_test

import (
	"context"
	"maps"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/dynamostore"
	"github.com/unstuck-dev/unstuck/session/sessiontest"
)

// snapshot returns the requests seen per operation so far.
func (f *faults) snapshot() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.calls)
}

func (f *faults) since(before map[string]int) map[string]int {
	d := map[string]int{}
	for op, n := range f.snapshot() {
		if n-before[op] > 0 {
			d[op] = n - before[op]
		}
	}
	return d
}

// TestDynamoRoundTripsPerRequest counts the DynamoDB requests behind each
// kind of HTTP request, through a counting proxy: no Scan ever, one
// request for a read, one for a blind write, two for a read-modify-write.
func TestDynamoRoundTripsPerRequest(t *testing.T) {
	srv := testenv.DynamoDB(t)
	table(t, srv.Endpoint(), "sessions")
	f := newFaults(t, srv.Endpoint(), func(string, int) string { return "" })
	st, err := dynamostore.New(context.Background(), dynamostore.Options{Client: client(f.srv.URL), Table: "sessions"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := session.New(session.Config{Store: st, IdleTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(sessiontest.Shop(m))
	defer hs.Close()
	c := sessiontest.NewClient(t, hs.URL)
	steps := []struct {
		method, path, body string
		want               map[string]int
	}{
		{"POST", "/set/a/1", "ok", map[string]int{"PutItem": 1}},
		{"GET", "/get/a", "true:1", map[string]int{"GetItem": 1}},
		{"POST", "/set/b/2", "ok", map[string]int{"UpdateItem": 1}},
		{"POST", "/cart/add", "1", map[string]int{"GetItem": 1, "UpdateItem": 1}},
		{"GET", "/static", "no session used", map[string]int{}},
	}
	for _, s := range steps {
		before := f.snapshot()
		c.Want(s.method, s.path, 200, s.body)
		if got := f.since(before); !maps.Equal(got, s.want) {
			t.Errorf("%s %s made %v, want %v", s.method, s.path, got, s.want)
		}
	}
	before := f.snapshot()
	c.Want("POST", "/login/ann", 200, "welcome")
	t.Logf("login: %v", f.since(before))
	before = f.snapshot()
	if _, err := m.DestroyAllForUser(t.Context(), "ann"); err != nil {
		t.Fatal(err)
	}
	t.Logf("DestroyAllForUser: %v", f.since(before))
	if n := f.snapshot()["Scan"]; n != 0 {
		t.Fatalf("%d Scans", n)
	}
}
