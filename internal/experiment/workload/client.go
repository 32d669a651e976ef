package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

// maxBody bounds what a user reads of one answer: the shop's answers are
// small, and a runaway one must not eat the load generator's memory.
const maxBody = 1 << 20

// exchange is one HTTP request of a user and what came back.
type exchange struct {
	status   int
	instance string
	body     []byte
	header   http.Header
}

// do sends one request with the user's cookie jar and reports it. sched is
// when the user meant to send it.
func (u *user) do(parent context.Context, op string, sched time.Time, method, path string, body []byte, contentType string) exchange {
	ctx, cancel := context.WithTimeout(parent, u.d.cfg.RequestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.d.cfg.BaseURL+path, rd)
	if err != nil {
		return exchange{}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := Request{Op: op, Scheduled: sched, Sent: time.Now()}
	u.overlap()
	defer u.inflight.Add(-1)
	resp, err := u.http.Do(req)
	var ex exchange
	if err != nil {
		rec.Err = classify(err)
	} else {
		ex.status, ex.header = resp.StatusCode, resp.Header
		ex.instance = resp.Header.Get("X-Unstuck-Instance")
		ex.body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if err != nil {
			// The head came but the body broke: the exchange failed.
			rec.Err, ex.status = classify(err), 0
		}
		rec.Status, rec.Instance = ex.status, ex.instance
	}
	rec.Done = time.Now()
	if parent.Err() != nil {
		// The run is over or was interrupted: not the system's failure.
		return exchange{}
	}
	if u.muted.Load() {
		return ex
	}
	u.d.cfg.Recorder.Request(rec)
	return ex
}

// doJSON sends v as JSON (nil: no body).
func (u *user) doJSON(ctx context.Context, op string, sched time.Time, method, path string, v any) exchange {
	if v == nil {
		return u.do(ctx, op, sched, method, path, nil, "")
	}
	b, _ := json.Marshal(v)
	return u.do(ctx, op, sched, method, path, b, "application/json")
}

// classify names why a request got no response, for errors_by_status.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), strings.Contains(err.Error(), "EOF"):
		return "eof"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "error"
	}
}
