package jobs_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/shop/textstats"
	"github.com/unstuck-dev/unstuck/internal/testenv"

	"github.com/unstuck-dev/unstuck/jobs"
)

func mux(m *jobs.Manager, kind string) *http.ServeMux {
	mx := http.NewServeMux()
	mx.Handle("/upload", m.UploadHandler(kind))
	mx.Handle("GET /jobs/{id}", m.StatusHandler())
	mx.Handle("GET /jobs/{id}/events", m.EventsHandler())
	mx.Handle("/jobs/{id}/cancel", m.CancelHandler())
	mx.Handle("/jobs/{id}/requeue", m.RequeueHandler())
	return mx
}

// multipartBody builds a form with the given field holding content.
func multipartBody(t testing.TB, field, content string) (body *bytes.Buffer, contentType string) {
	t.Helper()
	body = &bytes.Buffer{}
	w := multipart.NewWriter(body)
	if err := w.WriteField("note", "ignored"); err != nil {
		t.Fatal(err)
	}
	fw, err := w.CreateFormFile(field, `C:\Users\me\notes.txt`)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(fw, content)
	w.Close()
	return body, w.FormDataContentType()
}

type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// TestUploadRejectsBadInput: every kind of bad upload gets a 4xx with a
// JSON error naming the problem, and storage is left empty.
func TestUploadRejectsBadInput(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			m := newManager(t, s, jobs.Config{MaxPayloadBytes: 1000})
			srv := httptest.NewServer(mux(m, textstats.Kind))
			defer srv.Close()

			big, bigType := multipartBody(t, "file", strings.Repeat("a", 5000))
			huge, hugeType := multipartBody(t, "file", strings.Repeat("a", 100_000)) // over the body limit too
			empty, emptyType := multipartBody(t, "file", "")
			noFile, noFileType := multipartBody(t, "other", "hello")
			ok, okType := multipartBody(t, "file", strings.Repeat("b", 800))
			cutBoundary := bytes.NewBuffer(ok.Bytes()[:ok.Len()-60]) // cut inside the closing boundary
			cutFile := bytes.NewBuffer(ok.Bytes()[:ok.Len()-100])    // cut inside the file
			cases := []struct {
				name, method, ctype string
				body                io.Reader
				status              int
				code                string
			}{
				{"wrong method", "GET", okType, nil, 405, "method_not_allowed"},
				{"not multipart", "POST", "application/json", strings.NewReader(`{"file":"x"}`), 415, "not_multipart"},
				{"no boundary", "POST", "multipart/form-data", strings.NewReader("x"), 415, "not_multipart"},
				{"no file field", "POST", noFileType, noFile, 400, "missing_file"},
				{"empty file", "POST", emptyType, empty, 400, "empty_file"},
				{"oversized", "POST", bigType, big, 413, "too_large"},
				{"oversized body", "POST", hugeType, huge, 413, "too_large"},
				{"oversized, unannounced", "POST", hugeType, io.MultiReader(bytes.NewReader(huge.Bytes())), 413, "too_large"},
				{"cut in boundary", "POST", okType, cutBoundary, 400, "malformed_upload"},
				{"cut in file", "POST", okType, cutFile, 400, "malformed_upload"},
				{"garbage", "POST", okType, strings.NewReader("this is not multipart at all"), 400, "malformed_upload"},
			}
			for _, c := range cases {
				req, _ := http.NewRequest(c.method, srv.URL+"/upload", c.body)
				req.Header.Set("Content-Type", c.ctype)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				var e apiError
				err = json.NewDecoder(resp.Body).Decode(&e)
				resp.Body.Close()
				if resp.StatusCode != c.status || err != nil || e.Code != c.code || e.Error == "" {
					t.Errorf("%s: %d %+v (%v), want %d %s", c.name, resp.StatusCode, e, err, c.status, c.code)
				}
			}
			assertNoPayloads(t, s)
			assertNoRecords(t, s)
		})
	}
}

// TestHTTPFromAnyInstance: upload to one instance, read the status, the
// SSE progress and cancel through others.
func TestHTTPFromAnyInstance(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			a := httptest.NewServer(mux(newManager(t, s, jobs.Config{}), "gated"))
			defer a.Close()
			b := httptest.NewServer(mux(newManager(t, s, jobs.Config{}), "gated"))
			defer b.Close()

			body, ctype := multipartBody(t, "file", "some text\n")
			resp, err := http.Post(a.URL+"/upload", ctype, body)
			if err != nil {
				t.Fatal(err)
			}
			var st jobs.Status
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if resp.StatusCode != 202 || st.State != jobs.Queued || st.Filename != "notes.txt" || st.Size != 10 {
				t.Fatalf("upload: %d %+v", resp.StatusCode, st)
			}

			// SSE from instance b, while a worker on a third instance runs.
			events, err := http.Get(b.URL + "/jobs/" + st.ID + "/events")
			if err != nil {
				t.Fatal(err)
			}
			defer events.Body.Close()
			if ct := events.Header.Get("Content-Type"); events.StatusCode != 200 || ct != "text/event-stream" {
				t.Fatalf("events: %d %s", events.StatusCode, ct)
			}
			sse := sseReader{r: bufio.NewReader(events.Body)}
			if first := sse.next(t); first.State != jobs.Queued {
				t.Fatalf("first event %+v", first)
			}

			release := make(chan struct{})
			worker := newManager(t, s, jobs.Config{Worker: "w3"})
			worker.Handle("gated", func(ctx context.Context, j *jobs.Job) (any, error) {
				if err := j.Progress(ctx, 50); err != nil {
					return nil, err
				}
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return "ok", nil
			})
			run(t, worker)
			last := jobs.Status{}
			for last.State != jobs.Running || last.Percent != 50 {
				ev := sse.next(t)
				if ev.Revision <= last.Revision && last.Revision != 0 {
					t.Fatalf("revision went from %d to %d", last.Revision, ev.Revision)
				}
				last = ev
			}
			if last.Worker != "w3" {
				t.Fatalf("running event %+v", last)
			}

			// The JSON status agrees on instance a.
			resp, err = http.Get(a.URL + "/jobs/" + st.ID)
			if err != nil {
				t.Fatal(err)
			}
			var polled jobs.Status
			json.NewDecoder(resp.Body).Decode(&polled)
			resp.Body.Close()
			if resp.StatusCode != 200 || polled.State != jobs.Running || polled.Percent != 50 {
				t.Fatalf("status: %d %+v", resp.StatusCode, polled)
			}

			close(release)
			for last.State != jobs.Done {
				last = sse.next(t)
			}
			if string(last.Result) != `"ok"` || last.Percent != 100 {
				t.Fatalf("final event %+v", last)
			}
			// The stream ends after the final state.
			if rest, _ := io.ReadAll(sse.r); len(bytes.TrimSpace(rest)) != 0 {
				t.Fatalf("data after the final event: %q", rest)
			}

			// EventSource reconnects after the stream ends, sending the
			// last event ID: it is told to stop with 204.
			req, _ := http.NewRequest("GET", a.URL+"/jobs/"+st.ID+"/events", nil)
			req.Header.Set("Last-Event-ID", strconv.FormatUint(last.Revision, 10))
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("reconnect after the final event: %d, want 204", resp.StatusCode)
			}
			// An older or garbled Last-Event-ID gets the final state again.
			for _, id := range []string{"1", "garbage", "-5"} {
				req.Header.Set("Last-Event-ID", id)
				resp, err = http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				ev := sseReader{r: bufio.NewReader(resp.Body)}.next(t)
				resp.Body.Close()
				if ev.State != jobs.Done {
					t.Fatalf("Last-Event-ID %q: event %+v", id, ev)
				}
			}

			// Cancelling a finished job is a conflict; unknown jobs are 404.
			resp, _ = http.Post(b.URL+"/jobs/"+st.ID+"/cancel", "", nil)
			resp.Body.Close()
			if resp.StatusCode != http.StatusConflict {
				t.Fatalf("cancel finished: %d", resp.StatusCode)
			}
			for _, u := range []string{a.URL + "/jobs/nope", a.URL + "/jobs/nope/events", a.URL + "/jobs/" + strings.Repeat("z", 100)} {
				resp, _ = http.Get(u)
				var e apiError
				json.NewDecoder(resp.Body).Decode(&e)
				resp.Body.Close()
				if resp.StatusCode != 404 || e.Code != "not_found" {
					t.Fatalf("%s: %d %+v", u, resp.StatusCode, e)
				}
			}
		})
	}
}

// TestEventStreamIsBounded: the SSE response for a job that never moves
// still ends, after MaxEventStream.
func TestEventStreamIsBounded(t *testing.T) {
	s := stores(t)[1].fresh()
	m := newManager(t, s, jobs.Config{MaxEventStream: 100 * time.Millisecond})
	srv := httptest.NewServer(mux(m, "k"))
	defer srv.Close()
	st := submit(t, m, "k", "x")
	resp, err := http.Get(srv.URL + "/jobs/" + st.ID + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sse := sseReader{r: bufio.NewReader(resp.Body)}
	if ev := sse.next(t); ev.State != jobs.Queued {
		t.Fatalf("event %+v", ev)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatalf("stream ended with %v, want a clean end", err)
	}
}

// TestEndStreamsLetsShutdownFinish: a graceful server shutdown does not
// wait for event streams of jobs that are still running; the streams end
// cleanly, so EventSource reconnects to another instance.
func TestEndStreamsLetsShutdownFinish(t *testing.T) {
	s := stores(t)[1].fresh()
	m := newManager(t, s, jobs.Config{})
	srv := httptest.NewUnstartedServer(mux(m, "k"))
	srv.Config.RegisterOnShutdown(m.EndStreams)
	srv.Start()
	defer srv.Close()
	st := submit(t, m, "k", "x")
	resp, err := http.Get(srv.URL + "/jobs/" + st.ID + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sse := sseReader{r: bufio.NewReader(resp.Body)}
	if ev := sse.next(t); ev.State != jobs.Queued {
		t.Fatalf("event %+v", ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v; the event stream held it", err)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatalf("stream ended with %v, want a clean end", err)
	}
}

// TestCancelHandler cancels a queued job over HTTP.
func TestCancelHandler(t *testing.T) {
	s := stores(t)[1].fresh()
	m := newManager(t, s, jobs.Config{})
	srv := httptest.NewServer(mux(m, "k"))
	defer srv.Close()
	st := submit(t, m, "k", "x")
	resp, err := http.Post(srv.URL+"/jobs/"+st.ID+"/cancel", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got jobs.Status
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 202 || got.State != jobs.Cancelled {
		t.Fatalf("cancel: %d %+v", resp.StatusCode, got)
	}
}

type sseReader struct{ r *bufio.Reader }

// next reads one "status" event.
func (s sseReader) next(t *testing.T) jobs.Status {
	t.Helper()
	var event, data string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		case line == "" && event == "status":
			var st jobs.Status
			if err := json.Unmarshal([]byte(data), &st); err != nil {
				t.Fatalf("event data %q: %v", data, err)
			}
			return st
		}
	}
}

// TestDirPayloads keeps payloads in a directory while the queue and status
// live in Redis; finished and refused uploads leave the directory empty.
func TestDirPayloads(t *testing.T) {
	s := stores(t)[1].fresh()
	dir := t.TempDir()
	payloads, err := jobs.NewDirPayloads(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(t, s, jobs.Config{Payloads: payloads, MaxPayloadBytes: 100_000})
	m.Handle(textstats.Kind, textstats.Job{}.Handle)
	srv := httptest.NewServer(mux(m, textstats.Kind))
	defer srv.Close()

	big, bigType := multipartBody(t, "file", strings.Repeat("a", 100_001))
	resp, err := http.Post(srv.URL+"/upload", bigType, big)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("oversized: %d", resp.StatusCode)
	}
	assertDirEmpty(t, dir)

	text := sampleText(300)
	st := submit(t, m, textstats.Kind, text)
	assertDirFiles(t, dir, 1)
	run(t, m)
	done := waitState(t, m, st.ID, jobs.Done)
	if got := decodeStats(t, done); got.SHA256 != wantStats(text).SHA256 {
		t.Fatalf("result %+v", got)
	}
	// The payload goes just after the final state is recorded.
	testenv.Eventually(t, 10*time.Second, func() error {
		entries, err := os.ReadDir(dir)
		if err == nil && len(entries) != 0 {
			err = fmt.Errorf("payload dir still holds %d files", len(entries))
		}
		return err
	})
}

func assertDirEmpty(t *testing.T, dir string) { t.Helper(); assertDirFiles(t, dir, 0) }

func assertDirFiles(t *testing.T, dir string, n int) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		t.Fatalf("payload dir holds %v, want %d files", names, n)
	}
}
