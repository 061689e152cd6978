//go:build !unix

package cluster

import "syscall"

// childAttr is nil where there are no process groups: the children get the console's
// interrupt themselves and stop on their own.
func childAttr() *syscall.SysProcAttr { return nil }
