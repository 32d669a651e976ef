package jobs

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors shared by the Manager and every Backend. Backends return (or wrap)
// these so that callers can tell "not there" from "the store is down".
var (
	// ErrNotFound: no job, record or payload has that ID.
	ErrNotFound = errors.New("jobs: not found")
	// ErrExists: CreateRecord found a record under that ID already.
	ErrExists = errors.New("jobs: already exists")
	// ErrConflict: UpdateRecord's revision was not the current one.
	ErrConflict = errors.New("jobs: revision conflict")
	// ErrTooLarge: a payload exceeded the size limit; nothing was kept.
	ErrTooLarge = errors.New("jobs: payload too large")
	// ErrEmpty: a payload had no bytes; nothing was kept.
	ErrEmpty = errors.New("jobs: payload is empty")
	// ErrUnknownKind: no Handler is registered for the kind.
	ErrUnknownKind = errors.New("jobs: unknown job kind")
	// ErrFinished: the job is already in a final state.
	ErrFinished = errors.New("jobs: job already finished")
)

// Backend is the shared storage that lets every instance see every job. It
// is three small stores; natsjobs and redisjobs implement all three, and
// Config.Payloads can swap the payload part (for example for DirPayloads).
type Backend interface {
	PayloadStore
	RecordStore
	Queue
}

// PayloadStore keeps job inputs (uploaded files) until their job finishes.
//
// Guarantees: PutPayload either stores all of r under id or, on any error
// (including ErrTooLarge when r yields more than max bytes), leaves nothing
// behind under id. OpenPayload returns ErrNotFound for an unknown id.
// DeletePayload of an unknown id is not an error.
type PayloadStore interface {
	PutPayload(ctx context.Context, id string, r io.Reader, max int64) (size int64, err error)
	OpenPayload(ctx context.Context, id string) (io.ReadCloser, error)
	DeletePayload(ctx context.Context, id string) error
}

// RecordStore keeps one opaque record per job with a revision, so that
// concurrent writers (two workers, a worker and a user cancelling) never
// overwrite each other silently.
//
// Guarantees: revisions of one id strictly increase. CreateRecord fails with
// ErrExists when the id exists; UpdateRecord fails with ErrConflict unless
// rev is the current revision (when the record is gone it may report
// ErrNotFound instead).
// WatchRecord sends the record's value after changes until ctx ends; it may
// skip intermediate values (a slow reader sees the latest), and after a
// connection loss it may miss some, so readers that need the final state
// also re-read with GetRecord from time to time. The channel is closed when
// ctx ends or the watch fails.
type RecordStore interface {
	GetRecord(ctx context.Context, id string) (data []byte, rev uint64, err error)
	CreateRecord(ctx context.Context, id string, data []byte) (rev uint64, err error)
	UpdateRecord(ctx context.Context, id string, data []byte, rev uint64) (newRev uint64, err error)
	WatchRecord(ctx context.Context, id string) (<-chan RecordValue, error)
}

// RecordValue is one value of a record, as WatchRecord sends it.
type RecordValue struct {
	Data []byte
	Rev  uint64
}

// SendLatest sends v on out, a WatchRecord channel with a buffer of one,
// replacing a value the reader has not taken yet: a slow reader gets the
// newest value, and the watcher feeding out never blocks on it. Only one
// goroutine may send on out.
func SendLatest(out chan RecordValue, v RecordValue) {
	for {
		select {
		case out <- v:
			return
		default:
			select {
			case <-out:
			default:
			}
		}
	}
}

// Queue is a durable, at-least-once queue of job IDs per kind.
//
// Guarantees: an enqueued id is handed to one claimer at a time. A claimed
// delivery that is neither acknowledged, retried nor extended within
// VisibilityTimeout is handed to another claimer (its worker is presumed
// dead). Claim blocks until a delivery is available or ctx ends, and then
// returns ctx's error.
type Queue interface {
	Enqueue(ctx context.Context, kind, id string) error
	Claim(ctx context.Context, kind, worker string) (Delivery, error)
	VisibilityTimeout() time.Duration
}

// Leaver is an optional Queue method. Run calls Leave for each kind as its
// workers stop, so that the queue can forget a worker that will not come
// back (Redis keeps a consumer per worker name in its group). It must not
// lose a job the worker still holds.
type Leaver interface {
	Leave(ctx context.Context, kind, worker string) error
}

// Delivery is one claim of a queued job.
type Delivery interface {
	// JobID is the id given to Enqueue.
	JobID() string
	// Extend restarts the visibility timeout; a worker calls it while it
	// works. It fails when another claimer has taken the delivery over.
	Extend(ctx context.Context) error
	// Ack removes the job from the queue for good.
	Ack(ctx context.Context) error
	// Retry hands the job out again, to any claimer, after delay.
	Retry(ctx context.Context, delay time.Duration) error
}
