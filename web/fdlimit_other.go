//go:build !unix

package web

// fdLimit has no portable answer here; a generous cap leaves the limit to the OS.
func fdLimit() int { return 1 << 16 }
