package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// DirPayloads stores payloads as files in one directory: for a single host
// (or a shared filesystem), when the queue and status live in NATS or Redis
// but payloads need not cross the network. Set it as Config.Payloads.
//
// Unlike the NATS and Redis stores it has no expiry of its own: the
// payloads of failed and dead jobs (kept for Requeue) stay until Sweep
// removes them.
type DirPayloads struct {
	dir string
}

var _ PayloadStore = (*DirPayloads)(nil)

// NewDirPayloads uses dir, creating it (mode 0700) if needed. Files being
// written carry a ".part" suffix until complete; leftovers from a crash are
// removed here.
func NewDirPayloads(dir string) (*DirPayloads, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("jobs: payload dir: %w", err)
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "*.part"))
	for _, p := range parts {
		_ = os.Remove(p)
	}
	return &DirPayloads{dir: dir}, nil
}

func (d *DirPayloads) path(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("jobs: invalid payload id %q", id)
	}
	return filepath.Join(d.dir, id), nil
}

// PutPayload writes r to a temporary file and renames it into place, so a
// reader never sees half a payload.
func (d *DirPayloads) PutPayload(ctx context.Context, id string, r io.Reader, max int64) (int64, error) {
	p, err := d.path(id)
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(p+".part", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, &ctxReader{ctx: ctx, r: LimitPayload(r, max)})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p+".part", p)
	}
	if err != nil {
		_ = os.Remove(p + ".part")
		return 0, err
	}
	return n, nil
}

// OpenPayload opens the file.
func (d *DirPayloads) OpenPayload(ctx context.Context, id string) (io.ReadCloser, error) {
	p, err := d.path(id)
	if err != nil {
		return nil, ErrNotFound
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return f, err
}

// DeletePayload removes the file.
func (d *DirPayloads) DeletePayload(ctx context.Context, id string) error {
	p, err := d.path(id)
	if err != nil {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Sweep deletes payloads (and partial uploads) not modified for
// olderThan, which should match the record store's retention, and reports
// how many it deleted. Call it now and then, for example daily.
func (d *DirPayloads) Sweep(ctx context.Context, olderThan time.Duration) (int, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-olderThan)
	n := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || !info.ModTime().Before(cutoff) {
			continue
		}
		if err := os.Remove(filepath.Join(d.dir, e.Name())); err == nil {
			n++
		}
	}
	return n, nil
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
