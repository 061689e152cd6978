package capture_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/crud"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
)

const guardMsg = "sqlws: capture of t is paused for a schema change; run sqlws capture resume --table t"

// triggersOn lists the sqlws triggers on table, sorted by name, as name=sql lines.
func triggersOn(t *testing.T, path, table string) string {
	t.Helper()
	return testenv.SQLite(t, path, "SELECT name || '=' || sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = "+
		testenv.QuoteLiteral(table)+" ORDER BY name;")
}

// TestPauseDropColumnResume is the whole recipe below the command line: pause, a DROP COLUMN
// that capture triggers would refuse, writes refused meanwhile (from the CLI and
// through the CRUD layer, as 503 capture_paused), a server's sync leaving the pause
// alone, resume for the new shape, and a sync that then changes nothing.
func TestPauseDropColumnResume(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, c TEXT, u TEXT UNIQUE); CREATE TABLE other(id INTEGER PRIMARY KEY);`)
	d := open(t, path, testdb.Options{})
	ctx := context.Background()
	testenv.SQLite(t, path, "INSERT INTO t(a, c) VALUES ('before', 'c1');")

	// Without a pause, the triggers block the migration.
	if _, err := testenv.RunSQLite(path, "ALTER TABLE t DROP COLUMN c;"); err == nil {
		t.Fatal("DROP COLUMN succeeded with capture triggers naming the column; the test premise is gone")
	}
	paused, err := capture.Pause(ctx, d.Store, "t")
	if err != nil || !paused {
		t.Fatalf("Pause = %v, %v", paused, err)
	}
	if again, err := capture.Pause(ctx, d.Store, "t"); err != nil || again {
		t.Fatalf("second Pause = %v, %v, want a no-op", again, err)
	}
	trg := triggersOn(t, path, "t")
	for _, want := range []string{"sqlws_paused_insert_t", "sqlws_paused_update_t", "sqlws_paused_delete_t"} {
		if !strings.Contains(trg, want+"=") {
			t.Fatalf("guard %s missing:\n%s", want, trg)
		}
	}
	if strings.Contains(trg, "sqlws_insert_t") || strings.Contains(trg, "sqlws_replace_insert_t") || strings.Contains(trg, `"c"`) {
		t.Fatalf("capture triggers (or a column reference) left while paused:\n%s", trg)
	}

	// A server's sync keeps the pause, and reports it.
	res, err := d.Syncer.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created+res.Dropped != 0 || len(res.Paused) != 1 || res.Paused[0] != "t" {
		t.Fatalf("sync while paused: %+v", res)
	}
	if got := triggersOn(t, path, "t"); got != trg {
		t.Fatalf("sync changed the paused table's triggers:\n%s\nwas:\n%s", got, trg)
	}

	// Every kind of write fails loudly, from any program.
	for _, stmt := range []string{"INSERT INTO t(a) VALUES ('during');", "UPDATE t SET a = 'x';", "DELETE FROM t;"} {
		_, err := testenv.RunSQLite(path, stmt)
		if err == nil || !strings.Contains(err.Error(), guardMsg) {
			t.Fatalf("%s while paused: %v, want the guard's message", stmt, err)
		}
	}
	_, err = d.CRUD.CreateRow(ctx, "t", crud.Values{"a": "rest"})
	if kind, code, msg := errors.Public(err); kind != errors.Unavailable || code != "capture_paused" || !strings.Contains(msg, guardMsg) {
		t.Fatalf("REST write while paused: %v %q %q", kind, code, msg)
	}
	// Other tables are not affected.
	testenv.SQLite(t, path, "INSERT INTO other DEFAULT VALUES;")

	testenv.SQLite(t, path, "ALTER TABLE t DROP COLUMN c;")
	// The sync after the schema change refreshes the shape for reads, still paused.
	if res, err = d.Syncer.Sync(ctx); err != nil || len(res.Paused) != 1 {
		t.Fatalf("sync after DROP COLUMN: %+v, %v", res, err)
	}
	if tbl, _ := d.Schema.Table("t"); len(tbl.Columns) != 3 {
		t.Fatalf("cached shape after DROP COLUMN: %+v", tbl.Columns)
	}

	rr, err := capture.Resume(ctx, d.Store, "t")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rr.Columns, ",") != "id,a,u" {
		t.Fatalf("resumed columns %v", rr.Columns)
	}
	if _, err := capture.Resume(ctx, d.Store, "t"); err == nil || !strings.Contains(err.Error(), "not paused") {
		t.Fatalf("second resume: %v", err)
	}
	// Resume installed exactly what a sync wants: the next sync changes nothing.
	if res, err = d.Syncer.Sync(ctx); err != nil || res.Created+res.Dropped != 0 || len(res.Paused) != 0 {
		t.Fatalf("sync after resume: %+v, %v", res, err)
	}
	testenv.SQLite(t, path, "INSERT INTO t(a) VALUES ('after');")
	changes := readAll(t, d, 0)
	testenv.AssertContiguous(t, changes, 1)
	var tables []string
	for _, c := range changes {
		tables = append(tables, c.Table)
	}
	if strings.Join(tables, ",") != "t,other,t" {
		t.Fatalf("changes on %v, want t (before), other, t (after): a refused write was captured", tables)
	}
	var before, after map[string]any
	json.Unmarshal(changes[0].New, &before)
	json.Unmarshal(changes[2].New, &after)
	if _, ok := before["c"]; !ok {
		t.Fatalf("change before the pause lacks c: %s", changes[0].New)
	}
	if _, ok := after["c"]; ok || after["a"] != "after" {
		t.Fatalf("change after resume has the old shape: %s", changes[2].New)
	}
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM sqlws_meta WHERE key LIKE 'capture_paused:%';"); n != 0 {
		t.Fatalf("%d pause records left after resume", n)
	}
}

// The printed SQL, run by the sqlite3 shell in one transaction, does what Pause and
// Resume do: a sync afterwards changes nothing after the pause, and after the resume
// only moves the triggers from the JSON layout to the native one.
func TestPrintedPauseResumeSQL(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, c TEXT UNIQUE);`)
	d := open(t, path, testdb.Options{})
	ctx := context.Background()
	captured := triggersOn(t, path, "t")

	pause, err := capture.PauseSQL(ctx, d.Store, "t")
	if err != nil {
		t.Fatal(err)
	}
	testenv.SQLite(t, path, "BEGIN IMMEDIATE;\n"+pause+"COMMIT;\n")
	res, err := d.Syncer.Sync(ctx)
	if err != nil || res.Created+res.Dropped != 0 || len(res.Paused) != 1 {
		t.Fatalf("sync after the printed pause: %+v, %v (the guards must be stored as Sync generates them)", res, err)
	}
	if _, err := testenv.RunSQLite(path, "INSERT INTO t(a) VALUES ('x');"); err == nil || !strings.Contains(err.Error(), guardMsg) {
		t.Fatalf("write after the printed pause: %v", err)
	}
	resume, err := capture.ResumeSQL(ctx, d.Store, "t")
	if err != nil {
		t.Fatal(err)
	}
	testenv.SQLite(t, path, "BEGIN IMMEDIATE;\n"+resume+"COMMIT;\n")
	// Printed SQL writes the JSON layout (it cannot know a shape id in advance): the
	// table is captured at once, and the next sync upgrades its three AFTER triggers
	// to the native layout, and only those.
	if _, err := testenv.RunSQLite(path, "INSERT INTO t(a) VALUES ('captured');"); err != nil {
		t.Fatalf("write after the printed resume: %v", err)
	}
	if res, err := d.Syncer.Sync(ctx); err != nil || res.Created != 3 || res.Dropped != 3 || len(res.Paused) != 0 {
		t.Fatalf("sync after the printed resume: %+v, %v", res, err)
	}
	if got := triggersOn(t, path, "t"); got != captured {
		t.Fatalf("triggers after the printed resume and a sync:\n%s\nwant:\n%s", got, captured)
	}
	if c := readAll(t, d, 0); len(c) != 1 || !strings.Contains(string(c[0].New), "captured") {
		t.Fatalf("the write after the printed resume: %+v", c)
	}
}

func TestPauseRefusals(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY); CREATE TABLE untracked(id INTEGER PRIMARY KEY);`)
	d := open(t, path, testdb.Options{Tables: []string{"t"}})
	ctx := context.Background()
	if _, err := capture.Pause(ctx, d.Store, "nope"); errors.KindOf(err) != errors.NotFound {
		t.Fatalf("pause of a missing table: %v", err)
	}
	if _, err := capture.Pause(ctx, d.Store, "untracked"); err == nil || !strings.Contains(err.Error(), "not captured") {
		t.Fatalf("pause of an uncaptured table: %v", err)
	}
	if _, err := capture.Resume(ctx, d.Store, "t"); err == nil || !strings.Contains(err.Error(), "not paused") {
		t.Fatalf("resume of a table that is not paused: %v", err)
	}
	// A table dropped while paused: resume clears the record.
	if _, err := capture.Pause(ctx, d.Store, "t"); err != nil {
		t.Fatal(err)
	}
	testenv.SQLite(t, path, "DROP TABLE t;")
	if rr, err := capture.Resume(ctx, d.Store, "t"); err != nil || !rr.Dropped {
		t.Fatalf("resume of a dropped table: %+v, %v", rr, err)
	}
}

// The recipe's single goose migration: the printed pause, the DROP COLUMN and the
// resume printed from a development copy run in one transaction; no write fails,
// and the server's next sync finds exactly what it would install.
func TestPauseAlterResumeInOneTransaction(t *testing.T) {
	const schema = `CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, c TEXT);`
	path := testenv.NewDB(t, schema)
	d := open(t, path, testdb.Options{})
	ctx := context.Background()
	dev := testenv.NewDB(t, schema+"ALTER TABLE t DROP COLUMN c;")
	devDB, err := testdb.OpenErr(dev, testdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer devDB.Close()
	pause, err := capture.PauseSQL(ctx, d.Store, "t")
	if err != nil {
		t.Fatal(err)
	}
	resume, err := capture.ResumeSQL(ctx, devDB.Store, "t")
	if err != nil {
		t.Fatal(err)
	}
	testenv.SQLite(t, path, "BEGIN IMMEDIATE;\n"+pause+"ALTER TABLE t DROP COLUMN c;\n"+resume+"COMMIT;\n")
	// The next sync only upgrades the printed JSON-layout triggers to the native one.
	if res, err := d.Syncer.Sync(ctx); err != nil || res.Created != 3 || res.Dropped != 3 || len(res.Paused) != 0 {
		t.Fatalf("sync after the migration: %+v, %v", res, err)
	}
	testenv.SQLite(t, path, "INSERT INTO t(a) VALUES ('new shape');")
	if c := readAll(t, d, 0); len(c) != 1 || string(c[0].New) != `{"id":1,"a":"new shape"}` {
		t.Fatalf("changes after the migration: %+v", c)
	}
}
