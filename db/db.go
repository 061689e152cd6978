// Package db is everything in sqlws that touches SQLite: opening the database (a pool
// of readers and one writer), migrations, schema introspection, capture-trigger
// generation, tailing and range reads of the changelog, CRUD queries and retention.
package db

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqlws/sqlws/errors"

	"modernc.org/sqlite" // also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// Options configure Open. The zero value is usable.
type Options struct {
	// BusyTimeout is how long a statement waits for another connection's lock before
	// SQLITE_BUSY. Default 5s. Longer hides contention; shorter surfaces 503s sooner.
	BusyTimeout time.Duration
	// MaxReaders bounds the reader pool. Default 8.
	MaxReaders int
	// Tables limits capture to these tables; empty means every user table, including
	// tables created later.
	Tables []string
	// ReadOnlySchema disables installing triggers (used by migrate/uninstall commands).
	ReadOnlySchema bool
	// ReadOnly opens both pools read-only and leaves the journal mode alone, for
	// commands that only read (capture --print). Writes fail.
	ReadOnly bool
	// Lock is how the file is locked against other sqlws processes (see LockMode).
	// Default LockNone.
	Lock LockMode
	// Logger receives the database's fault episodes (see faultLog). Default
	// slog.Default().
	Logger *slog.Logger
}

// DB is an open sqlws database: a reader pool, a single writer connection and the
// cached live schema of the tracked tables.
type DB struct {
	path   string
	opts   Options
	reader *sql.DB
	writer *sql.DB

	streamID string

	mu     sync.RWMutex
	tables map[string]*schemaEntry // tracked tables by name

	stmts stmtCache // prepared CRUD write statements on the writer

	changesMu sync.Mutex
	changes   *sql.Stmt // changesSQL on the reader pool, prepared on first use

	// written is signalled (non-blocking) after every commit on the writer, so the
	// tailer wakes at once instead of waiting for its poll.
	written chan struct{}

	// lock is the descriptor holding the LockMode lock; see lockFile for why it is
	// closed only after both pools.
	lock *os.File
	// readOnly is set (to why) when this process cannot write the file and serves it
	// read-only (ServeReadOnly): every write is refused before it reaches SQLite.
	readOnly atomic.Pointer[string]
	// writeFaults and readFaults log storage faults once per episode.
	writeFaults, readFaults *faultLog
}

// Open opens (creating if needed) the SQLite database at path in WAL mode. It does not
// migrate or install triggers; see Migrate and SyncTriggers.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.MaxReaders <= 0 {
		opts.MaxReaders = 8
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d := &DB{path: abs, opts: opts, tables: map[string]*schemaEntry{}, written: make(chan struct{}, 1),
		stmts:       stmtCache{m: map[string]*sql.Stmt{}},
		writeFaults: &faultLog{path: "writes", db: abs, log: opts.Logger},
		readFaults:  &faultLog{path: "reads", db: abs, log: opts.Logger}}

	// The lock comes before SQLite opens the file: a refused lock is closed at once,
	// which is only safe while SQLite holds no lock of its own on the file.
	if d.lock, err = lockFile(abs, opts.Lock, opts.BusyTimeout); err != nil {
		return nil, err
	}
	if opts.ReadOnly {
		ro := dsn(abs, opts.BusyTimeout, false) + "&mode=ro"
		d.writer, err = sql.Open("sqlite", ro)
		if err == nil {
			d.reader, err = sql.Open("sqlite", ro)
		}
		if err == nil {
			err = d.reader.PingContext(ctx)
		}
		if err != nil {
			for _, p := range []*sql.DB{d.writer, d.reader} {
				if p != nil {
					p.Close()
				}
			}
			d.closeLock()
			return nil, fmt.Errorf("open %s: %w", abs, err)
		}
		return d, nil
	}
	d.writer, err = sql.Open("sqlite", dsn(abs, opts.BusyTimeout, true))
	if err != nil {
		d.closeLock()
		return nil, fmt.Errorf("open writer: %w", err)
	}
	// One writer connection: SQLite admits one writer at a time anyway, and queuing in
	// Go is cheaper and fairer than spinning on SQLITE_BUSY.
	d.writer.SetMaxOpenConns(1)
	d.writer.SetMaxIdleConns(1)
	d.writer.SetConnMaxLifetime(0)
	d.writer.SetConnMaxIdleTime(0)

	var mode string
	if err := d.writer.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		d.writer.Close()
		d.closeLock()
		if p := writeProblem(abs); p != "" {
			// SQLite says only "unable to open database file"; the operator needs to
			// know which file or directory lacks which permission.
			return nil, errors.E(errors.Unavailable, "database cannot be opened", fmt.Errorf("open %s: %s: %w", abs, p, err))
		}
		return nil, errors.E(errors.Unavailable, "database cannot be opened", fmt.Errorf("open %s: %w", abs, err))
	}
	// WAL is what lets the tailer and REST readers run beside writers; a database that
	// refuses it (e.g. on a filesystem without shared memory) must not be served.
	if !strings.EqualFold(mode, "wal") {
		d.writer.Close()
		d.closeLock()
		if p := writeProblem(abs); p != "" {
			return nil, fmt.Errorf("open %s: journal_mode is %q and cannot be set to wal: %s", abs, mode, p)
		}
		return nil, fmt.Errorf("open %s: journal_mode is %q, want wal", abs, mode)
	}

	d.reader, err = sql.Open("sqlite", dsn(abs, opts.BusyTimeout, false))
	if err != nil {
		d.writer.Close()
		d.closeLock()
		return nil, fmt.Errorf("open readers: %w", err)
	}
	d.reader.SetMaxOpenConns(opts.MaxReaders)
	d.reader.SetMaxIdleConns(opts.MaxReaders)
	d.reader.SetConnMaxIdleTime(5 * time.Minute)
	return d, nil
}

func dsn(path string, busy time.Duration, writer bool) string {
	v := url.Values{}
	v.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	v.Add("_pragma", "foreign_keys(1)")
	v.Add("_pragma", "synchronous(NORMAL)")
	if writer {
		// BEGIN IMMEDIATE takes the write lock up front, so a transaction never fails
		// half-way with SQLITE_BUSY on lock upgrade.
		v.Set("_txlock", "immediate")
	} else {
		v.Add("_pragma", "query_only(1)")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + v.Encode()
}

// Path is the absolute path of the database file.
func (d *DB) Path() string { return d.path }

// Reader is the read-only connection pool.
func (d *DB) Reader() *sql.DB { return d.reader }

// Writer is the single writer connection. Callers that commit through it must call
// Wrote afterwards so the tailer wakes at once.
func (d *DB) Writer() *sql.DB { return d.writer }

// Wrote tells the tailer that the writer committed.
func (d *DB) Wrote() {
	select {
	case d.written <- struct{}{}:
	default:
	}
}

// Close closes both pools, then releases the lock (see lockFile for the order).
func (d *DB) Close() error {
	d.stmts.close()
	d.changesMu.Lock()
	if d.changes != nil {
		d.changes.Close()
		d.changes = nil
	}
	d.changesMu.Unlock()
	err := errors.Join(d.reader.Close(), d.writer.Close())
	d.closeLock()
	return err
}

func (d *DB) closeLock() {
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
}

// StreamID is the database's stream id, read by LoadMeta after migration.
func (d *DB) StreamID() string { return d.streamID }

// LoadMeta reads the stream id. Call after Migrate.
func (d *DB) LoadMeta(ctx context.Context) error {
	err := d.reader.QueryRowContext(ctx, "SELECT value FROM sqlws_meta WHERE key = 'stream_id'").Scan(&d.streamID)
	if err != nil {
		return fmt.Errorf("load stream id: %w", err)
	}
	return nil
}

// classify turns an error from a database call into a classified error. It is the
// one classification path for every read and write (classifyTable with the table
// the statement worked on): already classified errors pass through; an ended
// context, an interrupt or a closed pool is Unavailable; a storage fault (faultOf:
// I/O error, read-only, disk full, busy) is Unavailable saying which; constraint
// violations are Conflict naming the constraint; anything else stays internal.
func classify(op string, err error) error { return classifyTable(op, "", err) }

// classifyTable is classify for a statement on table: constraint messages name its
// columns without the table prefix, and a "no such table" for it (dropped under the
// request) is unknown_table.
func classifyTable(op, table string, err error) error {
	if err == nil {
		return nil
	}
	if errors.KindOf(err) != errors.Internal {
		return err
	}
	// A deadline means the database did not answer in time (the writer was busy);
	// a cancellation, interrupt or closed pool means the client left or sqlws is
	// shutting down. Either way the client should retry.
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.E(errors.Op(op), errors.Unavailable, "database is busy; retry", err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, sql.ErrConnDone) || sqliteCode(err) == sqlite3.SQLITE_INTERRUPT ||
		strings.Contains(err.Error(), "sql: database is closed") {
		return errors.E(errors.Op(op), errors.Unavailable, "database unavailable; retry", err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		if m := constraintErr(se, table); m != nil {
			return m
		}
		if f, ok := faultOf(se); ok {
			return errors.E(errors.Op(op), errors.Unavailable, f.message(), err)
		}
		if se.Code()&0xff == sqlite3.SQLITE_MISMATCH {
			// A non-integer for a rowid or INTEGER PRIMARY KEY: the client's mistake.
			return errors.E(errors.Op(op), errors.Invalid, errors.CodeWrongType,
				fmt.Sprintf("table %q: the row key must be an integer", errors.Clip(table)), err)
		}
		if isNoSuchTable(err) && table != "" {
			return errors.E(errors.Op(op), errors.NotFound, errors.CodeUnknownTable, fmt.Sprintf("unknown table %q", errors.Clip(table)), err)
		}
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

// Write runs fn in one IMMEDIATE transaction on the writer connection, commits, and
// wakes the tailer so subscribers see the change without waiting for a poll. fn must
// not keep tx beyond its return.
func (d *DB) Write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	return d.writeTx(ctx, op, "", fn)
}

// writeTx is Write for a statement on table (see classifyTable). A storage fault
// starts or continues the writers' fault episode; a commit ends it.
func (d *DB) writeTx(ctx context.Context, op, table string, fn func(tx *sql.Tx) error) error {
	if err := d.refuseReadOnly(op); err != nil {
		return err
	}
	tx, err := d.writer.BeginTx(ctx, nil)
	if err != nil {
		d.writeFaults.fail(op, err)
		return classifyTable(op, table, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		d.writeFaults.fail(op, err)
		return classifyTable(op, table, err)
	}
	if err := tx.Commit(); err != nil {
		d.writeFaults.fail(op, err)
		return classifyTable(op, table, err)
	}
	d.writeFaults.ok()
	d.Wrote()
	return nil
}
