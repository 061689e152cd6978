//go:build linux

package db

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// walWatcher wakes the tailer when another process writes the database's WAL file,
// so commits are noticed at once without polling hundreds of times a second. It
// watches the directory, not the file, because the WAL may be created or recreated
// while sqlws runs.
type walWatcher struct {
	f         *os.File
	C         chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// watchWAL starts watching; nil if inotify is unavailable (the tailer then polls).
func watchWAL(dbPath string) *walWatcher {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil
	}
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(dbPath), unix.IN_MODIFY|unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		return nil
	}
	w := &walWatcher{f: os.NewFile(uintptr(fd), "inotify"), C: make(chan struct{}, 1), done: make(chan struct{})}
	wal := filepath.Base(dbPath) + "-wal"
	go w.loop(wal)
	return w
}

// loop reads events until Close; it owns w.C's sends. After an event on the WAL it
// waits until the tailer has taken the previous wake-up before reading again: while it
// does not read, the kernel merges the writer's further identical events into one, so
// a writer committing thousands of times a second costs one wake-up per drain rather
// than one per frame written (those wake-ups had been a fifth of the server's CPU
// beside a busy writer).
func (w *walWatcher) loop(wal string) {
	buf := make([]byte, 16*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		wake := false
		if err != nil {
			return // closed
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameStart := off + unix.SizeofInotifyEvent
			nameEnd := nameStart + int(ev.Len)
			if nameEnd > n {
				break
			}
			name := cString(buf[nameStart:nameEnd])
			off = nameEnd
			if string(name) == wal { // no allocation for the comparison
				wake = true
			}
		}
		if wake {
			select {
			case w.C <- struct{}{}:
			case <-w.done:
				return
			}
		}
	}
}

// Close stops the watcher; its goroutine ends once the blocked read returns.
func (w *walWatcher) Close() {
	w.closeOnce.Do(func() {
		close(w.done)
		w.f.Close()
	})
}

// cString trims the NUL padding of an inotify event's name.
func cString(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}
