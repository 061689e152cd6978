package store

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/migrations"
)

// VersionTable is goose's version table. It is renamed from goose's default so it never
// collides with an application's own goose migrations in the same database.
const VersionTable = "sqlws_goose_version"

// sqlws's own tables, as the migrations create them.
const (
	ChangesTable = "sqlws_changes" // the changelog
	MetaTable    = "sqlws_meta"    // the stream id, paused captures
	PendingTable = "sqlws_pending" // rows REPLACE is about to remove
	DropsTable   = "sqlws_drops"   // captured tables that stopped existing
	ShapesTable  = "sqlws_shapes"  // the layouts of native changelog rows' images
)

// ErrNotInstalled means sqlws's own tables are missing from the database: it was
// never installed, or was uninstalled or migrated down (under a running server, with
// --force). Nothing that writes into them may run then: capture triggers writing
// into missing tables would make every application write fail.
var ErrNotInstalled = errors.E(errors.Unavailable, "sqlws's tables are missing from the database (uninstalled or migrated down); run sqlws migrate up or start sqlws serve")

// RequireInstalled fails with ErrNotInstalled unless every one of sqlws's tables
// named exists, read through q (in the caller's transaction, if it has one).
func RequireInstalled(ctx context.Context, q Querier, tables ...string) error {
	args := make([]any, len(tables))
	for i, t := range tables {
		args[i] = t
	}
	rows, err := q.QueryContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (`+
		strings.TrimSuffix(strings.Repeat("?,", len(tables)), ",")+`)`, args...)
	if err != nil {
		return Classify("check installation", err)
	}
	defer rows.Close()
	n := 0
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return Classify("check installation", err)
		}
	}
	if err := rows.Err(); err != nil {
		return Classify("check installation", err)
	}
	if n != len(tables) {
		return ErrNotInstalled
	}
	return nil
}

func (d *DB) provider() (*goose.Provider, error) {
	store, err := database.NewStore(database.DialectSQLite3, VersionTable)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider("", d.writer, migrations.FS,
		goose.WithStore(store),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Migrate applies every pending migration. Two processes may race here on a fresh
// file; the migrations are idempotent, so a failed attempt is retried and counts as a
// success once nothing is pending.
func (d *DB) Migrate(ctx context.Context) error {
	p, err := d.provider()
	if err != nil {
		return err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if _, lastErr = p.Up(ctx); lastErr == nil {
			return nil
		}
		if pending, err := p.HasPending(ctx); err == nil && !pending {
			return nil
		}
	}
	return fmt.Errorf("migrate up: %w", lastErr)
}

// MigrationStatus is one migration's state, for `sqlws migrate status`.
type MigrationStatus struct {
	Version int64
	Source  string
	Applied bool
}

// MigrateStatus lists every known migration and whether it is applied.
func (d *DB) MigrateStatus(ctx context.Context) ([]MigrationStatus, error) {
	p, err := d.provider()
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(st))
	for _, s := range st {
		out = append(out, MigrationStatus{Version: s.Source.Version, Source: s.Source.Path, Applied: s.State == goose.StateApplied})
	}
	return out, nil
}

// PendingMigrations lists sqlws's migrations not recorded as applied, read without
// goose (whose provider creates its version table when it is missing, a write), for
// a process that cannot write the file.
func (d *DB) PendingMigrations(ctx context.Context) ([]string, error) {
	p, err := goose.NewProvider(goose.DialectSQLite3, d.reader, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var pending []string
	for _, s := range p.ListSources() {
		var n int
		err := d.reader.QueryRowContext(ctx, "SELECT count(*) FROM "+VersionTable+" WHERE version_id = ?", s.Version).Scan(&n)
		if err != nil && IsNoSuchTable(err) {
			n = 0
		} else if err != nil {
			return nil, Classify("read migrations", err)
		}
		if n == 0 {
			pending = append(pending, fmt.Sprintf("%05d", s.Version))
		}
	}
	return pending, nil
}

// MigrateDown rolls back the newest migration. The capture triggers write into the
// changelog, so they are dropped first: a trigger left pointing at a missing table
// would make every application write fail. They are dropped again afterwards: goose
// runs the migration in its own transaction, and a server running meanwhile (only
// with --force, see LockAdmin) may have reinstalled them in between; once the
// migration has removed a table they write into, no server installs them again.
func (d *DB) MigrateDown(ctx context.Context) error {
	if err := d.dropTriggers(ctx); err != nil {
		return err
	}
	p, err := d.provider()
	if err != nil {
		return err
	}
	if _, err := p.Down(ctx); err != nil {
		return fmt.Errorf("migrate down: %w", err)
	}
	return d.dropTriggers(ctx)
}

// Uninstall removes everything sqlws created: its triggers, then its tables (the
// changelog, the meta table and the migration version table). The application's own
// tables and rows are untouched.
func (d *DB) Uninstall(ctx context.Context) error {
	// One transaction: a server still running on the file must never see the triggers
	// gone but the tables present (it would reinstall them) or the reverse.
	return d.Write(ctx, "uninstall", func(tx *sql.Tx) error {
		if err := dropTriggersTx(ctx, tx); err != nil {
			return err
		}
		for _, t := range []string{ChangesTable, MetaTable, PendingTable, DropsTable, ShapesTable, VersionTable} {
			if _, err := tx.ExecContext(ctx, "DROP TABLE IF EXISTS "+t); err != nil {
				return err
			}
		}
		return nil
	})
}

// dropTriggers removes every trigger sqlws created, in one transaction. The
// changelog stays.
func (d *DB) dropTriggers(ctx context.Context) error {
	tx, err := d.writer.BeginTx(ctx, nil)
	if err != nil {
		return Classify("drop triggers", err)
	}
	defer tx.Rollback()
	if err := dropTriggersTx(ctx, tx); err != nil {
		return err
	}
	return Classify("drop triggers", tx.Commit())
}

// dropTriggersTx drops, in tx, every trigger named as sqlws names its own (sqlws_*)
// on an application table. Those on sqlws's tables belong to the migrations, which
// drop them with their tables.
func dropTriggersTx(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'sqlws\_%' ESCAPE '\'
		AND tbl_name NOT LIKE 'sqlws\_%' ESCAPE '\'`)
	if err != nil {
		return Classify("list triggers", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return Classify("list triggers", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Classify("list triggers", err)
	}
	for _, n := range names {
		if _, err := tx.ExecContext(ctx, `DROP TRIGGER IF EXISTS "`+strings.ReplaceAll(n, `"`, `""`)+`"`); err != nil {
			return Classify("drop trigger", err)
		}
	}
	return nil
}
