package realtime_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/realtime/redisbroker"
)

// A hub on every instance, users authenticated by signed tokens, drained
// on SIGTERM.
func Example() {
	broker, err := redisbroker.New(context.Background(), redisbroker.Options{URL: "redis://127.0.0.1:6380"})
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	tokens := realtime.TokenAuth{Secret: []byte(os.Getenv("REALTIME_SECRET"))}
	hub, err := realtime.New(realtime.Config{Broker: broker, Authenticate: tokens.Authenticate})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/realtime/", hub) // ws, realtime.js and healthz
	mux.HandleFunc("POST /realtime-token", func(w http.ResponseWriter, r *http.Request) {
		user := r.Header.Get("X-User") // the app's session goes here
		tok, err := tokens.Issue(user, time.Minute)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write([]byte(tok))
	})
	mux.HandleFunc("POST /notify", func(w http.ResponseWriter, r *http.Request) {
		// Reaches every connection of alice, on whichever instance.
		hub.PublishToUser(r.Context(), "alice", []byte(`{"text":"your order shipped"}`))
	})
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.ListenAndServe()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	hub.Shutdown(ctx) // closes sockets with 1012 in batches over the drain window
	srv.Shutdown(ctx)
}
