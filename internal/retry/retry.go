// Package retry decides, for every store and backend in unstuck, whether a
// failed request may be sent again, and sends it again within the caller's
// deadline.
//
// The rule the stores follow: a request whose connection died under it (the
// server restarted, a pooled connection was already dead, the client was
// reconnecting) may or may not have been applied. It is repeated on a fresh
// connection only when repeating it cannot apply it twice: a read, a
// compare-and-set on a known version, a write keyed by an id chosen before
// the call (a second application is recognised by that id). Anything else
// is reported to the caller. An answer from the server (a conflict, a
// missing key, a script error) is never retried here: it is an answer.
package retry

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/jsread"
)

// Attempts bounds the tries of one call, the first included. A server that
// is back answers the second; one still down after the last wait is an
// outage for the caller to report, not for us to hide.
const Attempts = 5

// Lost reports whether err says the request's connection failed, so the
// request may or may not have reached the server and a fresh connection may
// succeed. The caller's own context ending is not a lost connection, nor
// is a client that was closed on purpose.
func Lost(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, rueidis.ErrClosing), errors.Is(err, nats.ErrConnectionClosed):
		return false
	case NotSent(err):
		return true
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		// A server reply. LOADING: a restarted server reading its
		// append-only file; the request was refused, not applied.
		return re.IsLoading()
	}
	if errors.Is(err, errConnDropped) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting) {
		return true
	}
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.As(err, &ne)
}

// NotSent reports whether err proves the request reached no server that
// could apply it: the connection was refused, a restarted Redis was still
// loading its data, or no JetStream was there to answer (jsread.ErrNoLeader
// comes only from reads, which apply nothing). Such a request may be
// repeated even when it is not idempotent.
func NotSent(err error) bool {
	if re, ok := rueidis.IsRedisErr(err); ok {
		return re.IsLoading()
	}
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) ||
		(errors.As(err, &op) && op.Op == "dial") ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jsread.ErrNoLeader)
}

// Do calls op until it succeeds or fails with an error that is not Lost,
// at most Attempts times, waiting between tries (25 ms doubling to 400 ms,
// jittered), and never past ctx's deadline. It returns op's last error,
// not the context's, so the caller learns why it failed. op must be safe
// to repeat (see the package doc).
func Do(ctx context.Context, op func(ctx context.Context) error) error {
	return do(ctx, Lost, op)
}

// Repeat is Do for an op that recognises its own earlier application by
// the id it chose before the call: repeat is false on the first try and
// true on every later one, when an earlier try may have been applied and
// only its answer was lost.
func Repeat(ctx context.Context, op func(ctx context.Context, repeat bool) error) error {
	repeat := false
	return Do(ctx, func(ctx context.Context) error {
		err := op(ctx, repeat)
		repeat = true
		return err
	})
}

// Unsent is Do for a request that is not safe to repeat: it is sent again
// only when the failure proves it was never applied (NotSent).
func Unsent(ctx context.Context, op func(ctx context.Context) error) error {
	return do(ctx, NotSent, op)
}

// Value is Do for an op with a result.
func Value[T any](ctx context.Context, op func(ctx context.Context) (T, error)) (T, error) {
	var v T
	err := Do(ctx, func(ctx context.Context) error {
		var err error
		v, err = op(ctx)
		return err
	})
	return v, err
}

func do(ctx context.Context, again func(error) bool, op func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil || attempt >= Attempts || !again(err) || ctx.Err() != nil {
			return err
		}
		wait := Backoff(attempt)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// Backoff is the wait after the n-th failed attempt (n >= 1): a random
// time in [d/2, d) for d = 25 ms doubling up to 400 ms, so that the
// instances that lost one server do not all come back at once.
func Backoff(n int) time.Duration {
	d := 25 * time.Millisecond << min(max(n-1, 0), 4)
	return d/2 + rand.N(d/2)
}
