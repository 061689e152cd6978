package capture_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/crud"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/store"
)

// installed returns a database on which sqlws was installed and then closed, as a
// server that ran and stopped leaves it.
func installed(t *testing.T, schema string) string {
	t.Helper()
	path := testenv.NewDB(t, schema)
	d, err := testdb.OpenErr(path, testdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Syncer.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.Close()
	return path
}

// openServe opens path as serve does and returns CheckWritable's answer.
func openServe(t *testing.T, path string) (*testdb.DB, string) {
	t.Helper()
	d := testdb.Open(t, path, testdb.Options{Lock: store.LockServe})
	problem, err := d.Store.CheckWritable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d, problem
}

// TestServeReadOnly: a database this process cannot write, on which capture is in
// place, is served read-only: reads work, writes are refused as read_only before
// they reach SQLite, and the tailer streams what another program writes.
func TestServeReadOnly(t *testing.T) {
	path := installed(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO a(v) VALUES ('one');`)
	undo := testenv.Unwritable(t, path)
	d, problem := openServe(t, path)
	if !strings.Contains(problem, path) || !strings.Contains(problem, "no write permission") {
		t.Fatalf("CheckWritable = %q, want it to name %s and the missing permission", problem, path)
	}
	ctx := context.Background()
	res, err := d.Syncer.ServeReadOnly(ctx, problem)
	if err != nil {
		t.Fatalf("ServeReadOnly: %v", err)
	}
	if len(res.Tables) != 1 || d.Store.ReadOnly() != problem {
		t.Fatalf("ServeReadOnly = %+v, ReadOnly() = %q", res, d.Store.ReadOnly())
	}
	if r, err := d.CRUD.GetRow(ctx, "a", []string{"1"}); err != nil || string(r.Row) != `{"id":1,"v":"one"}` {
		t.Fatalf("read: %s, %v", r.Row, err)
	}
	_, err = d.CRUD.CreateRow(ctx, "a", crud.Values{"v": "two"})
	if kind, code, msg := errors.Public(err); kind != errors.Unavailable || code != "read_only" || !strings.Contains(msg, "read-only") {
		t.Fatalf("write: %v %q %q", kind, code, msg)
	}

	got := make(chan []models.Encoded, 16)
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tl := d.NewTailer(0, func(b []models.Encoded) { got <- b }, changelog.TailerOptions{})
	done := make(chan error, 1)
	go func() { done <- tl.Run(tctx) }()
	// Another program with write access (here: once the file is writable again)
	// writes; the read-only server still streams it.
	undo()
	testenv.SQLite(t, path, "INSERT INTO a(v) VALUES ('from the shell');")
	select {
	case b := <-got:
		if len(b) != 1 || b[0].Table != "a" || !strings.Contains(string(b[0].JSON), "from the shell") {
			t.Fatalf("tailed %d changes: %s", len(b), b[0].JSON)
		}
	case <-time.After(testenv.Timeout):
		t.Fatal("the read-only server's tailer did not deliver another program's write")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestServeReadOnlyRefusals: without write access, a database on which capture is not
// in place cannot be served; the error names the file, the permission and what is
// missing.
func TestServeReadOnlyRefusals(t *testing.T) {
	ctx := context.Background()
	t.Run("not installed", func(t *testing.T) {
		path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
		testenv.SQLite(t, path, "PRAGMA journal_mode=WAL;")
		testenv.Unwritable(t, path)
		d, problem := openServe(t, path)
		_, err := d.Syncer.ServeReadOnly(ctx, problem)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "sqlws is not installed") {
			t.Fatalf("ServeReadOnly: %v", err)
		}
	})
	t.Run("triggers out of date", func(t *testing.T) {
		path := installed(t, `CREATE TABLE a(id INTEGER PRIMARY KEY); CREATE TABLE b(id INTEGER PRIMARY KEY);`)
		testenv.SQLite(t, path, "ALTER TABLE b ADD COLUMN extra TEXT;") // no server to update b's triggers
		testenv.Unwritable(t, path)
		d, problem := openServe(t, path)
		_, err := d.Syncer.ServeReadOnly(ctx, problem)
		if err == nil || !strings.Contains(err.Error(), `capture triggers of "b" are missing or out of date`) {
			t.Fatalf("ServeReadOnly: %v", err)
		}
	})
	t.Run("migration pending", func(t *testing.T) {
		path := installed(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
		testenv.SQLite(t, path, "DELETE FROM sqlws_goose_version WHERE version_id = 2;")
		testenv.Unwritable(t, path)
		d, problem := openServe(t, path)
		_, err := d.Syncer.ServeReadOnly(ctx, problem)
		if err == nil || !strings.Contains(err.Error(), "migrations 00002 are not applied") {
			t.Fatalf("ServeReadOnly: %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		// Without its -wal and -shm files, a WAL database cannot even be read from a
		// directory in which they cannot be created.
		path := installed(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
		testenv.Unwritable(t, filepath.Dir(path))
		_, err := testdb.OpenErr(path, testdb.Options{Lock: store.LockServe})
		if err == nil || !strings.Contains(err.Error(), "directory "+filepath.Dir(path)+" is not writable") || !strings.Contains(err.Error(), "test.db-wal") {
			t.Fatalf("Open in an unwritable directory: %v", err)
		}
	})
}
