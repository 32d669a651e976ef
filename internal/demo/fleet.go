package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// State is an instance's lifecycle state as the control API reports it.
type State string

// Instance states. "draining" and "drained" are the balancer's view and are
// filled in by the caller of List; the fleet itself only knows processes.
const (
	StateStarting State = "starting"
	StateUp       State = "up"
	StateDown     State = "down" // crashed or stopped; Restart brings it back
)

// InstanceInfo is one instance as the control API reports it.
type InstanceInfo struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State State  `json:"state"`
	PID   int    `json:"pid,omitempty"`
	// RPS is the requests per second the balancer sent it over the last
	// second; 0 unless it serves (up or draining).
	RPS float64 `json:"rps"`
}

// Fleet starts, crashes, restarts and stops app instance processes. Each
// instance keeps its address across restarts, so the balancer's backend
// list stays valid and only health checks see it go and come back.
type Fleet struct {
	// Command returns the command that runs the instance called name
	// listening on addr (program, arguments, environment). Required. The
	// fleet sets its output and process attributes.
	Command func(name, addr string) *exec.Cmd
	// ReadyPath is fetched until it answers 2xx to decide an instance is up
	// [/healthz].
	ReadyPath string
	// ReadyTimeout bounds how long a start may take [15s].
	ReadyTimeout time.Duration
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL [5s].
	StopGrace time.Duration
	// Output receives the instances' stdout and stderr, each line prefixed
	// with the instance name. Nil discards it.
	Output io.Writer
	// Logger reports starts, crashes and exits. Nil means slog.Default().
	Logger *slog.Logger

	mu        sync.Mutex
	instances map[string]*instance
	next      int
}

type instance struct {
	name string
	addr string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	// crashed is set by Crash so an exit is not reported as unexpected.
	state State
}

func (f *Fleet) logger() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.Default()
}

// Add starts a new instance named app-N on a free loopback port and waits
// until it is ready. It returns the instance's name and address.
func (f *Fleet) Add(ctx context.Context) (InstanceInfo, error) {
	addr, err := freeAddr()
	if err != nil {
		return InstanceInfo{}, err
	}
	f.mu.Lock()
	if f.instances == nil {
		f.instances = map[string]*instance{}
	}
	f.next++
	name := "app-" + strconv.Itoa(f.next)
	inst := &instance{name: name, addr: addr, state: StateDown}
	f.instances[name] = inst
	f.mu.Unlock()
	if err := f.start(ctx, inst); err != nil {
		return InstanceInfo{}, err
	}
	return f.info(inst), nil
}

// Crash kills the instance with SIGKILL, as a machine failure would: it gets
// no chance to finish requests or save anything.
func (f *Fleet) Crash(name string) error {
	cmd, done, err := f.running(name)
	if err != nil {
		return err
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	f.logger().Warn("instance crashed on request", "instance", name, "pid", cmd.Process.Pid)
	return nil
}

// Terminate stops one instance gracefully, as a deploy would: SIGTERM, then
// SIGKILL if it has not exited within StopGrace. It returns once the
// process is gone; Restart brings it back on the same address.
func (f *Fleet) Terminate(name string) error {
	cmd, done, err := f.running(name)
	if err != nil {
		return err
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	timer := time.NewTimer(f.grace())
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	return nil
}

// running returns the process of a running instance and the channel
// closed when it exits.
func (f *Fleet) running(name string) (*exec.Cmd, chan struct{}, error) {
	inst, err := f.get(name)
	if err != nil {
		return nil, nil, err
	}
	f.mu.Lock()
	cmd, done := inst.cmd, inst.done
	f.mu.Unlock()
	if cmd == nil {
		return nil, nil, fmt.Errorf("instance %s is not running", name)
	}
	return cmd, done, nil
}

func (f *Fleet) grace() time.Duration {
	if f.StopGrace == 0 {
		return 5 * time.Second
	}
	return f.StopGrace
}

// Restart starts a stopped or crashed instance again on its old address; a
// running one is killed first.
func (f *Fleet) Restart(ctx context.Context, name string) (InstanceInfo, error) {
	inst, err := f.get(name)
	if err != nil {
		return InstanceInfo{}, err
	}
	f.mu.Lock()
	running := inst.cmd != nil
	f.mu.Unlock()
	if running {
		if err := f.Crash(name); err != nil {
			return InstanceInfo{}, err
		}
	}
	if err := f.start(ctx, inst); err != nil {
		return InstanceInfo{}, err
	}
	return f.info(inst), nil
}

// List returns every instance, ordered by name number.
func (f *Fleet) List() []InstanceInfo {
	f.mu.Lock()
	out := make([]InstanceInfo, 0, len(f.instances))
	insts := make([]*instance, 0, len(f.instances))
	for _, inst := range f.instances {
		insts = append(insts, inst)
	}
	f.mu.Unlock()
	for _, inst := range insts {
		out = append(out, f.info(inst))
	}
	sort.Slice(out, func(i, j int) bool { return nameNum(out[i].Name) < nameNum(out[j].Name) })
	return out
}

// Stop sends every instance SIGTERM, waits up to StopGrace for them to exit,
// then kills what is left. No process of the fleet survives it.
func (f *Fleet) Stop() {
	type proc struct {
		pid  int
		done chan struct{}
	}
	f.mu.Lock()
	var running []proc
	for _, inst := range f.instances {
		if inst.cmd != nil {
			running = append(running, proc{inst.cmd.Process.Pid, inst.done})
		}
	}
	f.mu.Unlock()
	for _, p := range running {
		_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	}
	timer := time.NewTimer(f.grace())
	defer timer.Stop()
	for _, p := range running {
		select {
		case <-p.done:
		case <-timer.C:
			// Grace is over for everyone still running.
			for _, late := range running {
				_ = syscall.Kill(-late.pid, syscall.SIGKILL)
			}
			<-p.done
		}
	}
	for _, p := range running {
		<-p.done
	}
}

func (f *Fleet) get(name string) (*instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inst, ok := f.instances[name]
	if !ok {
		return nil, fmt.Errorf("no instance named %q", name)
	}
	return inst, nil
}

func (f *Fleet) info(inst *instance) InstanceInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := InstanceInfo{Name: inst.name, Addr: inst.addr, State: inst.state}
	if inst.cmd != nil {
		in.PID = inst.cmd.Process.Pid
	}
	return in
}

func (f *Fleet) start(ctx context.Context, inst *instance) error {
	cmd := f.Command(inst.name, inst.addr)
	out := f.Output
	if out == nil {
		out = io.Discard
	}
	pw := &prefixWriter{prefix: inst.name + " | ", w: out}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", inst.name, err)
	}
	done := make(chan struct{})
	f.mu.Lock()
	inst.cmd, inst.done, inst.state = cmd, done, StateStarting
	f.mu.Unlock()
	go func() {
		err := cmd.Wait()
		pw.flush()
		f.mu.Lock()
		if inst.cmd == cmd {
			inst.cmd, inst.state = nil, StateDown
		}
		f.mu.Unlock()
		f.logger().Info("instance exited", "instance", inst.name, "status", exitStatus(err))
		close(done)
	}()
	if err := f.waitReady(ctx, inst.addr, done); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("start %s: %w", inst.name, err)
	}
	f.mu.Lock()
	if inst.cmd == cmd {
		inst.state = StateUp
	}
	f.mu.Unlock()
	f.logger().Info("instance up", "instance", inst.name, "addr", inst.addr, "pid", cmd.Process.Pid)
	return nil
}

func (f *Fleet) waitReady(ctx context.Context, addr string, exited <-chan struct{}) error {
	path := f.ReadyPath
	if path == "" {
		path = "/healthz"
	}
	timeout := f.ReadyTimeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("not ready within %v", timeout)
		case <-tick.C:
		}
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

func nameNum(name string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(name, "app-"))
	return n
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("no free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// prefixWriter labels each line of an instance's output with its name, so
// the demo's terminal shows which instance said what.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *prefixWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf)
		p.buf = nil
	}
}
