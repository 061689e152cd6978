//go:build unix && !linux

package cluster

import "syscall"

// childAttr puts a child in its own process group, so that the terminal's Ctrl-C
// reaches only the supervisor, which stops the children in order. (Only Linux can
// also tie the child's life to the supervisor's.)
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
