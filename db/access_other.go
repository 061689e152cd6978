//go:build !unix

package db

// writeProblem cannot tell more than SQLite here.
func writeProblem(path string) string { return "" }
