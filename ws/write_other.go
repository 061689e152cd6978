//go:build !unix

package ws

// writeOnce has no non-blocking write here: every live frame goes through the
// connection's writer goroutine.
func writeOnce(fd uintptr, b []byte) (int, error) { return 0, errWouldBlock }
