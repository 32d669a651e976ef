package jsread

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// KV reads a key-value bucket through its stream, with the guarantee of
// Stream: a read sees every write acknowledged before it.
type KV struct {
	s      *Stream
	prefix string // "$KV.<bucket>."
}

// OpenKV opens the stream behind bucket.
func OpenKV(ctx context.Context, js jetstream.JetStream, bucket string) (*KV, error) {
	s, err := Open(ctx, js, "KV_"+bucket)
	if err != nil {
		return nil, err
	}
	return &KV{s: s, prefix: "$KV." + bucket + "."}, nil
}

// Replicated reports whether reads go to the leader.
func (k *KV) Replicated() bool { return k.s.Replicated() }

// Get returns key's value and revision, or jetstream.ErrKeyNotFound when
// the key has no entry or its newest entry deletes it (a delete, a purge,
// or the marker the server leaves when an entry's TTL ends).
func (k *KV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	m, err := k.s.Last(ctx, k.prefix+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, jetstream.ErrKeyNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	if m.Header.Get("KV-Operation") != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "" {
		return nil, 0, jetstream.ErrKeyNotFound
	}
	return m.Data, m.Sequence, nil
}

// Keys lists the keys that match pattern (NATS wildcards, as in
// ListKeysFiltered) and hold a stored message. One request, answered by
// the leader from the stream's subject index, where ListKeysFiltered
// runs a consumer that may sit on a lagging replica. Unlike
// ListKeysFiltered it cannot tell a deleted key from a live one: a key
// whose newest entry is a delete or an expiry marker is listed until the
// marker itself goes, so a caller checks what it finds.
func (k *KV) Keys(ctx context.Context, pattern string) ([]string, error) {
	subjects, err := k.s.Subjects(ctx, k.prefix+pattern)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(subjects))
	for subj := range subjects {
		keys = append(keys, strings.TrimPrefix(subj, k.prefix))
	}
	return keys, nil
}
