// Package shop is the demo's web shop: login, cart, file processing and a
// chat room, written the way the project recommends. It keeps no user state
// in its own memory: the session lives in the session store, uploads in the
// jobs queue and chat in the realtime backplane, so any instance can serve
// any request and a crashed instance loses nobody's state.
package shop

import (
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/unstuck-dev/unstuck/jobs"
	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/session"
)

// ChatChannel is the one chat room's realtime channel.
const ChatChannel = "chat:lobby"

// Config wires a shop instance to the shared parts. Sessions, Jobs, Hub and
// Broker are required.
type Config struct {
	// Instance names this instance; every response carries it in the
	// X-Unstuck-Instance header and every page shows it.
	Instance string
	// Sessions keeps logins and carts.
	Sessions *session.Manager
	// Jobs processes uploads.
	Jobs *jobs.Manager
	// Hub serves the chat WebSocket at /ws; Broker is its backplane, read
	// directly for the chat history API.
	Hub    *realtime.Hub
	Broker realtime.Broker
	// StoreKind is shown on pages ("nats", "redis", "memory").
	StoreKind string
	// Sticky tells pages that sessions live only on this instance.
	Sticky bool
	// Control is the demo's control API base URL (http://127.0.0.1:9090),
	// for the page's chaos buttons; empty disables them.
	Control string
	// Logger receives request errors. Default slog.Default().
	Logger *slog.Logger
}

// Shop is one instance's HTTP handler.
type Shop struct {
	cfg     Config
	pages   pages
	control *controlClient
	log     *slog.Logger
	handler http.Handler
}

// New builds the shop's routes.
func New(cfg Config) (*Shop, error) {
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Shop{
		cfg:     cfg,
		pages:   p,
		control: &controlClient{base: cfg.Control, self: cfg.Instance, client: &http.Client{Timeout: 30 * time.Second}},
		log:     cfg.Logger,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	static, _ := fs.Sub(staticFS, "web/static")

	// Routes that never touch the session stay outside its middleware, so
	// health checks and assets cost no store call.
	outer := http.NewServeMux()
	outer.HandleFunc("GET /healthz", s.healthz)
	outer.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	outer.Handle("GET /realtime.js", cfg.Hub)
	outer.HandleFunc("GET /api/products", s.products)
	outer.HandleFunc("GET /api/fleet", s.control.list)
	outer.HandleFunc("POST /api/fleet", s.control.add)
	outer.HandleFunc("POST /api/fleet/{name}/{action}", s.control.act)

	inner := http.NewServeMux()
	// Pages.
	inner.HandleFunc("GET /{$}", s.pageHandler("home", "Products", fillHome))
	inner.HandleFunc("GET /login", s.pageHandler("login", "Log in", nil))
	inner.HandleFunc("POST /login", s.loginForm)
	inner.HandleFunc("POST /logout", s.logoutForm)
	inner.HandleFunc("GET /cart", s.pageHandler("cart", "Cart", fillCart))
	inner.HandleFunc("POST /cart/add", s.cartAddForm)
	inner.HandleFunc("POST /cart/set", s.cartSetForm)
	inner.HandleFunc("POST /cart/remove", s.cartRemoveForm)
	inner.HandleFunc("GET /upload", s.pageHandler("upload", "Upload", fillUpload))
	inner.HandleFunc("GET /chat", s.pageHandler("chat", "Chat", nil))
	inner.HandleFunc("POST /chat", s.chatForm)
	// JSON API.
	inner.HandleFunc("POST /api/login", s.apiLogin)
	inner.HandleFunc("POST /api/logout", s.apiLogout)
	inner.HandleFunc("GET /api/me", s.apiMe)
	inner.HandleFunc("GET /api/cart", s.apiCart)
	inner.HandleFunc("POST /api/cart/items", s.apiCartAdd)
	inner.HandleFunc("DELETE /api/cart/items/{sku}", s.apiCartDelete)
	inner.HandleFunc("POST /api/files", s.apiUpload)
	inner.Handle("GET /api/files/{id}", s.ownJob(http.HandlerFunc(s.apiFileStatus)))
	// Job progress is pushed (Server-Sent Events) by whichever instance the
	// browser reaches; when it dies, EventSource reconnects to another.
	inner.Handle("GET /api/files/{id}/events", s.ownJob(cfg.Jobs.EventsHandler()))
	inner.HandleFunc("POST /api/chat/messages", s.apiChatPost)
	inner.HandleFunc("GET /api/chat/messages", s.apiChatList)
	// The realtime hub authenticates from the session itself.
	inner.Handle("GET /ws", cfg.Hub)
	outer.Handle("/", cfg.Sessions.Handler(inner))

	s.handler = outer
	return s, nil
}

// ServeHTTP tags every response with the instance that served it.
func (s *Shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Unstuck-Instance", s.cfg.Instance)
	s.handler.ServeHTTP(w, r)
}

func (s *Shop) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok " + s.cfg.Instance + "\n"))
}

func (s *Shop) products(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, catalogue)
}

// Authenticate is the realtime hub's Authenticate hook: the user bound to
// the request's session. It runs inside the session middleware (the hub is
// mounted there), so it reads the same shared session as every page.
func Authenticate(r *http.Request) (string, error) {
	user, err := session.User(r.Context())
	if err != nil {
		return "", err
	}
	if user == "" {
		return "", errNotLoggedIn
	}
	return user, nil
}

type shopError string

func (e shopError) Error() string { return string(e) }

const errNotLoggedIn = shopError("not logged in")

// storeCtx bounds a call the shop makes to a shared part outside the
// session middleware's own deadline.
func storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 5*time.Second)
}
