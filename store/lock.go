package store

import "github.com/sqlws/sqlws/errors"

// LockMode is how Open locks the database file against other sqlws processes, so
// that commands which remove sqlws's objects never run under a server that depends
// on them.
type LockMode uint8

const (
	// LockNone takes no lock (tests, migrate status/up, capture pause/resume, which
	// are meant to run beside a server).
	LockNone LockMode = iota
	// LockServe is a shared lock held for the life of `sqlws serve`. Several servers
	// may share a file. While an admin command holds LockAdmin, Open waits up to the
	// busy timeout for it and then fails with ErrAdminRunning.
	LockServe
	// LockAdmin is an exclusive lock, never waited for, held by uninstall and migrate
	// down. Open fails with ErrServed while a server holds LockServe.
	LockAdmin
)

// ErrServed is returned by Open with LockAdmin while another sqlws process serves
// the file; the error names the file and, where the system says, the process ids.
var ErrServed = errors.New("being served by another sqlws process")

// ErrAdminRunning is returned by Open with LockServe while an uninstall or migrate
// down holds the file.
var ErrAdminRunning = errors.New("an uninstall or migrate down is running on it")
