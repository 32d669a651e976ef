//go:build !linux

package demo

import "syscall"

// childAttr puts an instance in its own process group, so a crash kills
// whatever it started too.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
