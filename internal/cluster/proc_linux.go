package cluster

import "syscall"

// childAttr puts a child in its own process group, so that the terminal's Ctrl-C
// reaches only the supervisor, which stops the children in order; and has the kernel
// kill it if the supervisor dies first, so no orphaned nats-server keeps its port.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
