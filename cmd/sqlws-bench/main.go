// Command sqlws-bench is sqlws's load generator: it runs the load scenarios of
// docs/performance.md against a sqlws server and verifies every delivered change.
//
//	sqlws-bench [--sqlws PATH] [flags]
//
// It is a command of its own so that the sqlws binary carries only what a user runs.
// The server it measures is a sqlws binary (--sqlws; default: the sqlws beside this
// binary, else sqlws on PATH). It re-executes itself as two hidden helpers: `sqlws-bench
// writer` (the writer process) and `sqlws-bench rest` (W6's REST client).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, os.Args[1:], os.Stdout); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "sqlws-bench: %v\n", err)
		os.Exit(1)
	}
}

// findSqlws resolves the sqlws binary the scenarios start: path if given (--sqlws),
// else a sqlws executable in the directory of self (make build puts both there), else
// sqlws on PATH. The result is absolute.
func findSqlws(path, self string) (string, error) {
	p, err := findBeside("sqlws", path, self)
	switch {
	case err == nil:
		return p, nil
	case path != "":
		return "", fmt.Errorf("--sqlws: %w", err)
	}
	return "", fmt.Errorf("no sqlws binary: none in %s and none on PATH; build one (make build) and pass --sqlws PATH",
		filepath.Dir(self))
}

// findBeside resolves a program the bench starts: path if given, else name in the
// directory of self (make puts every binary in bin/), else name on PATH. The result
// is absolute.
func findBeside(name, path, self string) (string, error) {
	if path != "" {
		p, err := exec.LookPath(path)
		if err != nil {
			return "", err
		}
		return filepath.Abs(p)
	}
	if self != "" {
		if p, err := exec.LookPath(filepath.Join(filepath.Dir(self), name)); err == nil {
			return filepath.Abs(p)
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("no %s in %s and none on PATH", name, filepath.Dir(self))
	}
	return filepath.Abs(p)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
