//go:build unix

package store

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sqlws/sqlws/errors"
)

// lockFile takes mode's lock on the database file at path and returns the descriptor
// that holds it (nil for LockNone).
//
// The lock is flock(2) on the database file itself, through a descriptor of sqlws's
// own, not a lock file beside it: a lock file needs write access to the directory,
// which a server that serves a file read-only (ServeReadOnly) may lack, and it would
// be left behind by a crash or raced over when deleted. flock locks are separate from
// the POSIX fcntl locks SQLite takes on the same file (Linux, the BSDs, macOS), so
// neither disturbs the other, and the application and the sqlite3 shell never notice.
//
// The danger is POSIX's rule that closing ANY descriptor of a file releases all of
// the process's fcntl locks on it, SQLite's included: in WAL mode every connection
// holds a SHARED lock on the file while it is open, and if it silently lost it, the
// last connection of another process to close would take that as licence to
// checkpoint and delete the WAL under us. So the descriptor is opened before SQLite
// opens the file, closed at once only if the lock is refused (SQLite holds nothing
// yet), and otherwise kept until both connection pools are closed (DB.Close): it is
// never closed while SQLite has the file open. (Over NFS, Linux emulates flock with
// whole-file fcntl locks, which would collide with SQLite's; WAL mode needs a local
// file system anyway, see docs/operations.md.)
func lockFile(path string, mode LockMode, wait time.Duration) (*os.File, error) {
	if mode == LockNone {
		return nil, nil
	}
	flag := os.O_RDONLY // enough for flock, and works on a file this process cannot write
	if mode == LockServe {
		flag |= os.O_CREATE // serve creates a missing database, as SQLite would
	}
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && mode == LockAdmin {
			return nil, fmt.Errorf("%s: no such database file", path)
		}
		if p := writeProblem(path); p != "" {
			return nil, fmt.Errorf("open %s: %s", path, p)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	how := unix.LOCK_SH
	if mode == LockAdmin {
		how = unix.LOCK_EX
	}
	deadline := time.Now().Add(wait)
	for {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if mode == LockAdmin || time.Now().After(deadline) {
			break
		}
		// An admin command takes well under a second; a server starting meanwhile
		// waits for it rather than fail.
		time.Sleep(50 * time.Millisecond)
	}
	who := ""
	if pids := lockHolders(f); len(pids) > 0 {
		who = " (pid " + strings.Join(pids, ", ") + ")"
	}
	f.Close()
	if mode == LockAdmin {
		return nil, fmt.Errorf("%s is %w%s", path, ErrServed, who)
	}
	return nil, fmt.Errorf("%s is locked: %w%s", path, ErrAdminRunning, who)
}

// lockHolders lists the processes holding a flock on f's file, from Linux's
// /proc/locks; nil where that is not available.
func lockHolders(f *os.File) []string {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil
	}
	id := fmt.Sprintf("%02x:%02x:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)), st.Ino)
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil
	}
	var pids []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  READ 4284 fe:00:9978386 0 EOF"; waiters have "->" after the number.
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[1] != "FLOCK" || f[5] != id {
			continue
		}
		if _, err := strconv.Atoi(f[4]); err == nil && f[4] != strconv.Itoa(os.Getpid()) {
			pids = append(pids, f[4])
		}
	}
	return pids
}
