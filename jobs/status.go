package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// State is where a job is in its life.
type State string

// The states of a job. Done, Failed, Cancelled and Dead are final.
const (
	// Queued: waiting for a worker, for the first time or for a retry.
	Queued State = "queued"
	// Running: a worker is processing it (Status.Worker, Status.Percent).
	Running State = "running"
	// Done: finished; Status.Result holds the result.
	Done State = "done"
	// Failed: the handler reported a permanent error (see Permanent).
	Failed State = "failed"
	// Cancelled: a user cancelled it (see Manager.Cancel).
	Cancelled State = "cancelled"
	// Dead: every attempt failed or crashed its worker; dead-lettered.
	Dead State = "dead"
)

// Final reports whether no worker will touch a job in state s again.
func (s State) Final() bool {
	return s == Done || s == Failed || s == Cancelled || s == Dead
}

func (s State) valid() bool {
	return s == Queued || s == Running || s.Final()
}

// Status is what any instance reports about a job. Its JSON form is what the
// status and events handlers send.
type Status struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	State State  `json:"state"`
	// Percent is the handler's last reported progress, 0-100.
	Percent int `json:"percent"`
	// Worker names the worker running (or that last ran) the job.
	Worker string `json:"worker,omitempty"`
	// Attempt counts the times a worker started the job, crashes included.
	Attempt     int `json:"attempt"`
	MaxAttempts int `json:"max_attempts"`
	// Result is the handler's result as JSON, set when State is Done.
	Result json.RawMessage `json:"result,omitempty"`
	// Error is the last attempt's error: the reason for Failed or Dead, or
	// why a Queued job is being retried.
	Error string `json:"error,omitempty"`
	// CancelRequested is set by Cancel until the worker stops.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// Checkpointed is set once the handler saved a checkpoint, from which
	// a later attempt resumes.
	Checkpointed bool `json:"checkpointed,omitempty"`
	// Filename is the uploaded file's name, for display only.
	Filename string `json:"filename,omitempty"`
	// Size is the payload's size in bytes.
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// RetryAt is when a Queued job after a failed attempt runs again.
	RetryAt time.Time `json:"retry_at,omitzero"`
	// Revision increases with every change; SSE uses it as the event ID.
	Revision uint64 `json:"revision"`
}

// record is what the RecordStore holds: the public status plus what only
// workers need. Its encoding is versioned so that instances of different
// releases can share a store.
type record struct {
	V          int    `json:"v"`
	Status     Status `json:"status"`
	PayloadID  string `json:"payload_id,omitempty"`
	Checkpoint []byte `json:"checkpoint,omitempty"`
	// Unqueued marks a job that failed because it could not be queued;
	// a Submit with its idempotency key replaces it.
	Unqueued bool `json:"unqueued,omitempty"`
}

const recordVersion = 1

// Limits on what a record may hold, so that a corrupt or hostile record
// cannot make an instance allocate without bound, and records fit the
// smallest value limit of the backends (NATS: 1 MiB by default).
const (
	// MaxCheckpointBytes bounds Job.Checkpoint's data.
	MaxCheckpointBytes = 256 << 10
	// MaxResultBytes bounds a handler's result, JSON encoded.
	MaxResultBytes = 256 << 10
	maxRecordBytes = 768 << 10
	maxErrorBytes  = 4 << 10
	maxNameBytes   = 255
)

func encodeRecord(r *record) ([]byte, error) {
	r.V = recordVersion
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(b) > maxRecordBytes {
		return nil, fmt.Errorf("jobs: record of %d bytes exceeds %d", len(b), maxRecordBytes)
	}
	return b, nil
}

// decodeRecord parses a record read from the shared store. The store is
// shared with other processes, so its bytes are untrusted: anything that is
// not a well-formed record of a known version is an error, never a panic.
func decodeRecord(data []byte) (*record, error) {
	if len(data) > maxRecordBytes {
		return nil, fmt.Errorf("jobs: record of %d bytes exceeds %d", len(data), maxRecordBytes)
	}
	var r record
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("jobs: bad record: %w", err)
	}
	if dec.More() {
		return nil, errors.New("jobs: bad record: trailing data")
	}
	if r.V != recordVersion {
		return nil, fmt.Errorf("jobs: record version %d not supported", r.V)
	}
	s := &r.Status
	switch {
	case !validID(s.ID):
		return nil, errors.New("jobs: bad record: invalid id")
	case !validKind(s.Kind):
		return nil, errors.New("jobs: bad record: invalid kind")
	case !s.State.valid():
		return nil, fmt.Errorf("jobs: bad record: unknown state %q", s.State)
	case s.Percent < 0 || s.Percent > 100:
		return nil, errors.New("jobs: bad record: percent out of range")
	case s.Attempt < 0 || s.MaxAttempts < 0:
		return nil, errors.New("jobs: bad record: negative attempts")
	case s.Size < 0:
		return nil, errors.New("jobs: bad record: negative size")
	case r.PayloadID != "" && !validID(r.PayloadID):
		return nil, errors.New("jobs: bad record: invalid payload id")
	case len(r.Checkpoint) > MaxCheckpointBytes:
		return nil, errors.New("jobs: bad record: checkpoint too large")
	case len(s.Result) > 0 && !json.Valid(s.Result):
		return nil, errors.New("jobs: bad record: result is not JSON")
	case !utf8.ValidString(s.Error) || !utf8.ValidString(s.Filename) || !utf8.ValidString(s.Worker):
		return nil, errors.New("jobs: bad record: invalid UTF-8")
	}
	return &r, nil
}

// validID accepts the IDs this package generates and backends can use as a
// NATS subject token, KV key, object name, Redis key part and file name.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validKind has the same alphabet as IDs: a kind names a NATS subject token
// and a Redis stream.
func validKind(kind string) bool { return validID(kind) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
