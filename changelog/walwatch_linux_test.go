//go:build linux

package changelog

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The watcher wakes its owner for a write to the WAL file only while armed, once per
// Arm, and when the WAL file is created again (a new inode, which the old watch is
// not on), also through a symlinked database path.
func TestWALWatcher(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.db")
	if err := os.WriteFile(real, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link.db")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	w := watchWAL(link)
	if w == nil {
		t.Fatal("inotify unavailable")
	}
	defer w.Close()
	wal := real + "-wal"
	woken := func(what string) {
		t.Helper()
		select {
		case <-w.C:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no wake-up", what)
		}
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case <-w.C:
			t.Fatalf("%s: unexpected wake-up", what)
		default:
		}
	}
	write := func(f *os.File) {
		t.Helper()
		if _, err := f.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Arm(); err != nil { // no WAL yet: not an error
		t.Fatal(err)
	}
	f, err := os.Create(wal)
	if err != nil {
		t.Fatal(err)
	}
	woken("WAL created")
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	write(f)
	woken("first write after Arm")
	// The loop clears armed before it sends the wake-up: the watch is spent.
	if w.armed.Load() {
		t.Fatal("armed after the one-shot watch fired")
	}
	// Unarmed, writes cost the writer nothing and wake no one.
	write(f)
	write(f)
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	quiet("writes before Arm")
	write(f)
	woken("write after re-Arm")
	f.Close()
	// Deleted and created again: a new file, watched through the directory.
	if err := os.Remove(wal); err != nil {
		t.Fatal(err)
	}
	f, err = os.Create(wal)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	woken("WAL created again")
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	write(f)
	woken("write to the new WAL")
}
