package shop

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/session"
)

// jobsKey lists the IDs of the session's uploads, newest first, so the
// upload page shows them on any instance after a reload.
const jobsKey = "jobs"

// maxJobsListed bounds that list.
const maxJobsListed = 10

// FileStatus is the demo API's view of a job.
type FileStatus struct {
	ID       string          `json:"id"`
	State    jobs.State      `json:"state"`
	Progress int             `json:"progress"`
	Worker   string          `json:"worker,omitempty"`
	Attempt  int             `json:"attempt"`
	Filename string          `json:"filename,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
}

func fileStatus(st jobs.Status) FileStatus {
	return FileStatus{
		ID: st.ID, State: st.State, Progress: st.Percent, Worker: st.Worker,
		Attempt: st.Attempt, Filename: st.Filename, Result: st.Result, Error: st.Error,
	}
}

// apiUpload hands the upload to the jobs package's handler, which streams
// it into shared storage with its limits and answers 202 with the job; the
// shop then remembers the job's ID in the session.
func (s *Shop) apiUpload(w http.ResponseWriter, r *http.Request) {
	rec := &captureWriter{ResponseWriter: w}
	s.cfg.Jobs.UploadHandler(jobs.TextStatsKind).ServeHTTP(rec, r)
	if rec.status != http.StatusAccepted {
		return
	}
	var st jobs.Status
	if err := json.Unmarshal(rec.body.Bytes(), &st); err != nil || st.ID == "" {
		return
	}
	// The job exists whatever happens here; failing to list it on the
	// upload page is not worth failing the upload for.
	if _, err := session.Update(r.Context(), jobsKey, func(ids []string, _ bool) ([]string, error) {
		ids = slices.DeleteFunc(ids, func(id string) bool { return id == st.ID })
		ids = append([]string{st.ID}, ids...)
		return ids[:min(len(ids), maxJobsListed)], nil
	}); err != nil {
		s.log.Warn("could not list upload in session", "job", st.ID, "err", err)
	}
}

func (s *Shop) apiFileStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := storeCtx(r.Context())
	defer cancel()
	st, err := s.cfg.Jobs.Status(ctx, r.PathValue("id"))
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such file job")
	case err != nil:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "job store unavailable: "+err.Error())
	default:
		writeJSON(w, http.StatusOK, fileStatus(st))
	}
}

// captureWriter passes a response through while keeping its status and the
// start of its body (a job's JSON is small), so the shop can read the ID the
// jobs handler assigned.
type captureWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if room := 16<<10 - c.body.Len(); room > 0 {
		c.body.Write(b[:min(len(b), room)])
	}
	return c.ResponseWriter.Write(b)
}

func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
