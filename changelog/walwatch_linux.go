//go:build linux

package changelog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// walWatcher wakes the tailer when another process writes the database's WAL file,
// so commits are noticed at once without polling hundreds of times a second.
//
// The watch on the WAL file is one-shot: it fires on the first write after Arm and is
// then gone until the tailer arms it again, before it next reads. A watch costs the
// writing process something on every write(2) it makes to the watched file: a
// permanent one (the directory watched for IN_MODIFY, as sqlws first did) took 6 % of
// a 1-row-transaction writer's throughput even with the kernel merging the events,
// against about 1 % one-shot (the writer's rows/s beside each watch ÷ without one,
// measured interleaved in one process). The directory
// is watched too, only for files created or renamed into it, which costs writes
// nothing: the WAL may be deleted and created again while sqlws runs.
type walWatcher struct {
	f         *os.File
	fd        int
	wal       string // path of the WAL file
	dirWD     int32
	armed     atomic.Bool // a one-shot watch on the WAL file is set and has not fired
	C         chan struct{}
	closeOnce sync.Once
}

// watchWAL starts watching; nil if inotify is unavailable (the tailer then polls).
// The WAL file is not watched until the first Arm.
func watchWAL(dbPath string) *walWatcher {
	// SQLite opens a symlinked database at its target, and puts the WAL beside it.
	if p, err := filepath.EvalSymlinks(dbPath); err == nil {
		dbPath = p
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK) // non-blocking: Close interrupts Read
	if err != nil {
		return nil
	}
	dirWD, err := unix.InotifyAddWatch(fd, filepath.Dir(dbPath), unix.IN_CREATE|unix.IN_MOVED_TO)
	if err != nil {
		unix.Close(fd)
		return nil
	}
	w := &walWatcher{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, wal: dbPath + "-wal", dirWD: int32(dirWD), C: make(chan struct{}, 1)}
	go w.loop(filepath.Base(w.wal))
	return w
}

// Arm sets the one-shot watch on the WAL file unless it is set already. The tailer
// calls it before it polls, so a write after the poll read the database always wakes
// it. A missing WAL file is not an error: its creation wakes the tailer. Any other
// error (the user's inotify watch limit reached, say) means commits will not wake the
// tailer until a later Arm succeeds; the tailer polls meanwhile.
func (w *walWatcher) Arm() error {
	if w.armed.Load() {
		return nil
	}
	// Set before the watch exists: if it fires at once, loop's clearing must win.
	w.armed.Store(true)
	_, err := unix.InotifyAddWatch(w.fd, w.wal, unix.IN_MODIFY|unix.IN_ONESHOT)
	if err != nil {
		w.armed.Store(false)
		if err == unix.ENOENT {
			return nil
		}
		return fmt.Errorf("watch %s: %w", w.wal, err)
	}
	return nil
}

// loop reads events until Close; it owns w.C's sends.
func (w *walWatcher) loop(wal string) {
	buf := make([]byte, 16*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return // closed
		}
		wake := false
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameStart := off + unix.SizeofInotifyEvent
			nameEnd := nameStart + int(ev.Len)
			if nameEnd > n {
				break
			}
			off = nameEnd
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				// Events were dropped, one on the WAL perhaps: read, to be sure.
				w.armed.Store(false)
				wake = true
			} else if ev.Wd != w.dirWD {
				// The WAL file's watch: it fired (IN_MODIFY), or it is gone
				// (IN_IGNORED after firing, or the file was deleted).
				w.armed.Store(false)
				wake = wake || ev.Mask&unix.IN_MODIFY != 0
			} else if string(cString(buf[nameStart:nameEnd])) == wal { // no allocation for the comparison
				w.armed.Store(false) // a new file: the old watch, if any, is not on it
				wake = true
			}
		}
		if wake {
			select {
			case w.C <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
	}
}

// Close stops the watcher; its goroutine ends once the blocked read returns.
func (w *walWatcher) Close() {
	w.closeOnce.Do(func() { w.f.Close() })
}

// cString trims the NUL padding of an inotify event's name.
func cString(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}
