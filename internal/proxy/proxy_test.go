package proxy

import (
	"fmt"
	"net/http"
	"testing"
)

func TestGetThroughProxy(t *testing.T) {
	_, u := backend(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s xff=%s host=%s", r.Method, r.URL.Path, r.Header.Get("X-Forwarded-For"), r.Host)
	})
	p := startProxy(t, &Server{Route: one(u)})
	res, body := get(t, p.addr, "/x")
	if res.StatusCode != 200 || body != "hello GET /x xff=127.0.0.1 host="+p.addr {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
}
