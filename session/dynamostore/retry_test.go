package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// opErr wraps err as the SDK returns it from an operation.
func opErr(err error) error {
	return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "UpdateItem", Err: err}
}

func httpErr(code int, err error) error {
	return opErr(&smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}},
		Err:      err,
	})
}

func TestDynamoRetryClassifier(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	cases := []struct {
		name      string
		err       error
		retry     bool
		throttled bool
	}{
		{"provisioned throughput", httpErr(400, &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}), true, true},
		{"throttling", httpErr(400, &types.ThrottlingException{}), true, true},
		{"request limit", httpErr(400, &types.RequestLimitExceeded{}), true, true},
		{"unmodeled throttle code", httpErr(400, &smithy.GenericAPIError{Code: "ThrottlingException"}), true, true},
		{"internal server error", httpErr(500, &types.InternalServerError{}), true, false},
		{"503 without a body", httpErr(503, errors.New("service unavailable")), true, false},
		{"connection refused", opErr(fmt.Errorf("send request: %w", refused)), true, false},
		{"condition failed", httpErr(400, &types.ConditionalCheckFailedException{}), false, false},
		{"missing table", httpErr(400, &types.ResourceNotFoundException{}), false, false},
		{"validation", httpErr(400, &smithy.GenericAPIError{Code: "ValidationException"}), false, false},
		{"item too large", httpErr(400, &smithy.GenericAPIError{Code: "ValidationException", Message: "Item size has exceeded the maximum allowed size"}), false, false},
		{"deadline", opErr(context.DeadlineExceeded), false, false},
		{"canceled", opErr(context.Canceled), false, false},
		{"wrapped by us", fmt.Errorf("dynamostore: commit: %w", httpErr(400, &types.ProvisionedThroughputExceededException{})), true, true},
	}
	for _, c := range cases {
		if got := retryable(c.err); got != c.retry {
			t.Errorf("%s: retryable = %v, want %v (%v)", c.name, got, c.retry, c.err)
		}
		if got := throttled(c.err); got != c.throttled {
			t.Errorf("%s: throttled = %v, want %v", c.name, got, c.throttled)
		}
	}
}

func TestDynamoBackoffGrowsWithJitterAndCaps(t *testing.T) {
	b := Backoff{Base: 10 * time.Millisecond, Max: 300 * time.Millisecond}.withDefaults()
	want := []time.Duration{10, 20, 40, 80, 160, 300, 300, 300}
	for n, w := range want {
		if got := b.bound(n); got != w*time.Millisecond {
			t.Fatalf("bound(%d) = %v, want %v", n, got, w*time.Millisecond)
		}
	}
	if got := b.bound(1000); got != b.Max {
		t.Fatalf("bound(1000) = %v, want the cap", got)
	}
	// Full jitter: every wait is in (0, bound], and they are not all equal.
	seen := map[time.Duration]bool{}
	for range 200 {
		d := b.delay(4)
		if d <= 0 || d > b.bound(4) {
			t.Fatalf("delay(4) = %v, want within (0, %v]", d, b.bound(4))
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("200 delays took only %d values: no jitter", len(seen))
	}
}

func TestDynamoRetryLoop(t *testing.T) {
	throttle := httpErr(400, &types.ProvisionedThroughputExceededException{})
	b := Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond}.withDefaults()

	// Throttled three times, then through.
	calls := 0
	err := b.do(context.Background(), func(attempt int) error {
		if attempt != calls {
			t.Fatalf("attempt %d on call %d", attempt, calls)
		}
		calls++
		if calls <= 3 {
			return throttle
		}
		return nil
	})
	if err != nil || calls != 4 {
		t.Fatalf("do = %v after %d calls; want success on the 4th", err, calls)
	}

	// Not retryable: one call, its error.
	calls = 0
	missing := httpErr(400, &types.ResourceNotFoundException{})
	if err := b.do(context.Background(), func(int) error { calls++; return missing }); err != missing || calls != 1 {
		t.Fatalf("do(not retryable) = %v after %d calls", err, calls)
	}

	// No deadline: bounded by MaxAttempts.
	calls = 0
	if err := b.do(context.Background(), func(int) error { calls++; return throttle }); err != throttle || calls != b.MaxAttempts {
		t.Fatalf("do(always throttled) = %v after %d calls; want %d", err, calls, b.MaxAttempts)
	}

	// With a deadline: retries until the next wait would pass it, and
	// returns the throttle (the reason), not the context's error.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	calls = 0
	long := Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond, MaxAttempts: 1}.withDefaults()
	err = long.do(ctx, func(int) error { calls++; return throttle })
	var pte *types.ProvisionedThroughputExceededException
	if !errors.As(err, &pte) || calls < 2 {
		t.Fatalf("do(throttled, deadline) = %v after %d calls; want the throttle, retried", err, calls)
	}
	if ctx.Err() != nil && calls < 2 {
		t.Fatal("no retries before the deadline")
	}
}
