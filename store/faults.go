package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sqlws/sqlws/errors"
)

// Classify turns an error from a database call into a classified error. It is the one
// classification of SQLite's failures, for every read and write: already classified
// errors pass through; an ended context, an interrupt or a closed pool is
// Unavailable (the client left, or sqlws is shutting down: retry); a storage fault
// (faultOf: I/O error, read-only, disk full, busy) is Unavailable saying which;
// anything else stays internal, wrapped with op, with SQLite's error in its chain for
// a caller that knows more about the statement (a constraint, a dropped table) to
// classify further.
func Classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.KindOf(err) != errors.Internal {
		return err
	}
	// A deadline means the database did not answer in time (the writer was busy).
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.E(errors.Op(op), errors.Unavailable, "database is busy; retry", err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, sql.ErrConnDone) || sqliteCode(err) == sqlite3.SQLITE_INTERRUPT ||
		strings.Contains(err.Error(), "sql: database is closed") {
		return errors.E(errors.Op(op), errors.Unavailable, "database unavailable; retry", err)
	}
	if f, ok := faultOf(err); ok {
		return errors.E(errors.Op(op), errors.Unavailable, f.message(), err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// sqliteCode is the primary SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return 0
}

// IsNoSuchTable reports whether err is SQLite's "no such table": a table dropped
// under a statement, or sqlws's own tables missing.
func IsNoSuchTable(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_ERROR && strings.Contains(err.Error(), "no such table")
}

// fault is a class of SQLite results that say the database cannot do what it was
// asked right now, whatever was asked: the request was fine and may work later.
type fault struct {
	what  string // what clients are told, e.g. "disk I/O error"
	retry string // the advice after it
	level slog.Level
}

// message is the client-safe message of a fault.
func (f fault) message() string { return f.what + "; " + f.retry }

var (
	faultIO       = fault{"disk I/O error", "retry later", slog.LevelError}
	faultReadOnly = fault{"database is read-only", "retry later", slog.LevelError}
	faultFull     = fault{"disk full", "retry later", slog.LevelError}
	faultCantOpen = fault{"database file cannot be opened", "retry later", slog.LevelError}
	faultBusy     = fault{"database is busy", "retry", slog.LevelWarn}
)

// faultOf classifies a SQLite result as a storage fault. I/O errors, a read-only
// file (permissions changed, the file replaced or moved), a full disk and a file that
// cannot be opened are the server's storage failing; busy and locked are another
// connection holding a lock past the busy timeout. All are 503 to clients: the
// request itself was fine. Corruption is not here: retrying cannot help, so it stays
// an internal error.
func faultOf(err error) (fault, bool) {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		// A write gives up waiting for the writer after twice the busy timeout: busy,
		// whether SQLite's lock or sqlws's queue for its one writer connection held it.
		if errors.Is(err, context.DeadlineExceeded) {
			return faultBusy, true
		}
		return fault{}, false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_IOERR:
		return faultIO, true
	case sqlite3.SQLITE_READONLY:
		return faultReadOnly, true
	case sqlite3.SQLITE_FULL:
		return faultFull, true
	case sqlite3.SQLITE_CANTOPEN:
		return faultCantOpen, true
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_PROTOCOL:
		return faultBusy, true
	}
	return fault{}, false
}

// codeName is the symbolic name of a SQLite result code, e.g. SQLITE_IOERR_WRITE,
// for logs.
func codeName(code int) string {
	if s, ok := sqlite.ErrorCodeString[code]; ok {
		if i := strings.LastIndex(s, "(SQLITE_"); i >= 0 && strings.HasSuffix(s, ")") {
			return s[i+1 : len(s)-1]
		}
	}
	if s, ok := sqlite.ErrorCodeString[code&0xff]; ok && code > 0xff {
		if i := strings.LastIndex(s, "(SQLITE_"); i >= 0 && strings.HasSuffix(s, ")") {
			return fmt.Sprintf("%s (extended %d)", s[i+1:len(s)-1], code)
		}
	}
	return fmt.Sprintf("SQLite result %d", code)
}

// faultLog logs the storage faults of one path (writes or reads) once per episode:
// when the path starts failing, again if the fault changes (an I/O error becoming a
// full disk), and once when a call on the path works again. A fault fails every
// request while it lasts, and a log line per request would bury everything else.
type faultLog struct {
	path string // "writes" or "reads"
	db   string
	log  *slog.Logger

	active atomic.Bool // an episode is open; read without the lock on every success
	mu     sync.Mutex
	what   string // the open episode's fault
	since  time.Time
	failed int // calls failed in the open episode
}

// fail notes a failed call; err that is not a storage fault is ignored.
func (l *faultLog) fail(op string, err error) {
	f, ok := faultOf(err)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active.Load() {
		l.failed++
		if l.what == f.what {
			return
		}
	} else {
		l.since = time.Now()
		l.failed = 1
	}
	l.what = f.what
	l.active.Store(true)
	attrs := []any{"db", l.db}
	if se := (*sqlite.Error)(nil); errors.As(err, &se) {
		attrs = append(attrs, "sqlite_code", se.Code(), "sqlite_result", codeName(se.Code()))
	}
	attrs = append(attrs, "op", op, "err", err)
	l.log.Log(context.Background(), f.level, "database "+l.path+" failing: "+f.what+"; answering 503 until it recovers", attrs...)
}

// ok notes a call that worked, ending an open episode.
func (l *faultLog) ok() {
	if !l.active.Load() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active.Load() {
		return
	}
	l.active.Store(false)
	l.log.Info("database "+l.path+" recovered", "db", l.db, "fault", l.what,
		"lasted", time.Since(l.since).Round(time.Millisecond), "failed_calls", l.failed)
}
