package redisjobs

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/unstuck-dev/unstuck/internal/retry"
	"github.com/unstuck-dev/unstuck/jobs"
)

// PayloadKeys lists the keys holding payload id, complete or partial, for
// inspection and tests.
func (b *Backend) PayloadKeys(id string) []string {
	return []string{b.payloadKey(id), b.payloadKey(id) + ":part"}
}

// PutPayload appends r to a list in ChunkSize pieces under a temporary key
// that expires if this process dies, and renames it into place at the end.
// On any error the partial key is deleted. An empty r is refused with
// jobs.ErrEmpty, as Redis cannot hold an empty list.
func (b *Backend) PutPayload(ctx context.Context, id string, r io.Reader, max int64) (int64, error) {
	key := b.payloadKey(id)
	part := key + ":part"
	fail := func(err error) (int64, error) {
		// The caller's ctx may be what failed; clean up regardless.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = retry.Do(cctx, func(ctx context.Context) error {
			return b.c.Do(ctx, b.c.B().Del().Key(part).Build()).Error()
		})
		return 0, err
	}
	lr := jobs.LimitPayload(r, max)
	buf := make([]byte, b.cfg.ChunkSize)
	var total int64
	for chunks := 0; ; chunks++ {
		n, rerr := fill(lr, buf)
		if n > 0 {
			args := []string{strconv.Itoa(chunks), rueidis.BinaryString(buf[:n]), strconv.FormatInt(uploadTTL.Milliseconds(), 10)}
			err := retry.Do(ctx, func(ctx context.Context) error {
				n, err := appendScript.Exec(ctx, b.c, []string{part}, args).AsInt64()
				if err == nil && n < 0 {
					err = fmt.Errorf("redisjobs: upload %s changed under this one", part)
				}
				return err
			})
			if err != nil {
				return fail(err)
			}
			total += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fail(rerr)
		}
	}
	if total == 0 {
		return 0, jobs.ErrEmpty
	}
	err := retry.Do(ctx, func(ctx context.Context) error {
		n, err := publishPayloadScript.Exec(ctx, b.c, []string{part, key}, []string{ms(b.cfg.Retention)}).AsInt64()
		if err == nil && n < 0 {
			err = fmt.Errorf("redisjobs: upload %s vanished before it was complete", part)
		}
		return err
	})
	if err != nil {
		return fail(err)
	}
	return total, nil
}

var (
	// appendScript appends chunk number ARGV[1] to an upload, once: a
	// repeat finds the list already one longer and leaves it.
	appendScript = rueidis.NewLuaScript(`
local want = tonumber(ARGV[1])
if want == 0 then redis.call('DEL', KEYS[1]) end
local n = redis.call('LLEN', KEYS[1])
if n == want then
  redis.call('RPUSH', KEYS[1], ARGV[2])
  n = n + 1
elseif n ~= want + 1 then
  return -1
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return n`)
	// publishPayloadScript renames a complete upload into place; a repeat
	// finds it there already.
	publishPayloadScript = rueidis.NewLuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
elseif redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1`)
)

// fill reads until buf is full or r ends. Unlike io.ReadFull it passes on
// r's own io.ErrUnexpectedEOF (a truncated upload) as the error it is,
// and reports the end of r as io.EOF.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// OpenPayload reads the chunks one at a time as the reader asks.
func (b *Backend) OpenPayload(ctx context.Context, id string) (io.ReadCloser, error) {
	key := b.payloadKey(id)
	n, err := retry.Value(ctx, func(ctx context.Context) (int64, error) {
		return b.c.Do(ctx, b.c.B().Llen().Key(key).Build()).AsInt64()
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, jobs.ErrNotFound
	}
	return &chunkReader{ctx: ctx, b: b, key: key, chunks: n}, nil
}

type chunkReader struct {
	ctx    context.Context
	b      *Backend
	key    string
	chunks int64
	next   int64
	buf    []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.next >= r.chunks {
			return 0, io.EOF
		}
		chunk, err := retry.Value(r.ctx, func(ctx context.Context) ([]byte, error) {
			return r.b.c.Do(ctx, r.b.c.B().Lindex().Key(r.key).Index(r.next).Build()).AsBytes()
		})
		if rueidis.IsRedisNil(err) {
			return 0, fmt.Errorf("redisjobs: payload vanished while reading: %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return 0, err
		}
		r.buf, r.next = chunk, r.next+1
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *chunkReader) Close() error { return nil }

// DeletePayload deletes the payload and any partial upload of it.
func (b *Backend) DeletePayload(ctx context.Context, id string) error {
	return retry.Do(ctx, func(ctx context.Context) error {
		return b.c.Do(ctx, b.c.B().Del().Key(b.PayloadKeys(id)...).Build()).Error()
	})
}
