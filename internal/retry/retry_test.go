package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/rueidis"
)

// deadConn returns the error of reading from a connection whose server
// went away, as a pooled connection sees it after a restart.
func deadConnErr(t *testing.T) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

func refusedErr(t *testing.T) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		t.Skip("a closed port accepted a connection")
	}
	return err
}

func TestClassification(t *testing.T) {
	dead, refused := deadConnErr(t), refusedErr(t)
	cases := []struct {
		name          string
		err           error
		lost, notSent bool
	}{
		{"nil", nil, false, false},
		{"dead pooled connection", dead, true, false},
		{"wrapped EOF", fmt.Errorf("submit: %w", io.EOF), true, false},
		{"refused", refused, true, true},
		{"nats no responders", nats.ErrNoResponders, true, true},
		{"nats timeout", nats.ErrTimeout, true, false},
		{"caller's deadline", context.DeadlineExceeded, false, false},
		{"caller cancelled", fmt.Errorf("x: %w", context.Canceled), false, false},
		{"closed client", rueidis.ErrClosing, false, false},
		{"closed nats connection", nats.ErrConnectionClosed, false, false},
		{"an answer", errors.New("jobs: revision conflict"), false, false},
	}
	for _, c := range cases {
		if got := Lost(c.err); got != c.lost {
			t.Errorf("%s: Lost(%v) = %v, want %v", c.name, c.err, got, c.lost)
		}
		if got := NotSent(c.err); got != c.notSent {
			t.Errorf("%s: NotSent(%v) = %v, want %v", c.name, c.err, got, c.notSent)
		}
	}
}

func TestDoRetriesALostConnectionOnly(t *testing.T) {
	ctx := context.Background()
	calls := 0
	err := Do(ctx, func(context.Context) error {
		calls++
		if calls == 1 {
			return io.EOF
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("Do = %v after %d calls, want success on the 2nd", err, calls)
	}

	answer := errors.New("conflict")
	calls = 0
	if err := Do(ctx, func(context.Context) error { calls++; return answer }); err != answer || calls != 1 {
		t.Fatalf("Do repeated a server answer: %v after %d calls", err, calls)
	}

	calls = 0
	if err := Do(ctx, func(context.Context) error { calls++; return io.EOF }); err != io.EOF || calls != Attempts {
		t.Fatalf("Do = %v after %d calls, want io.EOF after %d", err, calls, Attempts)
	}

	calls = 0
	if err := Unsent(ctx, func(context.Context) error { calls++; return io.EOF }); err != io.EOF || calls != 1 {
		t.Fatalf("Unsent repeated a request that may have been applied: %d calls", calls)
	}
}

func TestDoStaysWithinTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	calls := 0
	err := Do(ctx, func(context.Context) error { calls++; return io.EOF })
	if err != io.EOF {
		t.Fatalf("Do = %v, want the op's own error", err)
	}
	if dl, _ := ctx.Deadline(); time.Now().After(dl.Add(time.Second)) {
		t.Fatal("Do waited far past the deadline")
	}
	if calls >= Attempts {
		t.Fatalf("%d calls within 30ms: the waits were skipped", calls)
	}
}

func TestBackoffBounds(t *testing.T) {
	for n := 1; n < 10; n++ {
		d := 25 * time.Millisecond << min(n-1, 4)
		for range 100 {
			if b := Backoff(n); b < d/2 || b >= d {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v)", n, b, d/2, d)
			}
		}
	}
}

// TestCreateWaitsForPlacement: a cluster that cannot place the replicas
// yet is asked again until it can; any other refusal is final at once.
func TestCreateWaitsForPlacement(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	noPeers := &jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement, peer offline"}
	tries := 0
	v, err := Create(ctx, func(context.Context) (string, error) {
		tries++
		if tries < 3 {
			return "", fmt.Errorf("queue stream: %w", noPeers)
		}
		return "stream", nil
	})
	if err != nil || v != "stream" || tries != 3 {
		t.Fatalf("Create = %q, %v after %d tries; want the stream after 3", v, err, tries)
	}

	bad := &jetstream.APIError{Code: 400, ErrorCode: 10052, Description: "stream configuration invalid"}
	tries = 0
	if _, err := Create(ctx, func(context.Context) (int, error) { tries++; return 0, bad }); !errors.Is(err, bad) || tries != 1 {
		t.Fatalf("Create with a bad config: %v after %d tries, want the error after 1", err, tries)
	}

	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := Create(short, func(context.Context) (int, error) { return 0, noPeers }); !Unplaced(err) {
		t.Fatalf("Create past its deadline: %v, want the cluster's error", err)
	}
}

// TestCreateAsksAgainWhenUnanswered: a try that gets no answer in its
// own time is sent again while the caller's deadline allows.
func TestCreateAsksAgainWhenUnanswered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tries := 0
	v, err := Create(ctx, func(ctx context.Context) (string, error) {
		tries++
		if tries == 1 {
			<-ctx.Done() // the request nobody answered
			return "", ctx.Err()
		}
		return "bucket", nil
	})
	if err != nil || v != "bucket" || tries != 2 {
		t.Fatalf("Create = %q, %v after %d tries; want the bucket after 2", v, err, tries)
	}
}
