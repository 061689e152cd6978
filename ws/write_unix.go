//go:build unix

package ws

import "syscall"

// writeOnce is one non-blocking write(2) to a socket: what it took, or
// errWouldBlock when its buffer is full.
func writeOnce(fd uintptr, b []byte) (int, error) {
	for {
		n, err := syscall.Write(int(fd), b)
		switch err {
		case nil:
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, errWouldBlock
		default:
			return 0, err
		}
	}
}
