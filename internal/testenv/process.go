package testenv

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// process is a service the harness runs as a child process: started and
// polled until it is ready, killed with SIGKILL as a crash would, and its
// output kept so a failure can say what the service said.
type process struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	waitCh chan error // receives the exit status once
}

// exitError reports a service that exited before it was ready.
type exitError struct {
	err error
	log string
}

func (e *exitError) Error() string { return fmt.Sprintf("exited: %v; log: %s", e.err, e.log) }

// start runs the command and polls ready until it returns nil. It gives up
// at once when the process exits (a crash fails the test now, with its log,
// not after the whole timeout) and after timeout otherwise, killing it.
func (p *process) start(cmd *exec.Cmd, timeout time.Duration, ready func() error) error {
	out := &Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	for {
		err := ready()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("not ready after %v: %v; log: %s", timeout, err, strings.TrimSpace(out.String()))
		}
		t := time.NewTimer(interval)
		select {
		case werr := <-exited:
			t.Stop()
			return &exitError{err: werr, log: strings.TrimSpace(out.String())}
		case <-t.C:
		}
		interval = min(2*interval, 100*time.Millisecond)
	}
	p.mu.Lock()
	p.cmd, p.waitCh = cmd, exited
	p.mu.Unlock()
	return nil
}

// kill stops the process with SIGKILL and waits until it is gone.
func (p *process) kill() {
	p.mu.Lock()
	cmd, wait := p.cmd, p.waitCh
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-wait
}
