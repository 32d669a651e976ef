package realtime

import (
	"bytes"
	_ "embed"
	"net/http"
	"time"
)

//go:embed realtime.js
var clientJS []byte

var clientJSModTime = time.Now()

// ClientJS serves the JavaScript client, a plain ES module:
//
//	import { Realtime } from "/realtime/realtime.js";
func ClientJS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "realtime.js", clientJSModTime, bytes.NewReader(clientJS))
	})
}
