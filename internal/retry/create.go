package retry

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// clusterNoPeers is JetStream's "no suitable peers for placement"
// (JSClusterNoPeersErr): the meta leader counts fewer live peers than the
// replicas asked for.
const clusterNoPeers jetstream.ErrorCode = 10005

// createTimeout bounds Create when ctx has no deadline; createTryTimeout
// bounds one try.
const (
	createTimeout    = 30 * time.Second
	createTryTimeout = 5 * time.Second
)

// Unplaced reports whether err is a JetStream cluster refusing to place a
// new stream's replicas because too few peers are live in its view. A
// node restarting, or one whose heartbeats came late on a loaded machine
// (the meta leader then counts it offline for a moment), makes it; it
// lasts until the node is heard from again.
func Unplaced(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == clusterNoPeers
}

// Create runs op, which creates or updates a JetStream stream or bucket
// (idempotent: the same config twice is one stream), until it succeeds,
// fails for another reason, or ctx ends (30 s without a deadline). An
// instance that starts while its cluster cannot place the replicas yet,
// or answers no request (a request that reaches the cluster while it
// elects a leader is never answered, so each try has its own 5 s), then
// waits for the cluster instead of failing to start; with replicas a
// cluster of this size can never place, it fails when ctx ends, with the
// cluster's error.
func Create[T any](ctx context.Context, op func(ctx context.Context) (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, createTimeout)
		defer cancel()
	}
	for attempt := 1; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, createTryTimeout)
		v, err := op(tctx)
		unanswered := err != nil && tctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil || !(unanswered || Unplaced(err) || Lost(err)) || ctx.Err() != nil {
			return v, err
		}
		t := time.NewTimer(min(Backoff(attempt), time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
	}
}
