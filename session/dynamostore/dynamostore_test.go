package dynamostore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/dynamostore"
	"github.com/unstuck-dev/unstuck/session/sessiontest"
)

// client returns a client for endpoint with dummy credentials, as local
// servers accept any.
func client(endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

// table creates a table on endpoint (dynalite has no TTL, which the
// Store tolerates) and returns a Store on it.
func table(t testing.TB, endpoint, name string) *dynamostore.Store {
	t.Helper()
	c := client(endpoint)
	if err := dynamostore.CreateTable(t.Context(), c, name); err != nil && !errors.Is(err, dynamostore.ErrNoTTL) {
		t.Fatalf("CreateTable: %v", err)
	}
	s, err := dynamostore.New(context.Background(), dynamostore.Options{Client: c, Table: name})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func create(t *testing.T, s session.Store, id string, vals map[string]string) {
	t.Helper()
	now := time.Now()
	c := session.Change{Create: true, Set: map[string][]byte{}, Created: now, Deadline: now.Add(time.Hour), IdleDeadline: now.Add(30 * time.Minute)}
	for k, v := range vals {
		c.Set[k] = []byte(v)
	}
	if _, err := s.Commit(ctx(t), id, c); err != nil {
		t.Fatalf("create: %v", err)
	}
}

func TestDynamoConformance(t *testing.T) {
	srv := testenv.DynamoDB(t, testenv.DynamoOptions{Persist: true})
	st := table(t, srv.Endpoint(), "sessions")
	// One table for every subtest, as instances share one: ids and user
	// names are random, so tests cannot see each other's sessions.
	sessiontest.RunWith(t, func(t *testing.T) session.Store { return st },
		sessiontest.Options{Restart: srv.Restart})
}

// TestDynamoManagers runs the shared Manager checks over HTTP on three
// Stores (three clients, as three processes) over one table: 200
// concurrent cart updates spread over the instances end with 200 items, a
// logout racing a slow write stays logged out, rotation works across
// instances.
func TestDynamoManagers(t *testing.T) {
	srv := testenv.DynamoDB(t)
	var stores []session.Store
	for range 3 {
		stores = append(stores, table(t, srv.Endpoint(), "sessions"))
	}
	sessiontest.RunManagers(t, stores)
}

// TestDynamoLogoutEverywhere: two devices of one user, on different
// instances, both end with DestroyAllForUser, and a late write does not
// revive either.
func TestDynamoLogoutEverywhere(t *testing.T) {
	srv := testenv.DynamoDB(t)
	var urls []string
	var ms []*session.Manager
	for range 3 {
		m, err := session.New(session.Config{Store: table(t, srv.Endpoint(), "sessions")})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(sessiontest.Shop(m))
		t.Cleanup(hs.Close)
		urls = append(urls, hs.URL)
		ms = append(ms, m)
	}
	c := sessiontest.NewClient(t, urls[0])
	c.Want("POST", "/set/cart/3", 200, "ok")
	old := c.Token
	c.URL = urls[2]
	c.Want("POST", "/login/amy", 200, "welcome")
	other := sessiontest.NewClient(t, urls[1])
	other.Want("POST", "/login/amy", 200, "welcome")
	for _, u := range urls {
		c.URL = u
		c.Want("GET", "/get/cart", 200, "true:3")
		stale := sessiontest.NewClient(t, u)
		stale.Token = old
		stale.Want("GET", "/get/cart", 200, "false:")
	}
	n, err := ms[0].DestroyAllForUser(t.Context(), "amy")
	if err != nil || n != 2 {
		t.Fatalf("DestroyAllForUser = %d, %v; want 2", n, err)
	}
	for _, u := range urls {
		c.URL = u
		c.Want("GET", "/get/cart", 200, "false:")
	}
	// A write after the logout does not bring the session back.
	late := sessiontest.NewClient(t, urls[1])
	late.Token = other.Token
	late.Do("POST", "/set/x/1")
	late.Token = other.Token
	late.Want("GET", "/get/x", 200, "false:")
}

// TestDynamoOddKeys: session keys are any Go string, DynamoDB map keys
// are non-empty UTF-8, and expression syntax must not leak through.
func TestDynamoOddKeys(t *testing.T) {
	srv := testenv.DynamoDB(t)
	st := table(t, srv.Endpoint(), "sessions")
	id := strings.Repeat("ab", 32)
	keys := []string{"", "\xff\xfe", ".", "~", "~x", "a.b", "a[0]", "#k0", ":s0", "SET x = :y", "é"}
	vals := map[string]string{}
	for i, k := range keys {
		vals[k] = strconv.Itoa(i)
	}
	create(t, st, id, vals)
	r, err := st.Load(ctx(t), id)
	if err != nil || r == nil {
		t.Fatalf("Load = %v, %v", r, err)
	}
	for k, v := range vals {
		if string(r.Values[k]) != v {
			t.Fatalf("key %q = %q, want %q (all: %q)", k, r.Values[k], v, r.Values)
		}
	}
	// Per-key writes and Expect on the same odd keys.
	_, err = st.Commit(ctx(t), id, session.Change{
		Set:    map[string][]byte{"": []byte("new"), "\xff\xfe": nil},
		Delete: []string{"a.b", "#k0"},
		Expect: map[string][]byte{"": []byte("0"), "nope\xff": nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, _ = st.Load(ctx(t), id)
	if string(r.Values[""]) != "new" || r.Values["\xff\xfe"] == nil || len(r.Values["\xff\xfe"]) != 0 {
		t.Fatalf("after update: %q", r.Values)
	}
	if _, ok := r.Values["a.b"]; ok || len(r.Values) != len(keys)-2 {
		t.Fatalf("after delete: %q", r.Values)
	}
	// An empty value is present: expecting it absent conflicts.
	_, err = st.Commit(ctx(t), id, session.Change{Set: map[string][]byte{"x": []byte("1")}, Expect: map[string][]byte{"\xff\xfe": nil}})
	if !errors.Is(err, session.ErrConflict) {
		t.Fatalf("Expect absent on an empty value: %v, want ErrConflict", err)
	}
}

// TestDynamoLargeChange: a change past DynamoDB's 4 KB expression limit
// goes through the read-modify-write path, atomically all the same.
func TestDynamoLargeChange(t *testing.T) {
	srv := testenv.DynamoDB(t)
	st := table(t, srv.Endpoint(), "sessions")
	id := strings.Repeat("cd", 32)
	create(t, st, id, map[string]string{"keep": "1", "drop": "2"})
	set := map[string][]byte{}
	for i := range 400 {
		set[fmt.Sprintf("key-%03d-%s", i, strings.Repeat("x", 20))] = []byte(strconv.Itoa(i))
	}
	v, err := st.Commit(ctx(t), id, session.Change{Set: set, Delete: []string{"drop"}, Expect: map[string][]byte{"keep": []byte("1")}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.Load(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Values) != 401 || string(r.Values["keep"]) != "1" || r.Values["drop"] != nil || r.Version != v || v != 2 {
		t.Fatalf("after a large change: %d values, version %d (commit said %d)", len(r.Values), r.Version, v)
	}
	if _, err := st.Commit(ctx(t), id, session.Change{Set: set, Expect: map[string][]byte{"keep": []byte("0")}}); !errors.Is(err, session.ErrConflict) {
		t.Fatalf("large change with a failing Expect: %v, want ErrConflict", err)
	}
	if _, err := st.Delete(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx(t), id, session.Change{Set: set}); !errors.Is(err, session.ErrGone) {
		t.Fatalf("large change after Delete: %v, want ErrGone", err)
	}
}

// faults is a proxy in front of dynalite that fails chosen requests the
// way DynamoDB does, so the real SDK decodes real error responses.
type faults struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls map[string]int // operation -> requests seen
	// decide returns what to do with the n-th request (from 1) of op:
	// "" forwards it, "throttle" answers ProvisionedThroughputExceeded,
	// "lose" forwards it and answers 500 instead of the real response,
	// as when a response is lost after the write landed.
	decide func(op string, n int) string
}

func newFaults(t *testing.T, backend string, decide func(op string, n int) string) *faults {
	u, _ := url.Parse(backend)
	proxy := httputil.NewSingleHostReverseProxy(u)
	f := &faults{calls: map[string]int{}, decide: decide}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		op = op[strings.LastIndexByte(op, '.')+1:]
		f.mu.Lock()
		f.calls[op]++
		what := f.decide(op, f.calls[op])
		f.mu.Unlock()
		switch what {
		case "throttle":
			awsError(w, 400, "ProvisionedThroughputExceededException", "The level of configured provisioned throughput for the table was exceeded.")
		case "lose":
			proxy.ServeHTTP(httptest.NewRecorder(), r)
			awsError(w, 500, "InternalServerError", "Internal server error")
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *faults) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func awsError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":%q}`, typ, msg)
}

func TestDynamoThrottlingIsRetried(t *testing.T) {
	srv := testenv.DynamoDB(t)
	table(t, srv.Endpoint(), "sessions")
	var throttleAll atomic.Bool
	f := newFaults(t, srv.Endpoint(), func(op string, n int) string {
		if throttleAll.Load() || (op == "UpdateItem" && n <= 3) || (op == "GetItem" && n <= 2) {
			return "throttle"
		}
		return ""
	})
	st, err := dynamostore.New(context.Background(), dynamostore.Options{Client: client(f.srv.URL), Table: "sessions",
		Backoff: dynamostore.Backoff{Base: time.Millisecond, Max: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("ef", 32)
	create(t, st, id, map[string]string{"a": "1"})
	v, err := st.Commit(ctx(t), id, session.Change{Set: map[string][]byte{"a": []byte("2")}})
	if err != nil || v != 2 {
		t.Fatalf("Commit through 3 throttles = %d, %v; want version 2", v, err)
	}
	if n := f.count("UpdateItem"); n != 4 {
		t.Fatalf("UpdateItem sent %d times, want 4 (3 throttled, then success)", n)
	}
	r, err := st.Load(ctx(t), id)
	if err != nil || r == nil || string(r.Values["a"]) != "2" {
		t.Fatalf("Load through 2 throttles = %v, %v", r, err)
	}

	// Throttled for good: the call gives up within its deadline with an
	// error that says so and unwraps to the SDK's type.
	throttleAll.Store(true)
	short, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	before := f.count("GetItem")
	r, err = st.Load(short, id)
	var pte *types.ProvisionedThroughputExceededException
	if r != nil || !errors.As(err, &pte) || !strings.Contains(err.Error(), "dynamostore: load on table sessions") {
		t.Fatalf("Load while throttled = %v, %v; want a wrapped ProvisionedThroughputExceededException", r, err)
	}
	if n := f.count("GetItem") - before; n < 2 {
		t.Fatalf("a throttled Load was tried %d times, want retries", n)
	}
	// The one format BENCHMARKS.md's Faults table quotes: the write and
	// the read rode out their throttles (none failed, none lost); only
	// throttling that outlasts the caller's deadline fails the call.
	t.Logf("FAULT dynamodb-throttling: requests=2 failed_503=0 failed_other=0 longest_error_window=0s acked_writes=1 acked_writes_lost=0 throttles_absorbed=%d",
		3+2)
}

// TestDynamoLostResponseAppliesOnce: a compare-and-swap whose write landed
// but whose answer was lost is retried, and the retry is recognised by the
// write id: the cart counts the item once, and the caller sees success,
// not a conflict that would make it add the item again.
func TestDynamoLostResponseAppliesOnce(t *testing.T) {
	srv := testenv.DynamoDB(t)
	table(t, srv.Endpoint(), "sessions")
	f := newFaults(t, srv.Endpoint(), func(op string, n int) string {
		if (op == "UpdateItem" || op == "PutItem") && n == 1 {
			return "lose"
		}
		return ""
	})
	st, err := dynamostore.New(context.Background(), dynamostore.Options{Client: client(f.srv.URL), Table: "sessions",
		Backoff: dynamostore.Backoff{Base: time.Millisecond, Max: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("01", 32)
	create(t, st, id, map[string]string{"cart": "1"}) // the PutItem's answer is lost
	v, err := st.Commit(ctx(t), id, session.Change{Set: map[string][]byte{"cart": []byte("2")}, Expect: map[string][]byte{"cart": []byte("1")}})
	if err != nil || v != 2 {
		t.Fatalf("CAS whose first answer was lost = %d, %v; want version 2, no error", v, err)
	}
	if f.count("UpdateItem") < 2 {
		t.Fatal("the lost answer was not retried")
	}
	r, _ := st.Load(ctx(t), id)
	if r == nil || string(r.Values["cart"]) != "2" || r.Version != 2 {
		t.Fatalf("after the retry: %v", r)
	}
}

// TestDynamoOutageIsAnErrorAndRecovers: with the server gone, Load fails
// (never "no session") within the caller's deadline, and works again once
// the server is back, with the same client.
func TestDynamoOutageIsAnErrorAndRecovers(t *testing.T) {
	srv := testenv.DynamoDB(t, testenv.DynamoOptions{Persist: true})
	st := table(t, srv.Endpoint(), "sessions")
	id := strings.Repeat("23", 32)
	create(t, st, id, map[string]string{"a": "1"})
	srv.Kill()
	short, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if r, err := st.Load(short, id); err == nil || r != nil {
		t.Fatalf("Load with the server down = %v, %v; want an error", r, err)
	}
	if _, err := st.Commit(short, id, session.Change{Set: map[string][]byte{"a": []byte("2")}}); err == nil || errors.Is(err, session.ErrGone) {
		t.Fatalf("Commit with the server down: %v; want a store error", err)
	}
	srv.Restart()
	testenv.Eventually(t, 10*time.Second, func() error {
		r, err := st.Load(ctx(t), id)
		if err != nil {
			return err
		}
		if r == nil || string(r.Values["a"]) != "1" {
			return fmt.Errorf("after restart: %v", r)
		}
		return nil
	})
}

func TestDynamoCreateTableIsIdempotentAndChecksSchema(t *testing.T) {
	srv := testenv.DynamoDB(t)
	c := client(srv.Endpoint())
	for range 2 {
		err := dynamostore.CreateTable(ctx(t), c, "sessions")
		if !errors.Is(err, dynamostore.ErrNoTTL) { // dynalite has no TTL
			t.Fatalf("CreateTable on dynalite: %v, want ErrNoTTL after creating", err)
		}
	}
	_, err := c.CreateTable(ctx(t), &dynamodb.CreateTableInput{
		TableName:            aws.String("other"),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := dynamostore.CreateTable(ctx(t), c, "other"); err == nil || !strings.Contains(err.Error(), "key schema") {
		t.Fatalf("CreateTable on a table with another schema: %v", err)
	}
	if err := dynamostore.CreateTable(ctx(t), c, "x"); err == nil || !strings.Contains(err.Error(), "table") {
		t.Fatalf("CreateTable with a bad name: %v", err)
	}
}

func TestDynamoURL(t *testing.T) {
	srv := testenv.DynamoDB(t)
	// No credentials in the environment: a loopback endpoint gets dummy
	// ones.
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	st, err := dynamostore.New(ctx(t), dynamostore.Options{URL: "dynamodb://app-sessions?create=true&endpoint=" + url.QueryEscape(srv.Endpoint())})
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("45", 32)
	create(t, st, id, map[string]string{"a": "1"})
	if r, err := st.Load(ctx(t), id); err != nil || r == nil || string(r.Values["a"]) != "1" {
		t.Fatalf("Load through a URL store = %v, %v", r, err)
	}
	// AWS itself needs a region from somewhere.
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	if _, err := dynamostore.New(ctx(t), dynamostore.Options{URL: "dynamodb://sessions"}); err == nil || !strings.Contains(err.Error(), "region") {
		t.Fatalf("URL without any region: %v; want an error naming the region", err)
	}
	// Without create, a missing table is a clear error on first use.
	st2, err := dynamostore.New(ctx(t), dynamostore.Options{URL: "dynamodb://missing?region=eu-west-1&endpoint=" + url.QueryEscape(srv.Endpoint())})
	if err != nil {
		t.Fatal(err)
	}
	var rnf *types.ResourceNotFoundException
	if _, err := st2.Load(ctx(t), id); !errors.As(err, &rnf) || !strings.Contains(err.Error(), "table missing") {
		t.Fatalf("Load on a missing table: %v", err)
	}
	for raw, field := range map[string]string{
		"redis://sessions":                            "scheme",
		"dynamodb://s":                                "table",
		"dynamodb://sessions?endpoint=ftp://x":        "endpoint",
		"dynamodb://sessions?region=EU%20WEST":        "region",
		"dynamodb://sessions?create=maybe":            "create",
		"dynamodb://sessions?tabel=x":                 "tabel",
		"dynamodb://key:secret@sessions":              "user info",
		"dynamodb://sessions/more":                    "path",
		"dynamodb://sessions?region=a&region=b":       "region",
		"dynamodb:sessions":                           "table",
		"dynamodb://sessions?endpoint=http://h:99999": "endpoint",
	} {
		if _, err := dynamostore.New(ctx(t), dynamostore.Options{URL: raw}); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("New(URL: %q) = %v; want an error naming %q", raw, err, field)
		}
	}
}

// TestDynamoAWS runs the conformance suite against a real DynamoDB (AWS,
// or DynamoDB Local) when one is configured.
func TestDynamoAWS(t *testing.T) {
	raw := os.Getenv("UNSTUCK_DYNAMODB_URL")
	if raw == "" {
		t.Skip("set UNSTUCK_DYNAMODB_URL=dynamodb://TABLE?region=R&create=true (add &endpoint=URL for a non-AWS server), with AWS credentials in the environment, to run the suite against DynamoDB itself")
	}
	st, err := dynamostore.New(ctx(t), dynamostore.Options{URL: raw})
	if err != nil {
		t.Fatal(err)
	}
	sessiontest.Run(t, func(t *testing.T) session.Store { return st })
}

func ExampleNew() {
	ctx := context.Background()
	store, err := dynamostore.New(ctx, dynamostore.Options{URL: "dynamodb://sessions?region=eu-west-1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := session.New(session.Config{Store: store})
	if err != nil {
		fmt.Println(err)
		return
	}
	http.ListenAndServe(":8080", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := session.Update(r.Context(), "visits", func(old int, _ bool) (int, error) { return old + 1, nil })
		io.WriteString(w, strconv.Itoa(n))
	})))
}

// TestDynamoExpiredItemsAreGone: DynamoDB deletes expired items late (and
// dynalite never does), so an expired session, tombstone or index entry
// still stored must behave as absent: not loaded, not written to, and its
// id free for a new session.
func TestDynamoExpiredItemsAreGone(t *testing.T) {
	srv := testenv.DynamoDB(t)
	st := table(t, srv.Endpoint(), "sessions")
	live, dead := strings.Repeat("67", 32), strings.Repeat("89", 32)
	user := "expiring-user"
	now := time.Now()
	short := session.Change{Create: true, SetUser: true, UserID: user, Set: map[string][]byte{"a": []byte("1")},
		Created: now, Deadline: now.Add(1200 * time.Millisecond), IdleDeadline: now.Add(time.Hour)}
	if _, err := st.Commit(ctx(t), live, short); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx(t), dead, short); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delete(ctx(t), dead); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx(t), dead, session.Change{Set: map[string][]byte{"a": []byte("2")}}); !errors.Is(err, session.ErrGone) || errors.Is(err, session.ErrNotFound) {
		t.Fatalf("write to a fresh tombstone: %v, want ErrGone", err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if r, err := st.Load(ctx(t), live); err != nil || r != nil {
			return fmt.Errorf("Load past the deadline = %v, %v; want nil", r, err)
		}
		return nil
	})
	if _, err := st.Commit(ctx(t), live, session.Change{Set: map[string][]byte{"a": []byte("2")}}); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("write to an expired session: %v, want ErrNotFound", err)
	}
	if old, err := st.Delete(ctx(t), live); err != nil || old != nil {
		t.Fatalf("Delete of an expired session = %v, %v; want nil, nil", old, err)
	}
	if ids, err := st.UserSessions(ctx(t), user); err != nil || len(ids) != 0 {
		t.Fatalf("UserSessions past the deadline = %v, %v; want none", ids, err)
	}
	// Expired session and expired tombstone: both ids are free again.
	for _, id := range []string{live, dead} {
		now := time.Now()
		v, err := st.Commit(ctx(t), id, session.Change{Create: true, Set: map[string][]byte{"b": []byte("new")}, Created: now, Deadline: now.Add(time.Hour), IdleDeadline: now.Add(time.Hour)})
		if err != nil || v != 1 {
			t.Fatalf("Create over an expired item = %d, %v; want version 1", v, err)
		}
		r, err := st.Load(ctx(t), id)
		if err != nil || r == nil || len(r.Values) != 1 || string(r.Values["b"]) != "new" || r.UserID != "" {
			t.Fatalf("new session over an expired item = %+v, %v; want only its own values", r, err)
		}
	}
}
