package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestFindSqlws(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("executables need an extension on Windows")
	}
	exe := func(path string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	dir := t.TempDir()
	self := exe(filepath.Join(dir, "bin", "sqlws-bench"))
	onPath := exe(filepath.Join(dir, "path", "sqlws"))
	explicit := exe(filepath.Join(dir, "other", "sqlws"))
	t.Setenv("PATH", filepath.Dir(onPath))

	// Nothing beside the bench: PATH.
	if got, err := findSqlws("", self); err != nil || got != onPath {
		t.Errorf("PATH fallback: got %q, %v; want %q", got, err, onPath)
	}
	// A sqlws beside the bench wins over PATH.
	beside := exe(filepath.Join(dir, "bin", "sqlws"))
	if got, err := findSqlws("", self); err != nil || got != beside {
		t.Errorf("beside: got %q, %v; want %q", got, err, beside)
	}
	// --sqlws wins over both, and a relative path comes back absolute.
	t.Chdir(dir)
	if got, err := findSqlws(filepath.Join("other", "sqlws"), self); err != nil || got != explicit {
		t.Errorf("--sqlws: got %q, %v; want %q", got, err, explicit)
	}
	// A --sqlws that is not an executable is an error, not a fallback.
	if _, err := findSqlws(filepath.Join(dir, "missing"), self); err == nil || !strings.Contains(err.Error(), "--sqlws") {
		t.Errorf("missing --sqlws: err %v", err)
	}
	notExec := filepath.Join(dir, "other", "plain")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := findSqlws(notExec, self); err == nil {
		t.Errorf("non-executable --sqlws: no error")
	}
	// Neither beside nor on PATH: a clear error.
	os.Remove(beside)
	t.Setenv("PATH", filepath.Join(dir, "empty"))
	if _, err := findSqlws("", self); err == nil || !strings.Contains(err.Error(), "no sqlws binary") {
		t.Errorf("none: err %v", err)
	}
}
