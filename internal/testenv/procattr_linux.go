package testenv

import "syscall"

// childAttr makes a service die with the test binary even when the binary is
// killed before its cleanups run, so no redis-server outlives a test run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
