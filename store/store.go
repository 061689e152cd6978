// Package store is sqlws's connection to one SQLite database file, and the only way
// sqlws writes to it: a pool of readers and one writer, every write one IMMEDIATE
// transaction that wakes the tailer, sqlws's own migrations, the lock that keeps
// uninstall away from a running server, read-only detection, and the one
// classification of SQLite's failures into sqlws errors. It knows nothing of capture,
// the changelog or REST; those packages reach SQLite through it.
package store

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/sqlws/sqlws/errors"
)

// Options configure Open. The zero value is usable.
type Options struct {
	// BusyTimeout is how long a statement waits for another connection's lock before
	// SQLITE_BUSY. Default 5s. Longer hides contention; shorter surfaces 503s sooner.
	BusyTimeout time.Duration
	// MaxReaders bounds the reader pool. Default 8.
	MaxReaders int
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

// DB is an open sqlws database: a reader pool and a single writer connection.
type DB struct {
	path   string
	opts   Options
	reader *sql.DB
	writer *sql.DB

	streamID string

	// written is signalled (non-blocking) after every commit on the writer, so the
	// tailer wakes at once instead of waiting for its poll.
	written chan struct{}

	// lock is the descriptor holding the LockMode lock; see lockFile for why it is
	// closed only after both pools.
	lock *os.File
	// readOnly is set (to why) when this process cannot write the file and serves it
	// read-only (SetReadOnly): every write is refused before it reaches SQLite.
	readOnly atomic.Pointer[string]
	// writeFaults and readFaults log storage faults once per episode.
	writeFaults, readFaults *faultLog
}

// Open opens (creating if needed) the SQLite database at path in WAL mode. It does not
// migrate; see Migrate.
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
	d := &DB{path: abs, opts: opts, written: make(chan struct{}, 1),
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
	// The file is created here, once, and every connection opens it with mode=rw: a
	// pool connection opened while the file is briefly gone (renamed, restored from a
	// backup) must fail, not create an empty database beside the real WAL and keep
	// answering "disk I/O error" after the file is back.
	if err := createIfMissing(abs); err != nil {
		d.closeLock()
		return nil, errors.E(errors.Unavailable, "database cannot be opened", err)
	}
	d.writer, err = sql.Open("sqlite", dsn(abs, opts.BusyTimeout, true)+"&mode=rw")
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

	d.reader, err = sql.Open("sqlite", dsn(abs, opts.BusyTimeout, false)+"&mode=rw")
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

// createIfMissing creates an empty file at path if there is none; SQLite treats an
// empty file as an empty database.
func createIfMissing(path string) error {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil // there, or SQLite will say why it cannot open it
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil // created meanwhile by someone else
	}
	if err != nil {
		if p := writeProblem(path); p != "" {
			return fmt.Errorf("open %s: %s: %w", path, p, err)
		}
		return fmt.Errorf("open %s: %w", path, err)
	}
	return f.Close()
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

// BusyTimeout is how long a statement waits for another connection's lock.
func (d *DB) BusyTimeout() time.Duration { return d.opts.BusyTimeout }

// Logger is where the database's fault episodes are logged.
func (d *DB) Logger() *slog.Logger { return d.opts.Logger }

// Reader is the read-only connection pool.
func (d *DB) Reader() *sql.DB { return d.reader }

// Writer is the single writer connection. Callers that commit through it other than
// with Write must call Wrote afterwards so the tailer wakes at once.
func (d *DB) Writer() *sql.DB { return d.writer }

// Wrote tells the tailer that the writer committed.
func (d *DB) Wrote() {
	select {
	case d.written <- struct{}{}:
	default:
	}
}

// Written is signalled after commits on the writer (at most one signal pending): the
// tailer's cue that there is something to read without waiting for its poll.
func (d *DB) Written() <-chan struct{} { return d.written }

// Close closes both pools, then releases the lock (see lockFile for the order).
func (d *DB) Close() error {
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

// LoadMeta reads the stream id, which the first migration creates. Call after
// Migrate.
func (d *DB) LoadMeta(ctx context.Context) error {
	err := d.reader.QueryRowContext(ctx, "SELECT value FROM sqlws_meta WHERE key = 'stream_id'").Scan(&d.streamID)
	if err != nil {
		return fmt.Errorf("load stream id: %w", err)
	}
	return nil
}

// Write runs fn in one IMMEDIATE transaction on the writer connection, commits, and
// wakes the tailer so subscribers see the change without waiting for a poll. fn must
// not keep tx beyond its return. On a database served read-only it refuses before
// SQLite is asked. A storage fault starts or continues the writers' fault episode; a
// commit ends it. Errors are classified (Classify).
func (d *DB) Write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if err := d.refuseReadOnly(op); err != nil {
		return err
	}
	tx, err := d.writer.BeginTx(ctx, nil)
	if err != nil {
		d.writeFaults.fail(op, err)
		return Classify(op, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		d.writeFaults.fail(op, err)
		return Classify(op, err)
	}
	if err := tx.Commit(); err != nil {
		d.writeFaults.fail(op, err)
		return Classify(op, err)
	}
	d.writeFaults.ok()
	d.Wrote()
	return nil
}

// Read runs fn in one read transaction on the reader pool, so everything fn reads is
// one snapshot. A storage fault starts or continues the readers' fault episode; a
// read that works ends it. Errors are classified (Classify).
func (d *DB) Read(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := d.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		d.readFaults.fail(op, err)
		return Classify(op, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		d.readFaults.fail(op, err)
		return Classify(op, err)
	}
	d.readFaults.ok()
	return nil
}

// Querier is what a read needs: a pool, a connection or a transaction.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}
