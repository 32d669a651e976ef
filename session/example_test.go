package session_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/unstuck-dev/unstuck/session"
	"github.com/unstuck-dev/unstuck/session/memstore"
)

func Example() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	sessions, err := session.New(session.Config{Store: store})
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
		n, err := session.Update(r.Context(), "cart", func(n int, _ bool) (int, error) { return n + 1, nil })
		if err != nil {
			return // the Manager answers 503 when the store is down
		}
		fmt.Fprintf(w, "%d items", n)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if session.RenewToken(r.Context()) != nil || session.SetUser(r.Context(), "alice") != nil {
			return
		}
		io.WriteString(w, "welcome")
	})
	srv := httptest.NewServer(sessions.Handler(mux))
	defer srv.Close()

	var cookie *http.Cookie
	post := func(path string) string {
		req, _ := http.NewRequest("POST", srv.URL+path, nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		for _, c := range resp.Cookies() {
			cookie = c
		}
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	fmt.Println(post("/cart"))
	fmt.Println(post("/cart"))
	fmt.Println(post("/login"))
	fmt.Println(post("/cart")) // the cart survived the token rotation
	infos, _ := sessions.SessionsOfUser(context.Background(), "alice")
	fmt.Println(len(infos), "session for alice")
	// Output:
	// 1 items
	// 2 items
	// welcome
	// 3 items
	// 1 session for alice
}
