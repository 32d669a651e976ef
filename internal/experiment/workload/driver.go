package workload

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
)

// Config is one workload run against one system.
type Config struct {
	// BaseURL is the balancer, http://HOST:PORT. Required.
	BaseURL string
	// Params is the workload model: who the users are, what they do,
	// for how long. Required (start from model.Default or model.Quick).
	Params model.Params
	// Settle is how long after the run's duration it waits for the last
	// checks, chat deliveries and uploads to finish [10s].
	Settle time.Duration
	// ChatGrace is how long a message may take to reach everyone in the
	// room before it counts as lost [2s].
	ChatGrace time.Duration
	// RequestTimeout bounds every request [10s].
	RequestTimeout time.Duration
	// UploadBytes is the size of each uploaded file [4096].
	UploadBytes int
	// Recorder receives every request and loss. Required.
	Recorder Recorder
}

// Driver runs the users of one Config.
type Driver struct {
	cfg       Config
	params    *model.Params
	users     []model.User
	ctx       context.Context
	start     time.Time
	settleBy  time.Time
	transport *http.Transport
	products  []string
	room      room
	followers sync.WaitGroup

	mu      sync.Mutex
	running []*user
	active  atomic.Int64
	arrived atomic.Int64
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Driver, error) {
	switch {
	case cfg.BaseURL == "":
		return nil, errors.New("workload: BaseURL is required")
	case cfg.Recorder == nil:
		return nil, errors.New("workload: Recorder is required")
	}
	if err := cfg.Params.Validate(); err != nil {
		return nil, err
	}
	if cfg.Settle == 0 {
		cfg.Settle = 10 * time.Second
	}
	if cfg.ChatGrace == 0 {
		cfg.ChatGrace = 2 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.UploadBytes == 0 {
		cfg.UploadBytes = 4096
	}
	params := cfg.Params
	return &Driver{
		cfg:    cfg,
		params: &params,
		users:  Users(&params),
		// One connection pool for every user, as many as they need:
		// users are browsers, and the balancer routes each request by
		// its cookies, not by its connection.
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
			MaxIdleConns:        2048,
			MaxIdleConnsPerHost: 2048,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
	}, nil
}

// Active is the number of users in the system now.
func (d *Driver) Active() int { return int(d.active.Load()) }

// Arrived is the number of users that have arrived so far.
func (d *Driver) Arrived() int { return int(d.arrived.Load()) }

// Run plays every user from start (which may be a moment ahead, so
// everything is ready) until Duration has passed, then lets the last
// checks settle. It returns when every user and upload follower is done,
// or soon after ctx ends.
func (d *Driver) Run(ctx context.Context, start time.Time) error {
	defer d.transport.CloseIdleConnections()
	if err := d.loadProducts(ctx); err != nil {
		return err
	}
	end := start.Add(d.params.Duration)
	d.start, d.settleBy = start, end.Add(d.cfg.Settle)
	ctx, cancel := context.WithDeadline(ctx, d.settleBy)
	defer cancel()
	d.ctx = ctx

	var users sync.WaitGroup
	for _, m := range d.users {
		if !sleepUntil(ctx, start.Add(m.Start)) {
			break
		}
		u := newUser(d, m)
		d.mu.Lock()
		d.running = append(d.running, u)
		d.mu.Unlock()
		d.arrived.Add(1)
		d.active.Add(1)
		users.Go(func() {
			defer d.active.Add(-1)
			u.run(ctx, end)
		})
	}
	users.Wait()
	d.followers.Wait()
	if ctx.Err() != nil && time.Now().Before(d.settleBy) {
		return ctx.Err() // interrupted, not merely over
	}
	unfinished := 0
	d.mu.Lock()
	for _, u := range d.running {
		unfinished += u.unfinishedUploads()
	}
	d.mu.Unlock()
	if unfinished > 0 {
		d.cfg.Recorder.Loss(UploadsUnfinished, unfinished, end)
	}
	return nil
}

// loadProducts reads the catalogue once: the SKUs users add to carts.
func (d *Driver) loadProducts(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.cfg.BaseURL+"/api/products", nil)
	resp, err := (&http.Client{Transport: d.transport}).Do(req)
	if err != nil {
		return fmt.Errorf("workload: catalogue: %w", err)
	}
	defer resp.Body.Close()
	var ps []struct {
		SKU string `json:"sku"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &ps) != nil || len(ps) == 0 {
		return fmt.Errorf("workload: catalogue: %d %q", resp.StatusCode, body)
	}
	for _, p := range ps {
		d.products = append(d.products, p.SKU)
	}
	return nil
}

// Users returns the users of a run of p in order of arrival: those already
// active at the start, then the Poisson arrivals until the end.
func Users(p *model.Params) []model.User {
	pop := p.NewPopulation()
	users := make([]model.User, 0, p.Users)
	for i := range p.Users {
		users = append(users, pop.Initial(i))
	}
	for {
		u := pop.Next()
		if u.Start >= p.Duration {
			break
		}
		users = append(users, u)
	}
	slices.SortStableFunc(users, func(a, b model.User) int { return cmp.Compare(a.Start, b.Start) })
	return users
}
