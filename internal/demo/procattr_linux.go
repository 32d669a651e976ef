package demo

import "syscall"

// childAttr puts an instance in its own process group (so a crash kills
// whatever it started too) and has the kernel kill it if the demo itself
// dies, so no instance outlives the demo.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
