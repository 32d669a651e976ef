package natsjobs

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unstuck-dev/unstuck/internal/retry"
	"github.com/unstuck-dev/unstuck/jobs"
)

// PutPayload streams r into the Object Store in chunks. The Object Store
// purges the chunks it wrote when r fails, so an oversized or broken
// upload leaves nothing.
func (b *Backend) PutPayload(ctx context.Context, id string, r io.Reader, max int64) (int64, error) {
	info, err := b.obs.Put(ctx, jetstream.ObjectMeta{Name: id}, jobs.LimitPayload(r, max))
	if err != nil {
		return 0, err
	}
	return int64(info.Size), nil
}

// OpenPayload streams the payload back: through the Object Store's reader
// on a single server, chunk by chunk from the stream's leader on a
// replicated one.
func (b *Backend) OpenPayload(ctx context.Context, id string) (io.ReadCloser, error) {
	if b.payload.Replicated() {
		info, err := retry.Value(ctx, func(ctx context.Context) (*jetstream.ObjectInfo, error) {
			return b.leaderInfo(ctx, id)
		})
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, jobs.ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		return &leaderReader{ctx: ctx, b: b, info: info, next: 1, hash: sha256.New(),
			subject: "$O." + b.cfg.Name + "_payloads.C." + info.NUID}, nil
	}
	res, err := retry.Value(ctx, func(ctx context.Context) (jetstream.ObjectResult, error) { return b.obs.Get(ctx, id) })
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, jobs.ErrNotFound
	}
	return res, err
}

// DeletePayload purges the payload's chunks and then its tombstone.
func (b *Backend) DeletePayload(ctx context.Context, id string) error {
	return retry.Do(ctx, func(ctx context.Context) error {
		err := b.obs.Delete(ctx, id)
		if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return err
		}
		return b.objects.Purge(ctx, jetstream.WithPurgeSubject(b.metaSubject(id)))
	})
}

// metaSubject is where the Object Store keeps object id's metadata.
func (b *Backend) metaSubject(id string) string {
	return "$O." + b.cfg.Name + "_payloads.M." + base64.URLEncoding.EncodeToString([]byte(id))
}

// leaderInfo reads object id's metadata from the leader;
// jetstream.ErrObjectNotFound when it has none or it marks a deletion.
func (b *Backend) leaderInfo(ctx context.Context, id string) (*jetstream.ObjectInfo, error) {
	m, err := b.payload.Last(ctx, b.metaSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, jetstream.ErrObjectNotFound
	}
	if err != nil {
		return nil, err
	}
	var info jetstream.ObjectInfo
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return nil, fmt.Errorf("natsjobs: payload %s metadata: %w", id, err)
	}
	if info.Deleted {
		return nil, jetstream.ErrObjectNotFound
	}
	if info.NUID == "" {
		return nil, jetstream.ErrBadObjectMeta
	}
	return &info, nil
}

// leaderReader reads an object's chunks in order, each from the stream's
// leader, and checks the size and digest the metadata promised.
type leaderReader struct {
	ctx     context.Context
	b       *Backend
	info    *jetstream.ObjectInfo
	subject string // the object's chunk subject
	next    uint64 // the stream sequence to look for the next chunk at
	chunks  uint32 // chunks read
	read    uint64 // bytes read
	buf     []byte // the unread part of the current chunk
	hash    hash.Hash
	err     error
}

// Read implements io.Reader.
func (r *leaderReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 && r.err == nil {
		r.err = r.fill()
	}
	if len(r.buf) == 0 {
		return 0, r.err
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// fill reads the next chunk, or checks the whole object after the last.
func (r *leaderReader) fill() error {
	if r.chunks == r.info.Chunks {
		switch {
		case r.read != r.info.Size:
			return fmt.Errorf("natsjobs: payload %s: read %d bytes, want %d", r.info.Name, r.read, r.info.Size)
		case jetstream.GetObjectDigestValue(r.hash) != r.info.Digest:
			return fmt.Errorf("natsjobs: payload %s: %w", r.info.Name, jetstream.ErrDigestMismatch)
		}
		return io.EOF
	}
	m, err := retry.Value(r.ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return r.b.payload.Next(ctx, r.next, r.subject)
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("natsjobs: payload %s: chunk %d of %d is gone", r.info.Name, r.chunks+1, r.info.Chunks)
	}
	if err != nil {
		return err
	}
	r.next = m.Sequence + 1
	r.chunks++
	r.read += uint64(len(m.Data))
	r.hash.Write(m.Data)
	r.buf = m.Data
	return nil
}

// Close implements io.Closer; nothing is held between reads.
func (r *leaderReader) Close() error { return nil }
