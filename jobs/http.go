package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The HTTP handlers take the job ID from the route's {id} wildcard, or
// else from the "id" query parameter, so that they mount on any ServeMux
// pattern:
//
//	mux.Handle("POST /upload", m.UploadHandler("textstats"))
//	mux.Handle("GET /jobs/{id}", m.StatusHandler())
//	mux.Handle("GET /jobs/{id}/events", m.EventsHandler())
//	mux.Handle("POST /jobs/{id}/cancel", m.CancelHandler())
//
// Errors are JSON objects {"error": "...", "code": "..."} with a 4xx status
// for the client's mistakes and 503 when the store is unreachable.

// maxFormOverhead is what a multipart body may carry beyond the file:
// boundaries, part headers and a few small fields.
const maxFormOverhead = 64 << 10

// UploadHandler accepts a POST of multipart/form-data whose field "file"
// holds the payload, streams it into shared storage and queues a job of
// kind. It answers 202 with the job's Status. An Idempotency-Key header
// makes retried uploads return the first job. An empty, oversized or
// malformed upload gets a 4xx and leaves nothing in storage.
func (m *Manager) UploadHandler(kind string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
			return
		}
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
			writeError(w, http.StatusUnsupportedMediaType, "not_multipart", "the body must be multipart/form-data with a boundary")
			return
		}
		limit := m.cfg.MaxPayloadBytes + maxFormOverhead
		if r.ContentLength > limit {
			// Refuse before reading a byte of a body announced too big.
			m.uploadFailed(w, ErrTooLarge, true)
			return
		}
		body := http.MaxBytesReader(w, r.Body, limit)
		mr := multipart.NewReader(body, params["boundary"])
		for parts := 0; ; parts++ {
			part, err := mr.NextPart()
			if err == io.EOF || parts >= 16 {
				writeError(w, http.StatusBadRequest, "missing_file", `no multipart field "file"`)
				return
			}
			if err != nil {
				m.uploadFailed(w, err, true)
				return
			}
			if part.FormName() != "file" {
				// Small fields are allowed (and ignored); the body limit
				// bounds them.
				if _, err := io.Copy(io.Discard, part); err != nil {
					m.uploadFailed(w, err, true)
					return
				}
				continue
			}
			src := &recordingReader{r: part}
			st, err := m.Submit(r.Context(), kind, src, SubmitOptions{
				Filename:       cleanFilename(part.FileName()),
				IdempotencyKey: r.Header.Get("Idempotency-Key"),
			})
			if err != nil {
				m.uploadFailed(w, err, src.err != nil)
				return
			}
			writeJSON(w, http.StatusAccepted, st)
			return
		}
	})
}

// uploadFailed maps an upload error to a status: the client's fault (its
// body was empty, too big or broken) is 4xx; the store's is 503.
func (m *Manager) uploadFailed(w http.ResponseWriter, err error, clientRead bool) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, ErrEmpty):
		writeError(w, http.StatusBadRequest, "empty_file", "the uploaded file is empty")
	case errors.Is(err, ErrTooLarge) || errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large",
			fmt.Sprintf("the upload exceeds the limit of %d bytes", m.cfg.MaxPayloadBytes))
	case errors.Is(err, ErrUnknownKind):
		writeError(w, http.StatusInternalServerError, "bad_kind", err.Error())
	case clientRead:
		writeError(w, http.StatusBadRequest, "malformed_upload", "malformed multipart body: "+err.Error())
	default:
		m.log.Error("jobs: upload failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "job storage is unavailable, try again")
	}
}

// recordingReader remembers the error of the client's body, so that a
// failed Submit can be blamed on the client or on the store.
type recordingReader struct {
	r   io.Reader
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// cleanFilename keeps the last element of a client's file name, for
// display: browsers on Windows send full paths, and a hostile client may
// send anything.
func cleanFilename(name string) string {
	name = strings.ToValidUTF8(name, "")
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, name)
	name = filepath.Base(strings.ReplaceAll(name, `\`, "/"))
	if name == "." || name == ".." || name == "/" {
		return ""
	}
	return truncate(name, maxNameBytes)
}

// StatusHandler answers GET with the job's Status as JSON, from whatever
// instance serves the request.
func (m *Manager) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), m.cfg.StoreTimeout)
		defer cancel()
		st, err := m.Status(ctx, jobID(r))
		if err != nil {
			m.storeFailed(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
}

// CancelHandler cancels the job on POST and answers 202 with its Status;
// 409 if it already finished.
func (m *Manager) CancelHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodDelete {
			w.Header().Set("Allow", "POST, DELETE")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), m.cfg.StoreTimeout)
		defer cancel()
		st, err := m.Cancel(ctx, jobID(r))
		if errors.Is(err, ErrFinished) {
			writeError(w, http.StatusConflict, "finished", fmt.Sprintf("the job is already %s", st.State))
			return
		}
		if err != nil {
			m.storeFailed(w, err)
			return
		}
		writeJSON(w, http.StatusAccepted, st)
	})
}

// RequeueHandler runs a failed or dead job again on POST (Manager.Requeue)
// and answers 202 with its Status; 409 for any other job. It is an
// operator's action: mount it behind the app's admin authentication.
func (m *Manager) RequeueHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), m.cfg.StoreTimeout)
		defer cancel()
		st, err := m.Requeue(ctx, jobID(r))
		if errors.Is(err, ErrNotRetryable) {
			writeError(w, http.StatusConflict, "not_retryable", err.Error())
			return
		}
		if err != nil {
			m.storeFailed(w, err)
			return
		}
		writeJSON(w, http.StatusAccepted, st)
	})
}

// EventsHandler streams the job's Status as Server-Sent Events ("event:
// status", the revision as the event ID) on every change, from whatever
// instance serves the request, and ends the stream after the final state.
// A browser subscribes with new EventSource(url); after a reconnect it
// receives the current status first. A stream lasts at most
// Config.MaxEventStream, or until EndStreams, after which EventSource
// reconnects. When it reconnects after the final event (its Last-Event-ID
// is the final revision) it gets 204 No Content, which tells EventSource
// to stop.
func (m *Manager) EventsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		if seen, err := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64); err == nil {
			// A reconnecting EventSource that already has the final
			// state: 204 is the one answer that stops it reconnecting.
			if st, err := m.Status(ctx, jobID(r)); err == nil && st.State.Final() && seen >= st.Revision {
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		updates, err := m.Watch(ctx, jobID(r))
		if err != nil {
			m.storeFailed(w, err)
			return
		}
		rc := http.NewResponseController(w)
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no") // proxies must not buffer the stream
		w.WriteHeader(http.StatusOK)
		// A server WriteTimeout would cut a long stream; extend it per write.
		write := func(s string) bool {
			_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.WriteString(w, s); err != nil {
				return false
			}
			return rc.Flush() == nil
		}
		send := func(st Status) bool {
			b, _ := json.Marshal(st)
			return write("retry: 2000\nid: " + strconv.FormatUint(st.Revision, 10) + "\nevent: status\ndata: " + string(b) + "\n\n")
		}
		// Watch hands over the current status at once: send it before
		// anything else can end the stream.
		if st, ok := <-updates; !ok || !send(st) {
			return
		}
		ping := time.NewTicker(15 * time.Second)
		defer ping.Stop()
		// The bound counts from the first byte sent, not from the
		// request, so slow store lookups cannot eat the stream.
		end := time.NewTimer(m.cfg.MaxEventStream)
		defer end.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-end.C:
				return
			case <-m.streamsEnd:
				return
			case <-ping.C:
				if !write(": ping\n\n") {
					return
				}
			case st, ok := <-updates:
				if !ok {
					return
				}
				if !send(st) {
					return
				}
			}
		}
	})
}

func (m *Manager) storeFailed(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such job")
		return
	}
	m.log.Error("jobs: store failed", "err", err)
	writeError(w, http.StatusServiceUnavailable, "store_unavailable", "job storage is unavailable, try again")
}

func jobID(r *http.Request) string {
	if id := r.PathValue("id"); id != "" {
		return id
	}
	return r.URL.Query().Get("id")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, map[string]string{"error": msg, "code": kind})
}
