// Package textstats is the demo shop's file job: the SHA-256 and the line,
// word and byte counts of an uploaded text file, worked in steps with a
// checkpoint after each, so that a person can kill the instance running it
// and watch another one resume where it stopped.
package textstats

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/unstuck-dev/unstuck/jobs"
)

// Kind is the job kind under which the shop registers Job.
const Kind = "textstats"

// DefaultSteps is how many steps a job takes when Job.Steps is not set;
// the experiment derives the pause per step from the model's job time
// with it.
const DefaultSteps = 20

// Job computes the SHA-256 and the line, word and byte counts of an
// uploaded text file (as sha256sum and wc -lwc in the C locale report
// them); a file with a NUL byte fails as not text. It works in Steps
// steps, reporting progress and saving a checkpoint after each, and pauses
// StepDelay between steps so that a person can kill the instance mid-job
// and watch another one resume.
//
//	m.Handle(textstats.Kind, textstats.Job{StepDelay: time.Second}.Handle)
type Job struct {
	// Steps is how many progress steps a job takes [DefaultSteps].
	Steps int
	// StepDelay is a pause after each step. Default none.
	StepDelay time.Duration
}

// Result is Job's result, in jobs.Status.Result.
type Result struct {
	SHA256 string `json:"sha256"`
	Lines  int64  `json:"lines"`
	Words  int64  `json:"words"`
	Bytes  int64  `json:"bytes"`
	// ResumedAt is how many bytes an earlier attempt had processed when
	// this attempt took over from its checkpoint; 0 if it started afresh.
	ResumedAt int64 `json:"resumed_at,omitempty"`
	// Attempt is the attempt that finished the job.
	Attempt int `json:"attempt"`
}

// checkpointState is the state between steps. The hash state comes
// from sha256's encoding.BinaryMarshaler, so the digest continues exactly.
type checkpointState struct {
	Offset int64  `json:"offset"`
	Hash   []byte `json:"hash"`
	Lines  int64  `json:"lines"`
	Words  int64  `json:"words"`
	InWord bool   `json:"in_word"`
}

type textCounter struct {
	h            hash.Hash
	offset       int64
	lines, words int64
	inWord       bool
}

// errNotText refuses binary input, as grep does: a NUL byte does not occur
// in text.
var errNotText = errors.New("not a text file")

func (c *textCounter) Write(p []byte) (int, error) {
	if i := bytes.IndexByte(p, 0); i >= 0 {
		return 0, fmt.Errorf("%w: NUL byte at offset %d", errNotText, c.offset+int64(i))
	}
	c.h.Write(p)
	for _, b := range p {
		space := b == ' ' || b == '\n' || b == '\t' || b == '\r' || b == '\v' || b == '\f'
		if b == '\n' {
			c.lines++
		}
		if !space && !c.inWord {
			c.words++
		}
		c.inWord = !space
	}
	c.offset += int64(len(p))
	return len(p), nil
}

func (c *textCounter) checkpoint() ([]byte, error) {
	hs, err := c.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	return json.Marshal(checkpointState{Offset: c.offset, Hash: hs, Lines: c.lines, Words: c.words, InWord: c.inWord})
}

// resumeTextCounter rebuilds a counter from a checkpoint, which comes from
// the shared store: anything inconsistent is an error, and the job starts
// afresh.
func resumeTextCounter(data []byte, size int64) (*textCounter, error) {
	var cp checkpointState
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, err
	}
	if cp.Offset < 0 || cp.Offset > size || cp.Lines < 0 || cp.Words < 0 || cp.Lines > cp.Offset || cp.Words > cp.Offset {
		return nil, errors.New("checkpoint out of range")
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(cp.Hash); err != nil {
		return nil, err
	}
	return &textCounter{h: h, offset: cp.Offset, lines: cp.Lines, words: cp.Words, inWord: cp.InWord}, nil
}

// Handle is the jobs.Handler; register it with jobs.Manager.Handle.
func (t Job) Handle(ctx context.Context, job *jobs.Job) (any, error) {
	steps := t.Steps
	if steps <= 0 {
		steps = DefaultSteps
	}
	size := job.Size()
	c := &textCounter{h: sha256.New()}
	if cp := job.LastCheckpoint(); cp != nil {
		if r, err := resumeTextCounter(cp, size); err == nil {
			c = r
		}
	}
	resumedAt := c.offset
	src, err := job.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if _, err := io.CopyN(io.Discard, src, c.offset); err != nil {
		return nil, fmt.Errorf("textstats: skipping to the checkpoint: %w", err)
	}
	step := max((size+int64(steps)-1)/int64(steps), 1)
	for c.offset < size {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(step-c.offset%step, size-c.offset)
		if _, err := io.CopyN(c, src, n); errors.Is(err, errNotText) {
			return nil, jobs.Permanent(err) // retrying will not make it text
		} else if err != nil {
			return nil, fmt.Errorf("textstats: reading the payload: %w", err)
		}
		cp, err := c.checkpoint()
		if err != nil {
			return nil, err
		}
		if err := job.Checkpoint(ctx, cp); err != nil {
			return nil, err
		}
		if err := job.Progress(ctx, int(c.offset*100/size)); err != nil {
			return nil, err
		}
		if t.StepDelay > 0 && c.offset < size {
			timer := time.NewTimer(t.StepDelay)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, ctx.Err()
			case <-timer.C:
			}
		}
	}
	return Result{
		SHA256: hex.EncodeToString(c.h.Sum(nil)),
		Lines:  c.lines, Words: c.words, Bytes: c.offset,
		ResumedAt: resumedAt, Attempt: job.Attempt(),
	}, nil
}
