package demo

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

// TestMain lets the test binary play an app instance: the fleet re-executes
// it with DEMO_TEST_INSTANCE set, and it serves /healthz like a real one.
func TestMain(m *testing.M) {
	if addr := os.Getenv("DEMO_TEST_INSTANCE"); addr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "ok", os.Getpid())
		})
		fmt.Println("instance listening on", addr)
		_ = http.ListenAndServe(addr, mux)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func testFleet(t *testing.T) *Fleet {
	f := &Fleet{Command: func(name, addr string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "DEMO_TEST_INSTANCE="+addr)
		return cmd
	}}
	t.Cleanup(f.Stop)
	return f
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func get(addr string) error {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func TestFleetCrashRestartStop(t *testing.T) {
	f := testFleet(t)
	ctx := context.Background()
	a, err := f.Add(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.Add(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "app-1" || b.Name != "app-2" || a.State != StateUp || a.PID == 0 {
		t.Fatalf("added %+v and %+v", a, b)
	}

	if err := f.Crash("app-1"); err != nil {
		t.Fatal(err)
	}
	if alive(a.PID) {
		t.Fatalf("app-1 (pid %d) still alive after crash", a.PID)
	}
	if got := f.List()[0]; got.State != StateDown || got.PID != 0 {
		t.Fatalf("after crash List()[0] = %+v, want down", got)
	}
	if err := get(a.Addr); err == nil {
		t.Fatal("crashed instance still answers")
	}
	if err := get(b.Addr); err != nil {
		t.Fatalf("app-2 hurt by app-1's crash: %v", err)
	}

	a2, err := f.Restart(ctx, "app-1")
	if err != nil {
		t.Fatal(err)
	}
	if a2.Addr != a.Addr || a2.PID == a.PID || a2.State != StateUp {
		t.Fatalf("restart gave %+v, want same addr %s, new pid", a2, a.Addr)
	}
	testenv.Eventually(t, 5*time.Second, func() error { return get(a.Addr) })

	f.Stop()
	for _, in := range []InstanceInfo{a2, b} {
		if alive(in.PID) {
			t.Fatalf("%s (pid %d) survived Stop", in.Name, in.PID)
		}
	}
}

func TestFleetErrors(t *testing.T) {
	f := testFleet(t)
	if err := f.Crash("nope"); err == nil {
		t.Fatal("Crash of an unknown instance succeeded")
	}
	if _, err := f.Restart(context.Background(), "nope"); err == nil {
		t.Fatal("Restart of an unknown instance succeeded")
	}
	// An instance that exits at once is reported, not waited on forever.
	bad := &Fleet{Command: func(name, addr string) *exec.Cmd { return exec.Command("/bin/false") }}
	if _, err := bad.Add(context.Background()); err == nil {
		t.Fatal("Add of an instance that exits at once succeeded")
	}
}

// TestFleetTerminateOne stops one instance the way a deploy does and leaves
// the others serving; the stopped one comes back on its address.
func TestFleetTerminateOne(t *testing.T) {
	f := testFleet(t)
	ctx := context.Background()
	a, err := f.Add(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.Add(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Terminate(a.Name); err != nil {
		t.Fatal(err)
	}
	if alive(a.PID) {
		t.Fatalf("%s (pid %d) alive after Terminate", a.Name, a.PID)
	}
	if err := get(b.Addr); err != nil {
		t.Fatalf("%s hurt by stopping %s: %v", b.Name, a.Name, err)
	}
	if err := f.Terminate(a.Name); err == nil {
		t.Fatal("Terminate of a stopped instance succeeded")
	}
	a2, err := f.Restart(ctx, a.Name)
	if err != nil {
		t.Fatal(err)
	}
	if a2.Addr != a.Addr {
		t.Fatalf("restarted on %s, want %s", a2.Addr, a.Addr)
	}
}
