package testenv

import (
	"testing"
	"time"
)

// Eventually calls check until it returns nil or timeout passes, then fails
// the test with the last error. Tests use it instead of sleeping: it waits
// only as long as the condition takes and names what never became true.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	if err := WaitFor(timeout, check); err != nil {
		t.Fatalf("condition not met within %v: %v", timeout, err)
	}
}

// WaitFor polls check with a short, growing interval until it returns nil or
// timeout passes, and returns the last error on timeout.
func WaitFor(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
		if interval < 100*time.Millisecond {
			interval *= 2
		}
	}
}
