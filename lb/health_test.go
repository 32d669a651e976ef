package lb

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestProbeExpectedStatus(t *testing.T) {
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" || r.Header.Get("User-Agent") != "unstuck-lb-health" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, c := range []struct {
		status, want int
		ok           bool
	}{
		{204, 0, true},   // any 2xx/3xx
		{302, 0, true},   // a redirect is an answer, not followed
		{500, 0, false},  // 5xx
		{404, 0, false},  // 4xx
		{204, 204, true}, // exact
		{200, 204, false},
		{503, 503, true}, // whatever the operator says is healthy
	} {
		status.Store(int32(c.status))
		want := checkFail
		if c.ok {
			want = checkPass
		}
		if got, why := probe(ctx, srv.Client(), srv.URL+"/ready", c.want); got != want {
			t.Errorf("status %d, expected %d: %s (%s), want %s", c.status, c.want, got, why, want)
		}
	}
	srv.Close()
	if got, why := probe(ctx, srv.Client(), srv.URL+"/ready", 0); got != checkFail {
		t.Errorf("closed server: %s (%s), want %s", got, why, checkFail)
	}
}

// A backend that accepts the check and never answers is a timeout, told
// apart from one that refuses it.
func TestProbeTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	c := srv.Client()
	c.Timeout = 50 * time.Millisecond
	if got, why := probe(context.Background(), c, srv.URL+"/", 0); got != checkTimeout {
		t.Errorf("hanging backend: %s (%s), want %s", got, why, checkTimeout)
	}
}
