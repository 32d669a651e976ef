package realtime

import (
	"context"
	"errors"
	"time"
)

// Publication is one message in a channel's stream.
type Publication struct {
	// Offset is the message's position in its channel, assigned by the
	// broker; it only grows within an epoch.
	Offset uint64
	// Prev is the offset of the channel's previous message (0 for the
	// first). Redis offsets are contiguous (Prev = Offset-1); NATS offsets
	// are JetStream sequences shared by all channels, so Prev is what lets
	// a receiver notice a missing message without contiguous numbers.
	Prev uint64
	// Epoch names the incarnation of the channel's history; it changes when
	// the history was lost (a backplane restarted empty, a stream was
	// recreated), and offsets from another epoch mean nothing.
	Epoch string
	// Data is the JSON payload.
	Data []byte
}

// Position is the top of a channel's stream: the offset of its last message
// (0 if none) and its epoch.
type Position struct {
	Offset uint64
	Epoch  string
}

// History is what a broker still holds of a channel after an offset.
type History struct {
	// Publications follow the requested offset, oldest first.
	Publications []Publication
	// Top is the stream's position when the history was read.
	Top Position
	// Complete is true when Publications are exactly everything after the
	// requested offset up to Top: nothing was trimmed by size or age and the
	// limit was not reached. Epochs are compared by the caller.
	Complete bool
}

// Broker carries channel messages between hub instances and keeps their
// recent history. Implementations must guarantee:
//
//   - Order: within a channel, messages are assigned increasing offsets in
//     one total order, and every instance receives them in that order
//     (delivery may skip messages, never reorder them).
//   - Offsets: Publish assigns Offset and Prev atomically with appending to
//     history, so the history and the live stream agree.
//   - Live delivery is at most once: a message may be missed (a dropped
//     backplane connection, or a live copy overtaken by a later one that
//     another instance published at the same moment), never duplicated by
//     the broker. The hub finds misses by Prev and fills them from History.
//   - History is bounded by size and age; History reports Complete=false
//     when it cannot cover the gap asked for, and the epoch changes whenever
//     history was lost as a whole.
//
// Subscribe and Unsubscribe are called serially per channel by the hub.
// Run delivers live messages and connectivity changes to the Handler until
// ctx ends; it must resubscribe every channel after a reconnect before
// calling Handler.Reconnected.
type Broker interface {
	Run(ctx context.Context, h BrokerHandler) error
	Publish(ctx context.Context, channel string, data []byte) (Publication, error)
	Subscribe(ctx context.Context, channel string) error
	Unsubscribe(ctx context.Context, channel string) error
	History(ctx context.Context, channel string, since uint64, limit int) (History, error)
	// Healthy returns nil while the broker's live subscriptions work.
	Healthy() error
}

// BrokerHandler receives what a Broker's Run delivers.
type BrokerHandler interface {
	// HandlePublication is called for each live message, in order per
	// channel, from one goroutine per broker.
	HandlePublication(channel string, p Publication)
	// Reconnected is called after the broker lost its live subscriptions
	// and restored them: messages in between may have been missed.
	Reconnected()
}

// PresenceEntry is one connection present in a channel.
type PresenceEntry struct {
	Client string `json:"client"`
	User   string `json:"user"`
	// Expires is when the entry lapses unless refreshed (unix ms).
	Expires int64 `json:"-"`
}

// PresenceStore keeps who is in each channel across instances. Entries are
// refreshed by their instance's heartbeats and expire TTL after the last
// one, so a dead instance's entries vanish within TTL.
type PresenceStore interface {
	SetPresence(ctx context.Context, channel string, entries []PresenceEntry, ttl time.Duration) error
	RemovePresence(ctx context.Context, channel string, clients []string) error
	Presence(ctx context.Context, channel string) ([]PresenceEntry, error)
}

// ErrBackplaneUnavailable wraps broker errors caused by a lost backplane.
var ErrBackplaneUnavailable = errors.New("realtime: backplane unavailable")

// ErrMaybePublished is wrapped, besides ErrBackplaneUnavailable, by a
// Publish error after which the message may have been stored all the same:
// a request went out and its answer never came. The Hub then leaves the
// message to history rather than delivering a copy without offset to its
// own subscribers, who would get it a second time from history if it was
// stored. A Broker that cannot tell wraps ErrBackplaneUnavailable alone.
var ErrMaybePublished = errors.New("realtime: the message may have been published")
