package store_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

// open opens the database at path and installs sqlws in it, as sqlws serve does.
func open(t testing.TB, path string, opts testdb.Options) *testdb.DB {
	t.Helper()
	return testdb.Install(t, path, opts)
}

// readAll reads every change after after.
func readAll(t testing.TB, d *testdb.DB, after int64) []models.Change {
	t.Helper()
	return d.ReadAll(t, after)
}

func TestUninstallAndMigrateDownLeaveWritesWorking(t *testing.T) {
	for _, mode := range []string{"uninstall", "down"} {
		t.Run(mode, func(t *testing.T) {
			path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, v);`)
			d := open(t, path, testdb.Options{})
			testenv.SQLite(t, path, "INSERT INTO a(v) VALUES (1);")
			var err error
			if mode == "uninstall" {
				err = d.Store.Uninstall(context.Background())
			} else {
				// Each step down drops the capture triggers first, so writes keep working
				// at every step; all steps down remove every sqlws object.
				st, _ := d.Store.MigrateStatus(context.Background())
				for range st {
					if err = d.Store.MigrateDown(context.Background()); err != nil {
						break
					}
					testenv.SQLite(t, path, "INSERT INTO a(v) VALUES (0); DELETE FROM a WHERE v = 0;")
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			left := testenv.SQLite(t, path, "SELECT type || ' ' || name FROM sqlite_master WHERE name LIKE 'sqlws%' AND name != 'sqlws_goose_version';")
			if strings.TrimSpace(left) != "" {
				t.Fatalf("%s left sqlws objects:\n%s", mode, left)
			}
			// The application's writes must keep working, and its rows stay.
			testenv.SQLite(t, path, "INSERT INTO a(v) VALUES (2);")
			if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM a;"); n != 2 {
				t.Fatalf("rows = %d, want 2", n)
			}
		})
	}
}

func TestStreamIDStableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	d1 := open(t, path, testdb.Options{})
	id := d1.Store.StreamID()
	d1.Close()
	d2 := open(t, path, testdb.Options{})
	if id == "" || d2.Store.StreamID() != id {
		t.Fatalf("stream id %q then %q", id, d2.Store.StreamID())
	}
}
