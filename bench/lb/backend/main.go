// Command backend is the benchmark's app server: net/http answering every
// request with a 100-byte text body, as in ../../../../shared/ANCHORS.md.
package main

import (
	"flag"
	"log"
	"net/http"
	"strings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18101", "address to listen on")
	flag.Parse()
	body := []byte(strings.Repeat("x", 99) + "\n")
	log.Fatal(http.ListenAndServe(*listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})))
}
