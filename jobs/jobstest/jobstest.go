// Package jobstest checks that a jobs.Backend keeps the guarantees that
// package jobs documents for PayloadStore, RecordStore and Queue. Every
// backend in this module runs it; so can a third-party one:
//
//	func TestConformance(t *testing.T) {
//		jobstest.Run(t, func(t *testing.T) jobs.Backend { return newBackend(t) })
//	}
//
// A backend on a server also passes RunWith with Options.Restart: the
// first call of every kind after a server restart must succeed.
package jobstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/jobs"
)

// Run runs the conformance tests. open must return a backend on an empty
// namespace each time it is called (a fresh prefix or server) whose
// VisibilityTimeout is short (about a second), so the suite stays quick;
// calling it twice in one test must give two clients of the same store.
func Run(t *testing.T, open func(t *testing.T) jobs.Backend) {
	RunWith(t, open, Options{})
}

// Options adapt RunWith to a backend's server.
type Options struct {
	// Restart kills the server that open's backends talk to and starts
	// it again on the same address, with its data, returning once it
	// answers. With it, the suite checks that the first call of every
	// kind after a restart succeeds: a connection that died with the old
	// server must not fail a request that could have succeeded. No other
	// test may use the server meanwhile.
	Restart func()
}

// RunWith is Run with the checks that need o.
func RunWith(t *testing.T, open func(t *testing.T) jobs.Backend, o Options) {
	t.Run("Payloads", func(t *testing.T) { testPayloads(t, open(t)) })
	t.Run("Records", func(t *testing.T) { testRecords(t, open(t)) })
	t.Run("Queue", func(t *testing.T) { testQueue(t, open) })
	t.Run("FirstCallAfterRestart", func(t *testing.T) {
		if o.Restart == nil {
			t.Skip("no Options.Restart for the server")
		}
		testRestart(t, open(t), o.Restart)
	})
}

// RunPayloads checks a PayloadStore alone, such as jobs.DirPayloads.
func RunPayloads(t *testing.T, s jobs.PayloadStore) { testPayloads(t, s) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func testPayloads(t *testing.T, b jobs.PayloadStore) {
	ctx := ctxT(t)
	big := make([]byte, 1<<20+123) // several chunks in any chunked store
	rand.Read(big)
	n, err := b.PutPayload(ctx, "p1", bytes.NewReader(big), int64(len(big)))
	if err != nil || n != int64(len(big)) {
		t.Fatalf("PutPayload = %d, %v", n, err)
	}
	r, err := b.OpenPayload(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(big))
	}

	if _, err := b.PutPayload(ctx, "p2", bytes.NewReader(big), int64(len(big)-1)); !errors.Is(err, jobs.ErrTooLarge) {
		t.Fatalf("over the limit: %v, want ErrTooLarge", err)
	}
	if _, err := b.OpenPayload(ctx, "p2"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("after a refused put: %v, want ErrNotFound", err)
	}
	broken := &failingReader{data: big[:300_000], err: io.ErrUnexpectedEOF}
	if _, err := b.PutPayload(ctx, "p3", broken, int64(len(big))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("failing reader: %v, want its error", err)
	}
	if _, err := b.OpenPayload(ctx, "p3"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("after a failed put: %v, want ErrNotFound", err)
	}

	if err := b.DeletePayload(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.OpenPayload(ctx, "p1"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
	if err := b.DeletePayload(ctx, "never"); err != nil {
		t.Fatalf("deleting an unknown payload: %v", err)
	}
}

func testRecords(t *testing.T, b jobs.Backend) {
	ctx := ctxT(t)
	if _, _, err := b.GetRecord(ctx, "r1"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("unknown record: %v, want ErrNotFound", err)
	}
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	updates, err := b.WatchRecord(watchCtx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	rev1, err := b.CreateRecord(ctx, "r1", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateRecord(ctx, "r1", []byte("again")); !errors.Is(err, jobs.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	rev2, err := b.UpdateRecord(ctx, "r1", []byte("two"), rev1)
	if err != nil || rev2 <= rev1 {
		t.Fatalf("update = %d, %v (after revision %d)", rev2, err, rev1)
	}
	if _, err := b.UpdateRecord(ctx, "r1", []byte("stale"), rev1); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	data, rev, err := b.GetRecord(ctx, "r1")
	if err != nil || string(data) != "two" || rev != rev2 {
		t.Fatalf("get = %q@%d, %v; want two@%d", data, rev, err, rev2)
	}
	if _, err := b.UpdateRecord(ctx, "gone", []byte("x"), 1); !errors.Is(err, jobs.ErrConflict) && !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("update of a missing record: %v", err)
	}
	// The watcher may have missed "one" (it may subscribe late) but
	// must deliver the latest value.
	for {
		select {
		case v, ok := <-updates:
			if !ok {
				t.Fatal("watch ended early")
			}
			if v.Rev == rev2 && string(v.Data) == "two" {
				return
			}
			if v.Rev > rev2 {
				t.Fatalf("watch saw revision %d, newer than any written", v.Rev)
			}
		case <-ctx.Done():
			t.Fatal("watch never delivered the latest value")
		}
	}
}

func claimWithin(ctx context.Context, q jobs.Queue, kind, worker string, d time.Duration) (jobs.Delivery, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return q.Claim(ctx, kind, worker)
}

func testQueue(t *testing.T, open func(t *testing.T) jobs.Backend) {
	a := open(t)
	b := open(t)
	ctx := ctxT(t)
	vis := a.VisibilityTimeout()

	if err := a.Enqueue(ctx, "k", "j1"); err != nil {
		t.Fatal(err)
	}
	if d, err := claimWithin(ctx, b, "other", "wb", vis/2); err == nil {
		t.Fatalf("claimed %s of another kind", d.JobID())
	}
	d1, err := a.Claim(ctx, "k", "wa")
	if err != nil || d1.JobID() != "j1" {
		t.Fatalf("claim: %v", err)
	}

	// While a extends its claim, b gets nothing, for well over the
	// visibility timeout.
	beat, stopBeat := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(vis / 10)
		defer tick.Stop()
		for {
			select {
			case <-beat.Done():
				return
			case <-tick.C:
				if err := d1.Extend(ctx); err != nil {
					t.Errorf("extend: %v", err)
					return
				}
			}
		}
	})
	d, err := claimWithin(ctx, b, "k", "wb", vis*3/2)
	stopBeat()
	wg.Wait()
	if err == nil {
		t.Fatalf("b claimed %s while a was extending its claim", d.JobID())
	}

	// Once a goes silent (a crashed worker), b claims it.
	d2, err := b.Claim(ctx, "k", "wb")
	if err != nil || d2.JobID() != "j1" {
		t.Fatalf("takeover claim: %v", err)
	}
	if err := d2.Retry(ctx, vis/5); err != nil {
		t.Fatal(err)
	}
	d3, err := a.Claim(ctx, "k", "wa")
	if err != nil || d3.JobID() != "j1" {
		t.Fatalf("claim after retry: %v", err)
	}
	if err := d3.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := claimWithin(ctx, b, "k", "wb", vis*3/2); err == nil {
		t.Fatalf("claimed %s after it was acknowledged", d.JobID())
	}

	// Many jobs, two claimers: each job exactly once.
	const n = 20
	for i := range n {
		if err := a.Enqueue(ctx, "many", fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	for i, q := range []jobs.Queue{a, b} {
		wg.Go(func() {
			for {
				d, err := claimWithin(ctx, q, "many", fmt.Sprintf("w%d", i), vis)
				if err != nil {
					return
				}
				mu.Lock()
				seen[d.JobID()]++
				mu.Unlock()
				if err := d.Ack(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("claimed %d distinct jobs, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("job %s claimed %d times", id, c)
		}
	}
}

// testRestart restarts the server before each step, with every connection
// the backend holds (pooled, blocking, pipelined) having been used, and
// requires the step's first call to succeed: no eventually, no retry here.
func testRestart(t *testing.T, b jobs.Backend, restart func()) {
	ctx := ctxT(t)
	vis := b.VisibilityTimeout()
	payload := []byte("payload after a restart")
	var rev uint64
	var held jobs.Delivery
	claim := func(ctx context.Context, want string) error {
		d, err := claimWithin(ctx, b, "rs", "w1", 5*vis)
		if err != nil {
			return err
		}
		if d.JobID() != want {
			return fmt.Errorf("claimed %s, want %s", d.JobID(), want)
		}
		held = d
		return nil
	}
	// Use every kind of call once, so each connection a client pools is
	// open when the server dies.
	if _, err := b.PutPayload(ctx, "warm", bytes.NewReader(payload), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := b.Enqueue(ctx, "rs", "warm"); err != nil {
		t.Fatal(err)
	}
	if err := claim(ctx, "warm"); err != nil {
		t.Fatal(err)
	}
	if err := held.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"PutPayload", func(ctx context.Context) error {
			n, err := b.PutPayload(ctx, "p", bytes.NewReader(payload), 1<<20)
			if err == nil && n != int64(len(payload)) {
				err = fmt.Errorf("stored %d bytes, want %d", n, len(payload))
			}
			return err
		}},
		{"OpenPayload", func(ctx context.Context) error {
			r, err := b.OpenPayload(ctx, "p")
			if err != nil {
				return err
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err == nil && !bytes.Equal(got, payload) {
				err = fmt.Errorf("read %q, want %q", got, payload)
			}
			return err
		}},
		{"CreateRecord", func(ctx context.Context) (err error) {
			rev, err = b.CreateRecord(ctx, "r", []byte("created"))
			return err
		}},
		{"GetRecord", func(ctx context.Context) error {
			data, got, err := b.GetRecord(ctx, "r")
			if err == nil && (string(data) != "created" || got != rev) {
				err = fmt.Errorf("got %q@%d, want created@%d", data, got, rev)
			}
			return err
		}},
		{"UpdateRecord", func(ctx context.Context) error {
			n, err := b.UpdateRecord(ctx, "r", []byte("updated"), rev)
			if err == nil && n <= rev {
				err = fmt.Errorf("revision %d after %d", n, rev)
			}
			return err
		}},
		{"Enqueue", func(ctx context.Context) error { return b.Enqueue(ctx, "rs", "j1") }},
		{"Claim", func(ctx context.Context) error { return claim(ctx, "j1") }},
		{"Extend", func(ctx context.Context) error { return held.Extend(ctx) }},
		{"Retry", func(ctx context.Context) error { return held.Retry(ctx, 0) }},
		{"ClaimAgain", func(ctx context.Context) error { return claim(ctx, "j1") }},
		{"Ack", func(ctx context.Context) error { return held.Ack(ctx) }},
		{"DeletePayload", func(ctx context.Context) error { return b.DeletePayload(ctx, "p") }},
	}
	for _, s := range steps {
		restart()
		ctx := ctxT(t) // the call's own deadline, not what the restarts left
		if err := s.call(ctx); err != nil {
			t.Fatalf("first %s after the server restarted: %v", s.name, err)
		}
	}
	// Exactly once: nothing is left to claim.
	if d, err := claimWithin(ctx, b, "rs", "w2", 2*vis); err == nil {
		t.Fatalf("claimed %s again after it was acknowledged", d.JobID())
	}
}
