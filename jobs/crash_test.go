//go:build linux

package jobs_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unstuck-dev/unstuck/internal/shop/textstats"
	"github.com/unstuck-dev/unstuck/internal/testenv"
	"github.com/unstuck-dev/unstuck/jobs"
)

// The crash test re-executes this test binary as a worker process. These
// variables tell the child what to connect to.
const (
	envHelper  = "JOBS_TEST_HELPER_WORKER"
	envBackend = "JOBS_TEST_BACKEND"
	envAddr    = "JOBS_TEST_ADDR"
	envPrefix  = "JOBS_TEST_PREFIX"
	envWorker  = "JOBS_TEST_WORKER"
)

// TestHelperWorker is not a test: it is the body of the worker process
// that TestWorkerKilledMidJob starts and kills.
func TestHelperWorker(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("helper process for TestWorkerKilledMidJob")
	}
	b, _, err := connectBackend(os.Getenv(envBackend), os.Getenv(envAddr), os.Getenv(envPrefix), vis)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	m, err := jobs.New(jobs.Config{Backend: b, Worker: os.Getenv(envWorker)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	// Slow enough that the parent can kill it between checkpoints.
	m.Handle(textstats.Kind, textstats.Job{Steps: 20, StepDelay: 200 * time.Millisecond}.Handle)
	_ = m.Run(context.Background()) // until SIGKILL
	os.Exit(3)
}

// TestWorkerKilledMidJob kills a worker process with SIGKILL in the middle
// of a job; another worker claims the job after the visibility timeout,
// resumes from the last checkpoint and records the result once.
func TestWorkerKilledMidJob(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			web := newManager(t, s, jobs.Config{})
			text := sampleText(4000)
			st := submit(t, web, textstats.Kind, text)

			child := startWorkerProcess(t, s, "doomed")
			testenv.Eventually(t, 30*time.Second, func() error {
				cur, err := web.Status(context.Background(), st.ID)
				if err != nil {
					return err
				}
				if cur.State != jobs.Running || cur.Worker != "doomed" || !cur.Checkpointed || cur.Percent < 20 {
					return fmt.Errorf("status %s by %q at %d%% (checkpointed %v); child output: %s",
						cur.State, cur.Worker, cur.Percent, cur.Checkpointed, child.output())
				}
				return nil
			})
			child.kill(t)
			killed, err := web.Status(context.Background(), st.ID)
			if err != nil {
				t.Fatal(err)
			}
			if killed.State != jobs.Running || killed.Percent >= 100 {
				t.Fatalf("the job finished before the kill: %+v", killed)
			}

			survivor := newManager(t, s, jobs.Config{Worker: "survivor"})
			survivor.Handle(textstats.Kind, textstats.Job{Steps: 20}.Handle)
			run(t, survivor)
			done := waitState(t, web, st.ID, jobs.Done)
			got := decodeStats(t, done)
			want := wantStats(text)
			if got.SHA256 != want.SHA256 || got.Lines != want.Lines || got.Words != want.Words || got.Bytes != want.Bytes {
				t.Fatalf("result = %+v, want %+v", got, want)
			}
			// It resumed from the dead worker's checkpoint, not from zero.
			if got.ResumedAt <= 0 || got.Attempt != 2 {
				t.Fatalf("resumed at byte %d on attempt %d, want a resumption on attempt 2", got.ResumedAt, got.Attempt)
			}
			if done.Worker != "survivor" || done.Attempt != 2 {
				t.Fatalf("final status = %+v", done)
			}
			assertNoPayloads(t, s)
		})
	}
}

type workerProcess struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (w *workerProcess) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(p)
}

func (w *workerProcess) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(w.out.String())
}

func startWorkerProcess(t *testing.T, s *store, name string) *workerProcess {
	t.Helper()
	w := &workerProcess{done: make(chan struct{})}
	w.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperWorker$", "-test.count=1")
	w.cmd.Env = append(os.Environ(), envHelper+"=1", envBackend+"="+s.name,
		envAddr+"="+s.addr, envPrefix+"="+s.prefix, envWorker+"="+name)
	w.cmd.Stdout, w.cmd.Stderr = w, w
	// The child must not outlive a test binary that dies.
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = w.cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		<-w.done
	})
	return w
}

// kill sends SIGKILL: no deferred function, no cleanup, no goodbye to the
// store, as when a machine dies.
func (w *workerProcess) kill(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w.done
	if ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("worker exited with %v before the kill; output: %s", w.cmd.ProcessState, w.output())
	}
}

// TestCancelWhileWorkerDead: a user cancels a job whose worker process was
// just killed. Nobody is left to see the flag, until the job's claim times
// out: the next worker then records it cancelled without running it.
func TestCancelWhileWorkerDead(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			s := s.fresh()
			web := newManager(t, s, jobs.Config{})
			st := submit(t, web, textstats.Kind, sampleText(4000))
			child := startWorkerProcess(t, s, "doomed")
			testenv.Eventually(t, 30*time.Second, func() error {
				cur, err := web.Status(context.Background(), st.ID)
				if err == nil && (cur.State != jobs.Running || cur.Percent < 10) {
					err = fmt.Errorf("status %s at %d%%; child output: %s", cur.State, cur.Percent, child.output())
				}
				return err
			})
			child.kill(t)
			flagged, err := web.Cancel(context.Background(), st.ID)
			if err != nil || flagged.State != jobs.Running || !flagged.CancelRequested {
				t.Fatalf("Cancel = %+v, %v", flagged, err)
			}
			survivor := newManager(t, s, jobs.Config{Worker: "survivor"})
			ran := make(chan struct{}, 1)
			survivor.Handle(textstats.Kind, func(ctx context.Context, j *jobs.Job) (any, error) {
				ran <- struct{}{}
				return nil, nil
			})
			run(t, survivor)
			fin := waitState(t, web, st.ID, jobs.Cancelled)
			select {
			case <-ran:
				t.Fatal("the cancelled job ran again")
			default:
			}
			if fin.Attempt != 1 {
				t.Fatalf("status %+v", fin)
			}
			assertNoPayloads(t, s)
		})
	}
}
