package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	unretry "github.com/unstuck-dev/unstuck/internal/retry"
)

// throttleCodes are the error codes with which DynamoDB (and the AWS
// front end before it) says "too fast, try again": the table's or an
// index's capacity, the account's request rate, or a hot partition.
var throttleCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"ThrottlingException":                    true,
	"RequestLimitExceeded":                   true,
	"Throttling":                             true,
	"ThrottledException":                     true,
	"TooManyRequestsException":               true,
}

// transientCodes are server-side failures that a repeat usually gets past.
var transientCodes = map[string]bool{
	"InternalServerError":            true,
	"InternalFailure":                true,
	"ServiceUnavailable":             true,
	"TransactionInProgressException": true,
}

// throttled reports whether err says the request was throttled.
func throttled(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && throttleCodes[api.ErrorCode()]
}

// retryable reports whether repeating the request may succeed: throttling,
// a 5xx or a transient server error, or a connection that failed. Repeated
// writes are safe because every write carries a write id (see the package
// doc): a repeat of a write that did land is recognised, not applied twice.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if throttled(err) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		if transientCodes[api.ErrorCode()] {
			return true
		}
	}
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) && resp.HTTPStatusCode() >= 500 {
		return true
	}
	if api != nil {
		return false // a modeled answer from the service: not a transport failure
	}
	// The connection died under the request: the rule every store
	// follows (package internal/retry), and the SDK's own list.
	return unretry.Lost(err) || retry.RetryableConnectionError{}.IsErrorRetryable(err) == aws.TrueTernary
}

// Backoff spaces retries: attempt n waits a uniformly random time in
// [0, min(Max, Base*2^n)) ("full jitter"), which spreads the retries of
// many throttled instances instead of having them collide again.
type Backoff struct {
	// Base is the first attempt's bound. Default 25ms.
	Base time.Duration
	// Max caps the bound. Default 1s.
	Max time.Duration
	// MaxAttempts bounds the tries of one call when its context has no
	// deadline. Default 10. With a deadline, retries stop when the next
	// wait would pass it.
	MaxAttempts int
}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = 25 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = time.Second
	}
	if b.Max < b.Base {
		b.Max = b.Base
	}
	if b.MaxAttempts <= 0 {
		b.MaxAttempts = 10
	}
	return b
}

// bound is the upper end of attempt n's wait.
func (b Backoff) bound(n int) time.Duration {
	d := b.Base
	for range n {
		if d >= b.Max/2 {
			return b.Max
		}
		d *= 2
	}
	return min(d, b.Max)
}

// delay is attempt n's wait.
func (b Backoff) delay(n int) time.Duration {
	return rand.N(b.bound(n)) + 1
}

// noSDKRetries turns the client's own retryer off for the Store's calls:
// the Store retries itself, within the caller's deadline, and two retry
// layers would multiply attempts and hide throttling from the backoff.
func noSDKRetries(o *dynamodb.Options) { o.Retryer = aws.NopRetryer{} }

// do calls fn until it succeeds, fails with an error that is not
// retryable, or the next wait would pass ctx's deadline. It returns fn's
// last error (not the context's), so the caller learns why it failed.
func (b Backoff) do(ctx context.Context, fn func(attempt int) error) error {
	var last error // the last retryable error: why we are still trying
	giveUp := func(err error, attempts int) error {
		if last != nil && ctx.Err() != nil {
			// The deadline cut a retry short: report what kept
			// failing, not just the deadline.
			return fmt.Errorf("%w (gave up at the deadline after %d attempts)", last, attempts)
		}
		return err
	}
	for attempt := 0; ; attempt++ {
		err := fn(attempt)
		if err == nil {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return giveUp(err, attempt+1)
		}
		last = err
		d := b.delay(attempt)
		dl, hasDeadline := ctx.Deadline()
		if hasDeadline && time.Until(dl) < d {
			return err
		}
		if !hasDeadline && attempt+1 >= b.MaxAttempts {
			return err
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
