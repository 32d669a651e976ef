package live

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/unstuck-dev/unstuck/internal/experiment/report"
)

// clockTicks is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux).
const clockTicks = 100

// cpuMeter adds up the CPU time (user + system) of the app instances,
// sampled from /proc/PID/stat. A process's time since its last sample is
// lost when it is killed, which is why it is sampled every second.
type cpuMeter struct {
	mu    sync.Mutex
	last  map[int]uint64 // pid -> ticks at the last sample
	total uint64
	ok    bool
}

func newCPUMeter() *cpuMeter {
	_, err := os.Stat("/proc/self/stat")
	return &cpuMeter{last: map[int]uint64{}, ok: err == nil}
}

// sample reads the processes now running and returns the total CPU
// seconds so far, or false where /proc is not there.
func (m *cpuMeter) sample(pids []int) (float64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.ok {
		return 0, false
	}
	for _, pid := range pids {
		ticks, err := procTicks(pid)
		if err != nil {
			continue // exited between the list and the read
		}
		if prev, seen := m.last[pid]; seen && ticks >= prev {
			m.total += ticks - prev
		} else if !seen {
			m.total += ticks
		}
		m.last[pid] = ticks
	}
	return float64(m.total) / clockTicks, true
}

// procTicks is utime + stime of pid.
func procTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields resume after ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// After ')': state is f[0], so utime (field 14) is f[11], stime f[12].
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return u + st, nil
}

// machine describes this machine and how loaded it is.
func machine() report.Machine {
	m := report.Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, ln := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(ln, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, ln := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(ln, "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					kb, _ := strconv.ParseUint(f[0], 10, 64)
					m.MemoryBytes = kb * 1024
				}
			}
		}
	}
	m.LoadAvg = loadAvg()
	return m
}

// loadAvg is the 1, 5 and 15 minute load average; zeros where unknown.
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}
