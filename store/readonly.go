package store

import (
	"context"
	"fmt"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sqlws/sqlws/errors"
)

// CheckWritable reports whether this process can write the database: "" if it can,
// otherwise why not, naming the file or directory and the permission it lacks. It
// writes the header's user_version back unchanged in a transaction it rolls back,
// which needs write access to the file and, in WAL mode, to the -wal and -shm files,
// and changes nothing. (BEGIN IMMEDIATE alone is no test: on a file SQLite could
// only open read-only it quietly starts a read transaction.) A database that stays
// locked by another writer past the busy timeout cannot be tested; that counts as
// writable, and the install that follows waits for the lock or reports busy.
func (d *DB) CheckWritable(ctx context.Context) (string, error) {
	tx, err := d.writer.BeginTx(ctx, nil)
	if err == nil {
		var v int64
		if err = tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err == nil {
			_, err = tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v))
		}
		tx.Rollback()
	}
	if err == nil {
		return "", nil
	}
	switch sqliteCode(err) {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return "", nil
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_IOERR:
		if p := writeProblem(d.path); p != "" {
			return p, nil
		}
		return fmt.Sprintf("SQLite cannot write %s: %v", d.path, err), nil
	}
	return "", Classify("check write access", err)
}

// SetReadOnly makes this DB refuse every write with 503 read_only before it reaches
// SQLite; problem is CheckWritable's answer. It is for serving a file this process
// cannot write, once the caller has checked that there is nothing it would need to
// write (capture.Syncer.ServeReadOnly).
func (d *DB) SetReadOnly(problem string) { d.readOnly.Store(&problem) }

// ReadOnly is why this server serves the database read-only, or "".
func (d *DB) ReadOnly() string {
	if p := d.readOnly.Load(); p != nil {
		return *p
	}
	return ""
}

// refuseReadOnly is the error for a write on a database served read-only, or nil.
func (d *DB) refuseReadOnly(op string) error {
	if d.readOnly.Load() == nil {
		return nil
	}
	return errors.E(errors.Op(op), errors.Unavailable, errors.CodeReadOnly,
		"this sqlws server has no write access to the database and serves it read-only; write through the application or a server that can")
}
