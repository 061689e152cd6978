// Package db is what is left of sqlws's SQLite code above store, capture and
// changelog: the CRUD queries behind REST.
package db

import (
	"context"
	"database/sql"
	"log/slog"
	"time"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/models"
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

	schema *capture.Schema
	syncer *capture.Syncer

	stmts stmtCache // prepared CRUD write statements on the writer

	log *changelog.Log
}

// Aliases of what moved to package changelog.
type (
	TailerOptions = changelog.TailerOptions
	Tailer        = changelog.Tailer
	Retention     = changelog.Retention
)

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
	schema := capture.NewSchema(s, capture.Options{Tables: opts.Tables, Logger: opts.Logger})
	return &DB{DB: s, opts: opts, schema: schema, syncer: capture.NewSyncer(schema), log: changelog.New(s), stmts: stmtCache{m: map[string]*sql.Stmt{}}}, nil
}

// Close closes the prepared statements, then the store.
func (d *DB) Close() error {
	d.stmts.close()
	d.log.Close()
	return d.DB.Close()
}

// Install prepares the database for streaming: it applies sqlws's migrations, loads
// the stream id and installs the capture triggers.
func (d *DB) Install(ctx context.Context) (capture.SyncResult, error) { return d.syncer.Install(ctx) }

// SyncTriggers is capture.Syncer.Sync.
func (d *DB) SyncTriggers(ctx context.Context) (capture.SyncResult, error) { return d.syncer.Sync(ctx) }

// ServeReadOnly is capture.Syncer.ServeReadOnly.
func (d *DB) ServeReadOnly(ctx context.Context, problem string) (capture.SyncResult, error) {
	return d.syncer.ServeReadOnly(ctx, problem)
}

// Position is changelog.Log.Position.
func (d *DB) Position(ctx context.Context) (models.Position, error) { return d.log.Position(ctx) }

// ReadChanges is changelog.Log.ReadChanges.
func (d *DB) ReadChanges(ctx context.Context, after int64, limit, maxBytes int) ([]models.Encoded, error) {
	return d.log.ReadChanges(ctx, after, limit, maxBytes)
}

// NewTailer is changelog.Log.NewTailer, poking the schema watcher on schema changes.
func (d *DB) NewTailer(after int64, sink func([]models.Encoded), opts TailerOptions) *Tailer {
	if opts.SchemaChanged == nil {
		opts.SchemaChanged = d.schema.Poke
	}
	return d.log.NewTailer(after, sink, opts)
}

// Prune is changelog.Log.Prune.
func (d *DB) Prune(ctx context.Context, r Retention, upTo int64) (int64, error) {
	return d.log.Prune(ctx, r, upTo)
}

// RunRetention is changelog.Log.RunRetention.
func (d *DB) RunRetention(ctx context.Context, r Retention, interval time.Duration, upTo func() int64, log *slog.Logger) {
	d.log.RunRetention(ctx, r, interval, upTo, log)
}

// Schema is the live schema of the tracked tables.
func (d *DB) Schema() *capture.Schema { return d.schema }

// Syncer keeps the capture triggers matching the schema.
func (d *DB) Syncer() *capture.Syncer { return d.syncer }

// Tables returns the live schema of every tracked table, sorted by name.
func (d *DB) Tables() []models.Table { return d.schema.Tables() }

// Table returns the live schema of a tracked table.
func (d *DB) Table(name string) (models.Table, bool) {
	t, ok := d.schema.Table(name)
	if !ok {
		return models.Table{}, false
	}
	return t.Table, true
}

// Tracked reports whether name is a tracked table.
func (d *DB) Tracked(name string) bool { return d.schema.Tracked(name) }

// PauseCapture is capture.Pause.
func (d *DB) PauseCapture(ctx context.Context, table string) (bool, error) {
	return capture.Pause(ctx, d.DB, table)
}

// PauseSQL is capture.PauseSQL.
func (d *DB) PauseSQL(ctx context.Context, table string) (string, error) {
	return capture.PauseSQL(ctx, d.DB, table)
}

// ResumeCapture is capture.Resume.
func (d *DB) ResumeCapture(ctx context.Context, table string) (capture.ResumeResult, error) {
	return capture.Resume(ctx, d.DB, table)
}

// ResumeSQL is capture.ResumeSQL.
func (d *DB) ResumeSQL(ctx context.Context, table string) (string, error) {
	return capture.ResumeSQL(ctx, d.DB, table)
}

// writeTx is store.Write for a statement on table (see classifyTable).
func (d *DB) writeTx(ctx context.Context, op, table string, fn func(tx *sql.Tx) error) error {
	return classifyTable(op, table, d.Write(ctx, op, fn))
}

// readTx is store.Read for a statement on table (see classifyTable).
func (d *DB) readTx(ctx context.Context, op, table string, fn func(tx *sql.Tx) error) error {
	return classifyTable(op, table, d.Read(ctx, op, fn))
}
