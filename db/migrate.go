package db

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"

	"github.com/sqlws/sqlws/migrations"
)

// VersionTable is goose's version table. It is renamed from goose's default so it never
// collides with an application's own goose migrations in the same database.
const VersionTable = "sqlws_goose_version"

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

// MigrateDown rolls back the newest migration. The capture triggers write into the
// changelog, so they are dropped first: a trigger left pointing at a missing table
// would make every application write fail. They are dropped again afterwards: goose
// runs the migration in its own transaction, and a server running meanwhile (only
// with --force, see LockAdmin) may have reinstalled them in between; once the
// migration has removed a table they write into, no server installs them again.
func (d *DB) MigrateDown(ctx context.Context) error {
	if _, err := d.DropTriggers(ctx); err != nil {
		return err
	}
	p, err := d.provider()
	if err != nil {
		return err
	}
	if _, err := p.Down(ctx); err != nil {
		return fmt.Errorf("migrate down: %w", err)
	}
	if _, err := d.DropTriggers(ctx); err != nil {
		return err
	}
	return nil
}

// Uninstall removes everything sqlws created: its triggers, then its tables (the
// changelog, the meta table and the migration version table). The application's own
// tables and rows are untouched.
func (d *DB) Uninstall(ctx context.Context) error {
	// One transaction: a server still running on the file must never see the triggers
	// gone but the tables present (it would reinstall them) or the reverse.
	return d.Write(ctx, "uninstall", func(tx *sql.Tx) error {
		if _, err := dropTriggers(ctx, tx); err != nil {
			return err
		}
		for _, t := range []string{"sqlws_changes", "sqlws_meta", "sqlws_pending", "sqlws_drops", VersionTable} {
			if _, err := tx.ExecContext(ctx, "DROP TABLE IF EXISTS "+quoteIdent(t)); err != nil {
				return err
			}
		}
		return nil
	})
}
