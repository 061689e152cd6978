//go:build unix

package store

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// writeProblem explains why this process cannot write the database at path in WAL
// mode, naming the file or directory and the permission it lacks, or returns "" if
// the file system allows it. SQLite itself only reports "attempt to write a readonly
// database" or "unable to open database file". access(2) answers as the kernel would
// for an open: the mode bits and owner (which root bypasses), the immutable and
// append-only attributes (which stop root too), a read-only mount.
func writeProblem(path string) string {
	dir := filepath.Dir(path)
	dirErr := unix.Access(dir, unix.W_OK|unix.X_OK)
	if _, err := os.Stat(path); err != nil {
		if os.IsNotExist(err) && dirErr != nil {
			return fmt.Sprintf("cannot create %s: directory %s is not writable (%s)", path, dir, why(dirErr))
		}
		return ""
	}
	if err := unix.Access(path, unix.R_OK|unix.W_OK); err != nil {
		return fmt.Sprintf("no write permission on %s (%s)", path, why(err))
	}
	// WAL mode needs the -wal and -shm files beside the database, readable and
	// writable, and the directory writable to create them when they are missing.
	for _, suffix := range []string{"-wal", "-shm"} {
		p := path + suffix
		if _, err := os.Stat(p); err == nil {
			if err := unix.Access(p, unix.R_OK|unix.W_OK); err != nil {
				return fmt.Sprintf("no write permission on %s (%s); WAL mode writes it", p, why(err))
			}
		} else if dirErr != nil {
			return fmt.Sprintf("directory %s is not writable (%s), and WAL mode must create %s there", dir, why(dirErr), filepath.Base(p))
		}
	}
	return ""
}

// why words an access(2) error for an operator.
func why(err error) string {
	switch err {
	case unix.EACCES:
		return "permission denied by the file mode or owner"
	case unix.EPERM:
		return "operation not permitted: the immutable or append-only attribute is set, see lsattr"
	case unix.EROFS:
		return "read-only file system"
	}
	return err.Error()
}
