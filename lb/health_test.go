package lb

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
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
		if ok, why := probe(ctx, srv.Client(), srv.URL+"/ready", c.want); ok != c.ok {
			t.Errorf("status %d, expected %d: ok=%v (%s)", c.status, c.want, ok, why)
		}
	}
	srv.Close()
	if ok, _ := probe(ctx, srv.Client(), srv.URL+"/ready", 0); ok {
		t.Error("closed server passes")
	}
}
