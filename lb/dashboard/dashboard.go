package dashboard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/unstuck-dev/unstuck/lb"
)

// Options configure a Dashboard. The zero value suits a loopback admin
// listener without a token.
type Options struct {
	// Token is the admin token. When set, the dashboard's data (the
	// server-rendered table and the live stream) is shown only to requests
	// carrying "Authorization: Bearer TOKEN", or HTTP Basic credentials
	// with the token as password (so a browser without JavaScript can sign
	// in); the page asks the operator for it and keeps it in the tab's
	// sessionStorage to call the admin API. It is never written into a page.
	Token string
	// Admin, when set, serves /api/ and /metrics: typically
	// bl.AdminHandler(token), so the dashboard and the API it calls share
	// one listener and one handler. Cross-site browser requests that would
	// change something (a forged form POST) are refused with 403.
	Admin http.Handler
	// APIPath is where the page sends admin API calls ["/api"]: change it
	// when the admin handler is mounted under a prefix.
	APIPath string
	// Interval is how often the balancer is sampled [1s]. Shorter values
	// are raised to 1s: the page gets at most one update a second.
	Interval time.Duration
	// History is how many samples the chart keeps [300, five minutes at
	// the default interval].
	History int
	// MaxStreams bounds the live streams served at once [64]; more get 503.
	MaxStreams int
	// Context, when done, stops the sampler as Close does. Nil means
	// context.Background(): only Close stops it.
	Context context.Context
	// Logger receives sampling errors; nil means slog.Default().
	Logger *slog.Logger
}

// minUpdate is the shortest gap between two updates a page receives.
const minUpdate = time.Second

// Dashboard serves the dashboard:
//
//	GET /                       the page (server-rendered, then live)
//	GET /dashboard/events       Server-Sent Events, at most one a second
//	GET /dashboard/static/...   the page's script and style (embedded)
//	/api/..., /metrics          Options.Admin, when set
//
// It samples the balancer in a goroutine that Close (or the end of
// Options.Context) stops. The page refers to its assets and stream by
// relative URLs, so it also works mounted under a prefix with
// http.StripPrefix (set Options.APIPath to match).
type Dashboard struct {
	bl      *lb.Balancer
	opts    Options
	s       *sampler
	mux     *http.ServeMux
	log     *slog.Logger
	tokenH  [sha256.Size]byte
	streams chan struct{} // a slot per live stream

	errMu   sync.Mutex
	lastErr string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

var _ http.Handler = (*Dashboard)(nil)

//go:embed static
var staticFS embed.FS

// New starts sampling bl and returns the dashboard's handler. The first
// sample is taken before New returns, so the page is never empty.
func New(bl *lb.Balancer, opts Options) *Dashboard {
	if opts.Interval < minUpdate {
		opts.Interval = minUpdate
	}
	if opts.History <= 0 {
		opts.History = 300
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 64
	}
	if opts.APIPath == "" {
		opts.APIPath = "/api"
	}
	opts.APIPath = strings.TrimRight(opts.APIPath, "/")
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Dashboard{
		bl:      bl,
		opts:    opts,
		s:       newSampler(opts.History, opts.Interval),
		log:     opts.Logger,
		streams: make(chan struct{}, opts.MaxStreams),
	}
	if opts.Token != "" {
		d.tokenH = sha256.Sum256([]byte(opts.Token))
	}
	d.ctx, d.cancel = context.WithCancel(opts.Context)
	d.sampleOnce()

	static, _ := fs.Sub(staticFS, "static")
	d.mux = http.NewServeMux()
	d.mux.HandleFunc("GET /{$}", d.servePage)
	d.mux.HandleFunc("GET /dashboard/events", d.serveEvents)
	d.mux.Handle("GET /dashboard/static/", http.StripPrefix("/dashboard/static/", cacheStatic(http.FileServerFS(static))))
	if opts.Admin != nil {
		// Without a token, any web page the operator visits could POST a
		// drain to a loopback admin API (a form needs no preflight);
		// browsers say where a request comes from, so refuse cross-site
		// changes. curl and other non-browser clients are unaffected.
		admin := http.NewCrossOriginProtection().Handler(opts.Admin)
		d.mux.Handle("/api/", admin)
		d.mux.Handle("/metrics", admin)
	}

	d.wg.Add(1)
	go d.loop()
	return d
}

// ServeHTTP serves the dashboard's routes.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.mux.ServeHTTP(w, r) }

// Close stops the sampler and ends the live streams. Safe to call more
// than once.
func (d *Dashboard) Close() error {
	d.once.Do(func() {
		d.cancel()
		d.wg.Wait()
	})
	return nil
}

func (d *Dashboard) loop() {
	defer d.wg.Done()
	t := time.NewTicker(d.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			d.sampleOnce()
		}
	}
}

func (d *Dashboard) sampleOnce() {
	err := d.s.sample(d.bl)
	// Log a failing read once, not every second, and say when it heals.
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	d.errMu.Lock()
	changed := msg != d.lastErr
	d.lastErr = msg
	d.errMu.Unlock()
	switch {
	case changed && err != nil:
		d.log.Warn("dashboard: reading the balancer's metrics", "err", err)
	case changed:
		d.log.Info("dashboard: reading the balancer's metrics works again")
	}
}

// authorized says whether r may see the dashboard's data: always without
// a token, else with the token as bearer or as Basic password. Both sides
// are hashed first so the comparison is constant-time in length too.
func (d *Dashboard) authorized(r *http.Request) bool {
	if d.opts.Token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		_, got, ok = r.BasicAuth()
	}
	if !ok {
		return false
	}
	h := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(h[:], d.tokenH[:]) == 1
}

// securityHeaders keep the page to its own origin: no inline script, no
// framing, no referrer leaking the admin address.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		// The assets change only with the binary; a short cache keeps
		// reloads cheap without pinning an old script after an upgrade.
		w.Header().Set("Cache-Control", "max-age=300")
		h.ServeHTTP(w, r)
	})
}
