package retry

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// errConnDropped is the cause of a try's context ending because its NATS
// connection dropped while the request was in flight.
var errConnDropped = errors.New("connection dropped while the request was in flight")

// OnConn runs op with a context that also ends as soon as nc loses its
// connection, and reports that end as a lost connection (so Do repeats
// op) rather than as the caller's deadline. A NATS request whose reply
// died with the connection is never answered, and would otherwise hold
// the caller for its whole deadline; one sent while the client is already
// reconnecting is held by the client and sent on the new connection, so
// only a drop during the call counts.
func OnConn(ctx context.Context, nc *nats.Conn, op func(ctx context.Context) error) error {
	if nc == nil {
		return op(ctx)
	}
	status := nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	defer nc.RemoveStatusListener(status)
	tctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-status:
			cancel(errConnDropped)
		case <-tctx.Done():
		}
	}()
	err := op(tctx)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(tctx), errConnDropped) {
		return fmt.Errorf("%w (%v)", errConnDropped, err)
	}
	return err
}
