package workload

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// finalStates end a file job (jobs.State values).
var finalStates = map[string]bool{"done": true, "failed": true, "cancelled": true, "dead": true}

// upload sends one small text file and, once the server accepted it,
// follows its progress to the end in the background, as the upload page
// does.
func (u *user) upload(ctx context.Context, at time.Time) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", u.name+".txt")
	words := []string{"sticky", "store", "session", "cart", "crash", "drain", "balance", "instance"}
	for i := range u.d.cfg.UploadBytes / 8 {
		fmt.Fprintf(fw, "%s ", words[(i*7+int(u.m.ID))%len(words)])
	}
	mw.Close()
	ex := u.do(ctx, "upload", at, http.MethodPost, "/api/files", body.Bytes(), mw.FormDataContentType())
	var st struct {
		ID string `json:"id"`
	}
	if ex.status != http.StatusAccepted || json.Unmarshal(ex.body, &st) != nil || st.ID == "" {
		return
	}
	u.mu.Lock()
	u.led.uploads[st.ID] = uploadPending
	u.mu.Unlock()
	u.d.followers.Go(func() {
		u.follow(st.ID)
		select {
		case u.uploadEnded <- struct{}{}:
		default:
		}
	})
}

// follow reads the job's progress events until a final state, reconnecting
// (to whichever instance the balancer picks) when the stream breaks, as
// EventSource does. It stops when the run's settle time is over.
func (u *user) follow(id string) {
	ctx, cancel := context.WithDeadline(u.d.ctx, u.d.settleBy)
	defer cancel()
	path := "/api/files/" + url.PathEscape(id)
	attempt, notFound := 0, 0
	for ctx.Err() == nil {
		u.mu.Lock()
		st := u.led.uploads[id]
		u.mu.Unlock()
		if st != uploadPending {
			return // ended, or went with a lost session
		}
		state, status := u.events(ctx, path+"/events")
		switch {
		case finalStates[state]:
			u.finishUpload(id, state == "done")
			return
		case status == http.StatusNoContent:
			// The job ended while the stream was down: read its record.
			ex := u.do(ctx, "upload_status", time.Now(), http.MethodGet, path, nil, "")
			var js struct {
				State string `json:"state"`
			}
			if ex.status == http.StatusOK && json.Unmarshal(ex.body, &js) == nil && finalStates[js.State] {
				u.finishUpload(id, js.State == "done")
				return
			}
		case status == http.StatusNotFound:
			// Not this session's job: the session is gone (counted with
			// its uploads), or the job is. A copy of the session read a
			// moment too early (a cache catching up) says the same once,
			// so the job counts as lost only when three answers a while
			// apart agree.
			if u.checkMe(ctx, time.Now(), "me_check") {
				notFound++
				if notFound >= 3 {
					u.finishUpload(id, false)
					return
				}
			}
		default:
			notFound = 0
		}
		attempt++
		backoff := time.Duration(rand.Int64N(int64(min(2*time.Second, 100*time.Millisecond<<min(attempt, 5))) + 1))
		if notFound > 0 {
			backoff = max(backoff, 300*time.Millisecond)
		}
		if !sleepUntil(ctx, time.Now().Add(backoff)) {
			return
		}
	}
}

// events opens the job's Server-Sent Events stream and reads it until a
// final state or until it breaks. It returns the last state seen and the
// stream's HTTP status (0 without a response).
func (u *user) events(ctx context.Context, path string) (state string, status int) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.d.cfg.BaseURL+path, nil)
	if err != nil {
		return "", 0
	}
	req.Header.Set("Accept", "text/event-stream")
	rec := Request{Op: "upload_events", Scheduled: time.Now(), Sent: time.Now(), Stream: true}
	// In flight, for the ledger, until the head (and any cookie) is in.
	u.overlap()
	resp, err := u.http.Do(req)
	u.inflight.Add(-1)
	rec.Done = time.Now()
	if err != nil {
		if ctx.Err() == nil {
			rec.Err = classify(err)
			u.d.cfg.Recorder.Request(rec)
		}
		return "", 0
	}
	defer resp.Body.Close()
	rec.Status, rec.Instance = resp.StatusCode, resp.Header.Get("X-Unstuck-Instance")
	u.d.cfg.Recorder.Request(rec)
	if resp.StatusCode != http.StatusOK {
		return "", resp.StatusCode
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data:")
		if !ok {
			continue
		}
		var st struct {
			State string `json:"state"`
		}
		if json.Unmarshal([]byte(strings.TrimSpace(data)), &st) == nil && st.State != "" {
			state = st.State
			if finalStates[state] {
				return state, resp.StatusCode
			}
		}
	}
	return state, resp.StatusCode
}
