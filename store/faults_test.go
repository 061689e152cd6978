package store_test

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sqlws/sqlws/crud"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
)

// openLogged opens, migrates and installs a database whose fault log goes to logs.
func openLogged(t *testing.T, path string, logs *testdb.LogBuffer, opts testdb.Options) *testdb.DB {
	t.Helper()
	opts.Logger = logs.Logger()
	return open(t, path, opts)
}

// checkUnavailable fails unless err is a 503 unavailable whose message says what.
func checkUnavailable(t *testing.T, err error, what string) {
	t.Helper()
	kind, code, msg := errors.Public(err)
	if kind != errors.Unavailable || code != "unavailable" || !strings.Contains(msg, what) {
		t.Fatalf("error %v: public %v %q %q, want unavailable saying %q", err, kind, code, msg, what)
	}
}

// TestWriteFaultsAre503AndLoggedOncePerEpisode makes the WAL file immutable under an
// open database (an I/O error on every commit, as a failing disk would give), then
// fills the database to its page limit (disk full). Every write answers 503 saying
// which; each episode is
// logged once with the SQLite code, however many writes fail, and once more when
// writes work again. Nothing written during a fault lands, and the changelog stays
// gapless.
func TestWriteFaultsAre503AndLoggedOncePerEpisode(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT);`)
	logs := &testdb.LogBuffer{}
	d := openLogged(t, path, logs, testdb.Options{})
	ctx := context.Background()
	create := func(v string) error {
		_, err := d.CRUD.CreateRow(ctx, "a", crud.Values{"v": v})
		return err
	}
	if err := create("before"); err != nil {
		t.Fatal(err)
	}

	// An I/O error on the WAL file.
	undo := testenv.Immutable(t, path+"-wal")
	for range 5 {
		checkUnavailable(t, create("io"), "disk I/O error")
	}
	undo()
	if err := create("after io"); err != nil {
		t.Fatalf("write after the I/O fault cleared: %v", err)
	}
	if n := logs.Count("database writes failing: disk I/O error", "sqlite_code=778", "SQLITE_IOERR_WRITE"); n != 1 {
		t.Fatalf("I/O episode logged %d times, want once:\n%s", n, logs)
	}
	if n := logs.Count("database writes recovered", `fault="disk I/O error"`, "failed_calls=5"); n != 1 {
		t.Fatalf("I/O recovery logged %d times, want once:\n%s", n, logs)
	}

	// A full disk: the database may not grow beyond its current size.
	var pages int64
	if err := d.Store.Writer().QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	mustExecDB(t, d, "PRAGMA max_page_count = "+itoa(pages))
	full := 0
	for i := 0; full < 3 && i < 10000; i++ {
		if err := create(strings.Repeat("x", 2000)); err != nil {
			checkUnavailable(t, err, "disk full")
			full++
		}
	}
	if full < 3 {
		t.Fatal("the database never filled up")
	}
	mustExecDB(t, d, "PRAGMA max_page_count = 1073741823")
	if err := create("after full"); err != nil {
		t.Fatalf("write after the disk-full fault cleared: %v", err)
	}
	if logs.Count("database writes failing: disk full", "sqlite_code=13") != 1 || logs.Count("database writes recovered", `fault="disk full"`) != 1 {
		t.Fatalf("disk-full episode not logged exactly once, with its recovery:\n%s", logs)
	}

	// Only the writes that were answered with success landed, each captured once.
	out := testenv.SQLite(t, path, "SELECT group_concat(v, '|') FROM (SELECT v FROM a WHERE v NOT LIKE 'xx%' ORDER BY id);")
	if got := strings.TrimSpace(out); got != "before|after io|after full" {
		t.Fatalf("rows = %q", got)
	}
	changes := readAll(t, d, 0)
	testenv.AssertContiguous(t, changes, 1)
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM a;"); int64(len(changes)) != n {
		t.Fatalf("%d changes for %d rows", len(changes), n)
	}
}

// A lock held by another process past the busy timeout is a busy episode: 503
// "database is busy", logged once (as a warning), recovered once.
func TestBusyIsLoggedOncePerEpisode(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT);`)
	logs := &testdb.LogBuffer{}
	d := openLogged(t, path, logs, testdb.Options{BusyTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	other, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	hold, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec("INSERT INTO a(v) VALUES ('holder')"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, err := d.CRUD.CreateRow(ctx, "a", crud.Values{"v": "x"})
		checkUnavailable(t, err, "database is busy")
	}
	hold.Rollback()
	if _, err := d.CRUD.CreateRow(ctx, "a", crud.Values{"v": "y"}); err != nil {
		t.Fatal(err)
	}
	if logs.Count("level=WARN", "database writes failing: database is busy") != 1 || logs.Count("database writes recovered", "failed_calls=3") != 1 {
		t.Fatalf("busy episode not logged exactly once, with its recovery:\n%s", logs)
	}
}

func mustExecDB(t *testing.T, d *testdb.DB, q string) {
	t.Helper()
	if _, err := d.Store.Writer().Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
