package storeurl_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs/natsjobs"
	"github.com/unstuck-dev/unstuck/jobs/redisjobs"
	"github.com/unstuck-dev/unstuck/realtime/natsbroker"
	"github.com/unstuck-dev/unstuck/realtime/redisbroker"
	"github.com/unstuck-dev/unstuck/session/dynamostore"
	"github.com/unstuck-dev/unstuck/session/natsstore"
	"github.com/unstuck-dev/unstuck/session/redisstore"
)

// opener builds one part from a URL or a client (exactly one is set).
type opener[C any] func(ctx context.Context, url string, client C) (io.Closer, error)

// closer turns a constructor's typed result into an io.Closer without
// wrapping a nil pointer in a non-nil interface.
func closer[T io.Closer](v T, err error) (io.Closer, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

// checkShape checks the constructor contract every store, broker and jobs
// backend shares: exactly one of Options.URL and Options.Client, errors
// that name the fields, and a Close that leaves a given client open.
func checkShape[C any](t *testing.T, open opener[C], url string, client C, zero C, clientAlive func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := open(ctx, "", zero); err == nil || !strings.Contains(err.Error(), "Options.URL or Options.Client is required") {
		t.Errorf("neither URL nor Client: %v", err)
	}
	if _, err := open(ctx, url, client); err == nil || !strings.Contains(err.Error(), "Options.URL and Options.Client are both set") {
		t.Errorf("both URL and Client: %v", err)
	}
	p, err := open(ctx, "", client)
	if err != nil {
		t.Fatalf("with Client: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := clientAlive(); err != nil {
		t.Fatalf("Close closed the caller's client: %v", err)
	}
	p, err = open(ctx, url, zero)
	if err != nil {
		t.Fatalf("with URL: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestConstructorsTakeURLOrClient(t *testing.T) {
	ctx := t.Context()
	r := testenv.Redis(t)
	rc, err := connect.Redis(ctx, r.URL(), connect.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	redisAlive := func() error { return rc.Do(ctx, rc.B().Ping().Build()).Error() }
	// A part that owns its client closes it: the server's client count
	// drops back once the part is closed.
	redisClients := func() int {
		list, err := rc.Do(ctx, rc.B().ClientList().Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(list, "\n")
	}
	for name, open := range map[string]opener[rueidis.Client]{
		"redisstore": func(ctx context.Context, url string, c rueidis.Client) (io.Closer, error) {
			return closer(redisstore.New(ctx, redisstore.Options{URL: url, Client: c}))
		},
		"redisbroker": func(ctx context.Context, url string, c rueidis.Client) (io.Closer, error) {
			return closer(redisbroker.New(ctx, redisbroker.Options{URL: url, Client: c}))
		},
		"redisjobs": func(ctx context.Context, url string, c rueidis.Client) (io.Closer, error) {
			return closer(redisjobs.New(ctx, redisjobs.Options{URL: url, Client: c}))
		},
	} {
		t.Run(name, func(t *testing.T) {
			before := redisClients()
			checkShape(t, open, r.URL(), rc, nil, redisAlive)
			testenv.Eventually(t, 10*time.Second, func() error {
				if n := redisClients(); n > before {
					return fmt.Errorf("%d Redis clients after Close, %d before: the URL's client was left open", n, before)
				}
				return nil
			})
		})
	}

	n := testenv.NATS(t)
	nc, err := connect.NATS(ctx, n.URL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	natsAlive := func() error {
		if s := nc.Status(); s != nats.CONNECTED {
			return fmt.Errorf("connection %v", s)
		}
		return nil
	}
	for name, open := range map[string]opener[*nats.Conn]{
		"natsstore": func(ctx context.Context, url string, c *nats.Conn) (io.Closer, error) {
			return closer(natsstore.New(ctx, natsstore.Options{URL: url, Client: c, Memory: true}))
		},
		"natsbroker": func(ctx context.Context, url string, c *nats.Conn) (io.Closer, error) {
			return closer(natsbroker.New(ctx, natsbroker.Options{URL: url, Client: c, Memory: true}))
		},
		"natsjobs": func(ctx context.Context, url string, c *nats.Conn) (io.Closer, error) {
			return closer(natsjobs.New(ctx, natsjobs.Options{URL: url, Client: c}))
		},
	} {
		t.Run(name, func(t *testing.T) {
			before := n.Server.NumClients()
			checkShape(t, open, n.URL(), nc, nil, natsAlive)
			testenv.Eventually(t, 10*time.Second, func() error {
				if got := n.Server.NumClients(); got > before {
					return fmt.Errorf("%d NATS clients after Close, %d before: the URL's connection was left open", got, before)
				}
				return nil
			})
		})
	}

	t.Run("dynamostore", func(t *testing.T) {
		d := testenv.DynamoDB(t)
		dc := dynamodb.New(dynamodb.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(d.Endpoint()),
			Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		})
		if err := dynamostore.CreateTable(t.Context(), dc, "shape"); err != nil && !errors.Is(err, dynamostore.ErrNoTTL) {
			t.Fatal(err)
		}
		url := "dynamodb://shape?region=us-east-1&endpoint=" + d.Endpoint()
		open := func(ctx context.Context, url string, c *dynamodb.Client) (io.Closer, error) {
			o := dynamostore.Options{URL: url}
			if c != nil {
				o.Client, o.Table = c, "shape"
			}
			s, err := dynamostore.New(ctx, o)
			if err != nil {
				return nil, err
			}
			// Nothing to close (see dynamostore.Store); it must work.
			_, err = s.Load(ctx, strings.Repeat("0", 64))
			return io.NopCloser(nil), err
		}
		alive := func() error {
			_, err := dc.ListTables(t.Context(), &dynamodb.ListTablesInput{})
			return err
		}
		checkShape(t, open, url, dc, nil, alive)
		// A URL names its table; a second name is refused, by its field.
		if _, err := dynamostore.New(t.Context(), dynamostore.Options{URL: url, Table: "other"}); err == nil || !strings.Contains(err.Error(), "Options.Table") {
			t.Errorf("URL and Table: %v", err)
		}
	})
}
