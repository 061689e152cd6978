// Package db is everything in sqlws that touches SQLite above the store: schema
// introspection, capture-trigger generation, tailing and range reads of the
// changelog, CRUD queries and retention.
package db

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"time"

	"github.com/sqlws/sqlws/store"
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
	// ReadOnly opens both pools read-only and leaves the journal mode alone, for
	// commands that only read (capture --print). Writes fail.
	ReadOnly bool
	// Lock is how the file is locked against other sqlws processes (see
	// store.LockMode). Default store.LockNone.
	Lock store.LockMode
	// Logger receives the database's fault episodes. Default slog.Default().
	Logger *slog.Logger
}

// DB is an open sqlws database: the store and the cached live schema of the tracked
// tables.
type DB struct {
	*store.DB
	opts Options

	mu     sync.RWMutex
	tables map[string]*schemaEntry // tracked tables by name

	stmts stmtCache // prepared CRUD write statements on the writer

	changesMu sync.Mutex
	changes   *sql.Stmt // changesSQL on the reader pool, prepared on first use
}

// ErrNotInstalled is store.ErrNotInstalled.
var ErrNotInstalled = store.ErrNotInstalled

// Open opens (creating if needed) the SQLite database at path in WAL mode. It does not
// migrate or install triggers; see Migrate and SyncTriggers.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	s, err := store.Open(ctx, path, store.Options{BusyTimeout: opts.BusyTimeout, MaxReaders: opts.MaxReaders,
		ReadOnly: opts.ReadOnly, Lock: opts.Lock, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	return &DB{DB: s, opts: opts, tables: map[string]*schemaEntry{}, stmts: stmtCache{m: map[string]*sql.Stmt{}}}, nil
}

// Close closes the prepared statements, then the store.
func (d *DB) Close() error {
	d.stmts.close()
	d.changesMu.Lock()
	if d.changes != nil {
		d.changes.Close()
		d.changes = nil
	}
	d.changesMu.Unlock()
	return d.DB.Close()
}

// Install prepares the database for streaming: it applies sqlws's migrations, loads
// the stream id and installs the capture triggers.
func (d *DB) Install(ctx context.Context) (SyncResult, error) {
	if err := d.Migrate(ctx); err != nil {
		return SyncResult{}, err
	}
	if err := d.LoadMeta(ctx); err != nil {
		return SyncResult{}, err
	}
	return d.SyncTriggers(ctx)
}

// writeTx is store.Write for a statement on table (see classifyTable).
func (d *DB) writeTx(ctx context.Context, op, table string, fn func(tx *sql.Tx) error) error {
	return classifyTable(op, table, d.Write(ctx, op, fn))
}

// readTx is store.Read for a statement on table (see classifyTable).
func (d *DB) readTx(ctx context.Context, op, table string, fn func(tx *sql.Tx) error) error {
	return classifyTable(op, table, d.Read(ctx, op, fn))
}
