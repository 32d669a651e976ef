// Package jobs runs long file-processing tasks whose status any instance
// of an app can report and whose work survives the death of the instance
// running it.
//
// A user uploads a file to any instance; the payload streams (with a size
// limit) into shared storage, and a durable queue hands the job to a worker
// on any instance. Status and progress live in the shared store, so every
// instance answers a status request and can push progress to the browser
// over Server-Sent Events. A worker that dies mid-job stops heartbeating;
// after the queue's visibility timeout another worker claims the job and
// resumes from its last checkpoint.
//
// # Backends
//
// A Backend is three small stores with documented guarantees
// (PayloadStore, RecordStore, Queue):
//
//   - natsjobs: NATS JetStream. Payloads in an Object Store, records in a
//     Key-Value bucket (revisions for compare-and-set, watchers for
//     progress), the queue in a work-queue stream with one durable pull
//     consumer per kind (AckWait is the visibility timeout, +WPI the
//     heartbeat, a delayed NAK the retry backoff).
//   - redisjobs: Redis. Payloads as lists of bounded chunks, records in
//     hashes changed by compare-and-set scripts that publish each change,
//     the queue in a Streams consumer group per kind (XAUTOCLAIM after the
//     visibility timeout, a sorted set for delayed retries).
//   - DirPayloads keeps payloads in a local directory, for one host.
//
// # Life of a job
//
// queued → running (percent, worker) → done (result), or failed (a
// Permanent error), cancelled (Manager.Cancel from any instance), or dead
// (every one of MaxAttempts attempts failed or crashed its worker). A
// failed attempt goes back to queued with its error and a RetryAt after a
// backoff. Failed and dead jobs keep their payload for the store's
// retention: Manager.Requeue replays such a dead letter once its cause is
// fixed. Done and cancelled jobs delete theirs at once.
//
// Execution is at least once: a job may run again after a crash, from its
// last checkpoint. Every change to a record is a compare-and-set on its
// revision, and progress or checkpoints are written only by the attempt
// that currently owns the job, so a worker presumed dead cannot roll the
// status back; the final result is written once, by the first attempt to
// finish. Submit's IdempotencyKey makes a retried upload return the first
// job.
//
// # HTTP
//
// UploadHandler (multipart field "file"), StatusHandler (JSON),
// CancelHandler and EventsHandler (SSE) mount on any ServeMux; see the
// example. Bad uploads get a JSON 4xx and leave nothing in storage. Job
// IDs are 128 random bits, so knowing one is the capability to read or
// cancel that job; wrap the handlers in the app's own authentication to
// tie jobs to users.
package jobs
