package main

import (
	"context"
	"database/sql"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/store"
)

// seedDemo creates and fills a small demo table when the database has no user tables,
// so a first `make run` has something to show (serve --demo).
func seedDemo(ctx context.Context, d *store.DB) error {
	names, err := capture.UserTables(ctx, d.Reader())
	if err != nil {
		return err
	}
	if len(names) > 0 {
		return nil
	}
	return d.Write(ctx, "seed demo", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
CREATE TABLE IF NOT EXISTS todos (
    id    INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    done  INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO todos (title, done) VALUES
    ('Open the dashboard', 1),
    ('Insert a row from the sqlite3 shell', 0),
    ('Watch it appear live', 0);`)
		return err
	})
}
