package shop

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/unstuck-dev/unstuck/internal/shop/textstats"
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
// it into shared storage with its limits and answers with the job. That
// answer is held back until the job's ID is in the session: a session
// cannot change once the response has started.
func (s *Shop) apiUpload(w http.ResponseWriter, r *http.Request) {
	rec := &bufferedResponse{header: http.Header{}}
	s.cfg.Jobs.UploadHandler(textstats.Kind).ServeHTTP(rec, r)
	var st jobs.Status
	if rec.status == http.StatusAccepted && json.Unmarshal(rec.body.Bytes(), &st) == nil && st.ID != "" {
		if _, err := session.Update(r.Context(), jobsKey, func(ids []string, _ bool) ([]string, error) {
			ids = slices.DeleteFunc(ids, func(id string) bool { return id == st.ID })
			ids = append([]string{st.ID}, ids...)
			return ids[:min(len(ids), maxJobsListed)], nil
		}); err != nil {
			// The job exists whatever happens here. Not listing it on the
			// upload page is no reason to fail the upload, but a store
			// that could not answer fails the response anyway: the
			// session middleware answers with its ErrorHandler.
			s.log.Warn("could not list upload in session", "job", st.ID, "err", err)
		}
	}
	rec.writeTo(w)
}

// ownJob lets only the session that uploaded a job reach h: a job ID alone
// would let anyone who learns it watch someone else's file. The session is
// shared, so any instance can check.
func (s *Shop) ownJob(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids, _, err := session.Get[[]string](r.Context(), jobsKey)
		ok := slices.Contains(ids, r.PathValue("id"))
		if err != nil {
			s.sessionFailed(w, err)
			return
		}
		if !ok {
			writeError(w, http.StatusNotFound, "no such file job in this session")
			return
		}
		h.ServeHTTP(w, r)
	})
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

// bufferedResponse holds a small response (a job's JSON) so the shop can
// act on it before it is sent.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedResponse) writeTo(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}
