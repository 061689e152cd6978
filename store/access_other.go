//go:build !unix

package store

// writeProblem cannot tell more than SQLite here.
func writeProblem(path string) string { return "" }
