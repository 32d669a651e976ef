// Command backend is the benchmark's app server: net/http answering every
// request with a 100-byte text body, as in ../../../../shared/ANCHORS.md;
// ?n=BYTES (the whole query) asks for a body of that size instead (with Content-Length, up
// to 16 MiB), for bench/lb/large.sh. A request body is read and dropped.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18101", "address to listen on")
	flag.Parse()
	body := []byte(strings.Repeat("x", 99) + "\n")
	big := []byte(strings.Repeat("y", 16<<20))
	log.Fatal(http.ListenAndServe(*listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		if q := r.URL.RawQuery; strings.HasPrefix(q, "n=") {
			q = q[2:]
			n, err := strconv.Atoi(q)
			if err != nil || n < 0 || n > len(big) {
				http.Error(w, "n: 0 to 16 MiB", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Length", q)
			w.Write(big[:n])
			return
		}
		w.Write(body)
	})))
}
