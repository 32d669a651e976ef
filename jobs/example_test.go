package jobs_test

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/jobs/natsjobs"
)

// An app instance that accepts uploads, reports status and progress, and
// runs workers. Every instance runs the same code against the same NATS.
func Example() {
	ctx := context.Background()
	backend, err := natsjobs.New(ctx, natsjobs.Options{URL: "nats://127.0.0.1:4222", VisibilityTimeout: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()
	m, err := jobs.New(jobs.Config{Backend: backend, MaxPayloadBytes: 10 << 20})
	if err != nil {
		log.Fatal(err)
	}
	m.Handle("lines", countLines)
	go m.Run(ctx) // workers; cancel ctx to hand running jobs back

	mux := http.NewServeMux()
	mux.Handle("POST /upload", m.UploadHandler("lines"))    // 202 + Status JSON
	mux.Handle("GET /jobs/{id}", m.StatusHandler())         // Status JSON
	mux.Handle("GET /jobs/{id}/events", m.EventsHandler())  // SSE: event "status"
	mux.Handle("POST /jobs/{id}/cancel", m.CancelHandler()) // 202, or 409 if finished
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}

// countLines is a Handler: it reads the uploaded file, reports progress
// as it goes, and returns the result that Status.Result will hold.
func countLines(ctx context.Context, job *jobs.Job) (any, error) {
	r, err := job.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var lines, read int64
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		lines += int64(bytes.Count(buf[:n], []byte("\n")))
		read += int64(n)
		if err == io.EOF {
			return map[string]int64{"lines": lines}, nil
		}
		if err != nil {
			return nil, err
		}
		if job.Size() > 0 {
			if err := job.Progress(ctx, int(read*100/job.Size())); err != nil {
				return nil, err
			}
		}
	}
}
